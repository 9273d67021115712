"""The printed report of ``bench/dedup_throughput.py``: arms, per-kind recall, targets with PASS/FAIL."""

from __future__ import annotations

import argparse

from machine import goals_table

SPEEDUP_TARGET, RECALL_TARGET, PRECISION_TARGET = 10.0, 0.95, 0.95


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def arm_line(name: str, run: dict) -> str:
    rate, cpu = run["docs"] / run["seconds"], run["docs"] / max(run["cpu_s"], 1e-9)
    ev = run.get("eval", {})
    return (f"{name:26} {rate:9.0f} {run['seconds']:8.2f} {run['cpu_s']:7.2f} {cpu:9.0f} {run['peak_rss_mb']:7.0f} "
            f"{run['peak_rss_mb'] - run.get('loaded_rss_mb', 0):6.0f}  {_f(ev.get('recall'))} {_f(ev.get('precision'))}"
            f"  {_f(ev.get('linked_precision'))}  {_f(ev.get('negatives_flagged'))}")  # fmt: skip


HEADER = (f"{'arm/scope':26} {'docs/s':>9} {'wall s':>8} {'CPU s':>7} {'docs/CPUs':>9} {'peakMB':>7} {'ΔMB':>6}  "
          f"{'recall':>5} {'prec.':>5}  {'linked':>5}  {'neg.flag':>5}")  # fmt: skip


def report(results: dict, args: argparse.Namespace) -> list[tuple[str, str, bool | None]]:
    """Print every section; return the target rows (name, value, passed or None for a stated figure)."""
    targets: list[tuple[str, str, bool | None]] = []
    if results.get("compare"):
        targets += _compare(results["compare"], args)
    if results.get("scale"):
        targets += _scale(results["scale"])
    if results.get("semantic"):
        targets += _semantic(results["semantic"])
    figures = [(name, value) for name, value, passed in targets if passed is None]
    if figures:
        print("\n== measured figures")
    for name, value in figures:
        print(f"{name:58} {value:>24}")
    print(f"uptime before: {results['uptime_before']}\nuptime after:  {results['uptime_after']}")
    results["targets"] = targets
    results["status"] = goals_table(
        [(f"{name} ({value.strip()})", passed) for name, value, passed in targets if passed is not None],
        f"threshold {args.threshold}, {args.shingle}-word shingles, {args.num_perm} permutations",
        args.quick,
    )
    return targets


def _compare(compare: dict, args: argparse.Namespace) -> list[tuple[str, str, bool | None]]:
    runs = compare["runs"]
    gen = compare["generated"]
    print(f"\n== corpus: {compare['n']:,} traces ({gen['arrow_mb']:.0f} MB Arrow, generated in {gen['seconds']:.1f}s)")
    print(f"{'planted kind':16} {'pairs':>6} {'J>=thr':>7} {'mean J':>7} {'min J':>6} {'max J':>6}")
    for kind, row in compare["kinds"].items():
        print(f"{kind:16} {row['pairs']:6} {row['positives']:7} {row['mean']:7.3f} {row['min']:6.3f} {row['max']:6.3f}")
    print(f"\n== near-duplicate arms (N={compare['n']:,}; ΔMB = peak RSS minus RSS with the corpus loaded)")
    print(HEADER)
    for name, run in runs.items():
        if name != "exact_dup" and "docs" in run:
            print(arm_line(name, run))
    warm = ", ".join(f"{name} {run['warmup_s']:.2f}s" for name, run in runs.items() if "warmup_s" in run)
    print(f"first call on 200 rows (outside the clock): {warm}")
    exact = runs["exact_dup"]
    print(f"exact_dup: {exact['docs'] / exact['seconds']:,.0f} docs/s, peak {exact['peak_rss_mb']:.0f} MB; recall on "
          f"exact+format pairs {_f(exact['eval']['recall'])}, precision {_f(exact['eval']['precision'])}")  # fmt: skip
    arms = sorted({name.split("/")[0] for name in runs if "/" in name and not name.startswith("ceiling")})
    scopes = sorted({name.split("/")[1] for name in runs if "/" in name}, reverse=True)
    print("\n== recall per planted kind (pos: pairs with exact J >= threshold; flag: share of negatives clustered)")
    columns = [f"{arm}/{scope}" for scope in scopes for arm in arms]
    for scope in scopes:
        mine = [f"{arm}/{scope}" for arm in arms]
        print(f"{'scope ' + scope:16} {'pos':>5} {'neg':>5}  " + "  ".join(f"{c.split('/')[0][:15]:>15} {'flag':>5}"
                                                                           for c in mine))  # fmt: skip
        for kind, planted in compare["kinds"].items():
            cells = [runs[c]["eval"]["per_kind"][kind] for c in mine]
            print(
                f"{kind:16} {planted['positives']:5} {planted['pairs'] - planted['positives']:5}  "
                + "  ".join(f"{_f(r['recall']):>15} {_f(r['negatives_flagged'], 2):>5}" for r in cells)
            )
    print("\n== recall per exact-Jaccard band of the positives")
    bands = list(runs[columns[0]]["eval"]["bands"])
    print(f"{'arm/scope':26} " + " ".join(f"{b:>12}" for b in bands))
    for column in columns:
        print(f"{column:26} " + " ".join(f"{_f(runs[column]['eval']['bands'][b]):>12}" for b in bands))
    targets = []
    for scope in scopes:
        near = runs.get(f"near_dup/{scope}")
        if not near:
            continue
        rate = near["docs"] / near["seconds"]
        for base, label in (("datasketch", "usual"), ("datasketch_bulk", "MinHash.bulk")):
            if f"{base}/{scope}" in runs:
                other = runs[f"{base}/{scope}"]
                ratio = rate / (other["docs"] / other["seconds"])
                cpu_ratio = (near["docs"] / near["cpu_s"]) / (other["docs"] / other["cpu_s"])
                passed = ratio >= SPEEDUP_TARGET if base == "datasketch" else None
                targets.append((f"near_dup/{scope} vs datasketch {label}: docs/s >= 10x", f"{ratio:.1f}x "
                                f"({cpu_ratio:.1f}x per CPU-s)", passed))  # fmt: skip
        ev = near["eval"]
        line = f"near_dup/{scope}: {ev['missed']} of {ev['positives']} positive pairs missed"
        if "ceiling/prompt" in runs:
            top = runs["ceiling/prompt"]["eval"]
            line += (f"; the clustering rule over every exact same-prompt pair (no LSH) misses {top['missed']} "
                     f"(recall ceiling {_f(top['recall'])}, precision {_f(top['precision'])})")  # fmt: skip
        print(line)
        targets.append(
            (f"near_dup/{scope}: recall >= {RECALL_TARGET}", _f(ev["recall"]), ev["recall"] >= RECALL_TARGET)
        )
        targets.append((f"near_dup/{scope}: precision >= {PRECISION_TARGET}", _f(ev["precision"]),
                        ev["precision"] >= PRECISION_TARGET))  # fmt: skip
    return targets


def _scale(run: dict) -> list[tuple[str, str, bool | None]]:
    gen = run["generated"]
    print(f"\n== scale: {run['docs']:,} traces ({gen['arrow_mb']:.0f} MB Arrow; generated in {gen['seconds']:.0f}s, "
          f"generator peak RSS {gen['peak_rss_mb']:.0f} MB); RSS with the table loaded {run['loaded_rss_mb']:.0f} MB")  # fmt: skip
    print(f"{'step':20} {'wall s':>8} {'CPU s':>8} {'docs/s':>9} {'peak RSS MB (so far)':>21} {'sampled recall':>15} "
          f"{'precision':>10}")  # fmt: skip
    total = 0.0
    for name, step in run["steps"].items():
        total += step["seconds"]
        ev = step.get("eval", {})
        print(f"{name:20} {step['seconds']:8.1f} {step['cpu_s']:8.1f} {run['docs'] / step['seconds']:9.0f} "
              f"{step['peak_rss_mb']:21.0f} {_f(ev.get('recall')):>15} {_f(ev.get('precision')):>10}")  # fmt: skip
    peak = max(step["peak_rss_mb"] for step in run["steps"].values())
    return [(f"{run['docs']:,} traces exact + near ({', '.join(run['steps'])})", f"{total:.0f}s wall", None),
            (f"{run['docs']:,} traces: peak RSS (table resident: {run['loaded_rss_mb']:.0f} MB)", f"{peak:.0f} MB",
             None)]  # fmt: skip


def _semantic(run: dict) -> list[tuple[str, str, bool | None]]:
    if "missing" in run:
        print(f"\n== semantic: skipped, {run['missing']} is not there yet")
        return []
    embed = run["embed"]
    print(f"\n== semantic ({run['texts']:,} texts, {run['model']}; model load {run['load_s']:.1f}s)")
    print(f"embedding: {run['texts'] / embed['seconds']:.0f} texts/s wall, {run['texts'] / embed['cpu_s']:.0f} "
          f"texts per CPU-second, peak RSS {embed['peak_rss_mb']:.0f} MB")  # fmt: skip
    print("cosine of planted pairs, quantiles 5% / 50% / 95%:")
    for kind, values in run["cosine"].items():
        print(f"  {kind:16} " + " / ".join(f"{v:.3f}" for v in values))
    kinds = list(next(iter(run["sweep"].values())))
    print("share of planted pairs at or above a cosine threshold (recall for paraphrases, false flags for the rest):")
    print(f"  {'cosine >=':>10} " + " ".join(f"{kind:>15}" for kind in kinds))
    for threshold, shares in run["sweep"].items():
        print(f"  {threshold:>10} " + " ".join(f"{shares[kind]:15.3f}" for kind in kinds))
    rows = [(f"embedding throughput ({run['model']})", f"{run['texts'] / embed['cpu_s']:.0f} texts/CPU-s", None)]
    if "scorer" not in run:
        print(
            "SemanticDuplicate: filters/diversity/semantic.py is not there yet; the --semantic path runs it when it lands"
        )
        return rows
    scorer = run["scorer"]
    print(f"SemanticDuplicate ({scorer['options']}): {run['texts'] / scorer['seconds']:.0f} texts/s")
    for kind, value in scorer["together"].items():
        label = "recall" if kind == "paraphrase" else "flagged (should stay apart)"
        print(f"  {kind:16} {label}: {value:.3f}")
    threshold = scorer["options"].get("threshold")
    rows.append((f"semantic_dup recall on planted paraphrases (threshold {threshold})",
                 f"{scorer['together'].get('paraphrase', 0):.3f}", None))  # fmt: skip
    return rows
