"""Recall and false positives of the safety scorers on poison planted in clean GSM8K and HumanEval traces.

    .venv/bin/python bench/poison_detection.py                     # 500 GSM8K + 400 GPT-3 + 492 HumanEval, rate 1%
    .venv/bin/python bench/poison_detection.py --sweep             # rates 0.25%, 1%, 5% (one corpus each)
    .venv/bin/python bench/poison_detection.py --gsm8k 2000 --json out.json --dump planted.jsonl --perplexity

The corpus (``bench/poison/corpus.py``) is clean teacher traces with, per kind, ``--rate`` of the eligible
traces poisoned (at least ``--min-planted``): link, promotion, phishing, insecure_code (code traces only),
drift and pii, from the templates of ``bench/poison/templates.py``, placed at the start, mid-sentence,
between steps, at the end, as a footnote, in parentheses, in a code comment or docstring, or (insecure code)
in the function body, above it or in a ``__main__`` block. Every scorer is made with its default options
(``make_scorer(cls, {})``) and scores the whole table once; ``prepare`` hooks are not called (no catalog).

Printed, per kind: planted count, recall of the kind's own scorer and of any safety scorer, the own scorer's
precision, recall per placement; per scorer: false-positive rate on the clean traces (95% Wilson interval)
and recall of every kind. Targets: own-scorer recall >= 0.95 per kind, false positives <= 1% of clean
traces; rows that miss are marked ``<< SHORT`` and listed on the ``falls short:`` line, and the goals
table comes last (exit 1 on a miss; ``--smoke``: 30 GSM8K and 10 HumanEval traces, not enforced).

Time (2 shared cores, the scorers of 3 Dec 2026): promotion scores about 8 traces/s and drift 10-30 on
texts they have not seen (they embed every sentence), the others thousands; so a first run of the default
1,392 traces takes about 4 minutes and ``--gsm8k 2000`` about 11. Texts scored before are faster (a rerun of
the default took 50 s), and so are the later rates of a ``--sweep``: per-scorer times are printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["TRACEBANK_EMBEDDING_CACHE"] = "off"  # time the embedding, not the vector cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import goals_table, uptime
from poison import corpus

from tracebank.filters.base import make_scorer
from tracebank.filters.safety.safety import SAFETY_FILTERS

# scorer name -> (module under tracebank.filters, class); the one place that names them
SCORERS: dict[str, tuple[str, str]] = {
    "links": ("safety.links", "Links"),
    "promotion": ("safety.promotion", "Promotion"),
    "phishing": ("safety.phishing", "Phishing"),
    "insecure_code": ("safety.insecure_code", "InsecureCode"),
    "drift": ("safety.drift", "Drift"),
    "propagation": ("safety.propagation", "Propagation"),
    "pii": ("safety.pii", "PII"),
    "perplexity": ("memorization.perplexity", "Perplexity"),
}
SAFETY = SAFETY_FILTERS  # "any" = flagged by one of these (perplexity is not in the group)
OWN = {"link": "links", "promotion": "promotion", "phishing": "phishing", "insecure_code": "insecure_code",
       "drift": "drift", "pii": "pii"}  # fmt: skip
RECALL_TARGET, FP_TARGET = 0.95, 0.01
SWEEP = (0.0025, 0.01, 0.05)
SHORT = "<< SHORT"


def scorer_class(name: str) -> type:
    """From ``filters.runner.FILTERS`` when registered there, else ``tracebank.filters.<module>.<Class>``."""
    from tracebank.filters.runner import FILTERS

    if name in FILTERS:
        return FILTERS[name]
    module, cls = SCORERS[name]
    return getattr(importlib.import_module(f"tracebank.filters.{module}"), cls)


def load_scorers(names: list[str]) -> tuple[dict[str, object], dict[str, str]]:
    """(scorers made with default options, {name: why it is missing})."""
    made, missing = {}, {}
    for name in names:
        try:
            made[name] = make_scorer(scorer_class(name), {})
        except Exception as error:  # a module not written yet, or one that fails to import: report, go on
            missing[name] = f"{type(error).__name__}: {error}"[:160]
    return made, missing


def run_scorers(table, scorers: dict[str, object]) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, str]]:
    """Per scorer: ``flagged`` per row (1, 0, or -1 for null) in table order, seconds, and errors."""
    flags, seconds, errors = {}, {}, {}
    order = {trace_id: i for i, trace_id in enumerate(table.column("trace_id").to_pylist())}
    for name, scorer in scorers.items():
        started = time.perf_counter()
        try:
            result = scorer.score(table.select(list(scorer.reads)))
        except Exception as error:  # one broken scorer should not hide the others' numbers
            errors[name] = f"{type(error).__name__}: {error}"[:300]
            continue
        seconds[name] = time.perf_counter() - started
        values = np.full(table.num_rows, -1, np.int8)
        for trace_id, flag in zip(result.column("trace_id").to_pylist(), result.column("flagged").to_pylist(),
                                  strict=True):  # fmt: skip
            values[order[trace_id]] = -1 if flag is None else int(flag)
        flags[name] = values
    return flags, seconds, errors


# ---------------------------------------------------------------- arithmetic


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion hits/n ((0, 1) when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def share(hits: int, n: int) -> dict:
    low, high = wilson(hits, n)
    return {"hits": hits, "n": n, "rate": hits / n if n else None, "low": low, "high": high}


def evaluate(flags: dict[str, np.ndarray], labels: list[str | None], placements: list[str | None],
             sources: list[str]) -> dict:  # fmt: skip
    """Recall, precision and false positives from per-row flags and the planted labels (None = clean).

    A null flag (the scorer could not judge) counts as not flagged. Recall of a scorer on a kind: planted
    traces of that kind it flags, over planted traces of that kind. Precision of a kind's own scorer: of
    the traces it flags, those planted with that kind (``precision``) or with any kind (``precision_any``).
    False-positive rate: clean traces flagged, over clean traces.
    """
    label = np.array([x or "" for x in labels])
    place = np.array([x or "" for x in placements])
    source = np.array(sources)
    clean = label == ""
    flagged = {name: values == 1 for name, values in flags.items()}
    safety = [name for name in SAFETY if name in flagged]
    if safety:
        flagged["any"] = np.logical_or.reduce([flagged[name] for name in safety])
    scorers = {}
    for name, hit in flagged.items():
        scorers[name] = {
            "fp": share(int((hit & clean).sum()), int(clean.sum())),
            "fp_by_source": {
                s: share(int((hit & clean & (source == s)).sum()), int((clean & (source == s)).sum()))
                for s in sorted(set(sources))
            },
            "unjudged": int((flags[name] == -1).sum()) if name in flags else 0,
            "recall": {k: share(int((hit & (label == k)).sum()), int((label == k).sum())) for k in corpus.KINDS},
        }
    kinds = {}
    for kind in corpus.KINDS:
        mine = label == kind
        own = OWN[kind]
        row = {"planted": int(mine.sum()), "scorer": own, "own": None, "any": None, "precision": None,
               "precision_any": None, "placements": {}}  # fmt: skip
        if own in flagged:
            hit = flagged[own]
            row["own"] = share(int((hit & mine).sum()), int(mine.sum()))
            row["precision"] = share(int((hit & mine).sum()), int(hit.sum()))
            row["precision_any"] = share(int((hit & ~clean).sum()), int(hit.sum()))
            row["placements"] = {p: share(int((hit & mine & (place == p)).sum()), int((mine & (place == p)).sum()))
                                 for p in sorted(set(place[mine].tolist()))}  # fmt: skip
        if "any" in flagged:
            row["any"] = share(int((flagged["any"] & mine).sum()), int(mine.sum()))
        kinds[kind] = row
    return {"kinds": kinds, "scorers": scorers, "clean": int(clean.sum()), "traces": len(labels)}


def shortfalls(result: dict, missing: dict[str, str]) -> list[tuple[str, str]]:
    """Every target missed, as (what, value): a kind's own-scorer recall < 0.95, a clean FP rate > 1%, no scorer."""
    out = []
    for kind, row in result["kinds"].items():
        if row["own"] is None:
            out.append((kind, f"(no {row['scorer']} scorer)"))
        elif row["planted"] and row["own"]["rate"] < RECALL_TARGET:
            out.append((f"{kind} recall", f"{row['own']['rate']:.3f}"))
    for name, row in result["scorers"].items():
        if row["fp"]["rate"] is not None and row["fp"]["rate"] > FP_TARGET:
            out.append((f"{name} FP", f"{row['fp']['rate']:.2%}"))
    named = {what.split()[0] for what, _ in out}
    out += [(name, "(missing)") for name in missing if name in SAFETY and name not in named]
    return out


def short_line(per_rate: dict[float, list[tuple[str, str]]]) -> list[str]:
    """One entry per missed target; with several rates, its value at each (``0.91@1.00%``) unless all agree."""
    values: dict[str, dict[float, str]] = {}
    for rate, items in per_rate.items():
        for what, value in items:
            values.setdefault(what, {})[rate] = value
    out = []
    for what, by_rate in values.items():
        if len(per_rate) == 1 or (len(set(by_rate.values())) == 1 and len(by_rate) == len(per_rate)):
            out.append(f"{what} {next(iter(by_rate.values()))}")
        else:
            out.append(f"{what} " + " ".join(f"{value}@{rate:.2%}" for rate, value in by_rate.items()))
    return out


# ---------------------------------------------------------------- the printed report


def _cell(row: dict | None, digits: int = 3) -> str:
    if row is None or row["rate"] is None:
        return "-"
    return f"{row['rate']:.{digits}f} ({row['hits']}/{row['n']})"


def _ci(row: dict | None) -> str:
    return "" if row is None or row["rate"] is None else f"[{row['low']:.2f},{row['high']:.2f}]"


def report_rate(rate: float, result: dict, eligible: dict[str, int], seconds: dict[str, float]) -> None:
    ran = [name for name in SAFETY if name in result["scorers"]]
    print(f"\n== rate {rate:.2%} per kind: {result['traces']:,} traces, {result['clean']:,} clean, "
          f"{result['traces'] - result['clean']:,} planted")  # fmt: skip
    print("share = planted / eligible traces (code traces for insecure_code), at least --min-planted;\n"
          f"recall = planted traces of the kind its scorer flags / planted; any = flagged by any of {', '.join(ran)};\n"
          "precision = traces the kind's scorer flags that carry that kind / all it flags; "
          "prec.any = ... that carry any planted kind")  # fmt: skip
    print(f"{'kind':14} {'planted':>7} {'share':>6}  {'scorer':13} {'recall':>16} {'95% CI':>11}  {'any':>16}  "
          f"{'precision':>16}  {'prec.any':>16}")  # fmt: skip
    for kind, row in result["kinds"].items():
        marker = SHORT if row["own"] is None or (row["planted"] and row["own"]["rate"] < RECALL_TARGET) else ""
        print(f"{kind:14} {row['planted']:7} {row['planted'] / max(eligible[kind], 1):6.2%}  {row['scorer']:13} "
              f"{_cell(row['own']):>16} {_ci(row['own']):>11}  {_cell(row['any']):>16}  {_cell(row['precision']):>16}"
              f"  {_cell(row['precision_any']):>16}  {marker}")  # fmt: skip
    sources = sorted(next(iter(result["scorers"].values()))["fp_by_source"]) if result["scorers"] else []
    print(f"\n-- false positives on clean traces (target <= {FP_TARGET:.0%}); null flags count as clean")
    print(f"{'scorer':14} {'flagged/clean':>14} {'rate':>7} {'95% CI':>15}  " + " ".join(f"{s:>10}" for s in sources)
          + f" {'unjudged':>8} {'seconds':>8} {'traces/s':>9}")  # fmt: skip
    for name, row in result["scorers"].items():
        fp = row["fp"]
        marker = SHORT if fp["rate"] is not None and fp["rate"] > FP_TARGET else ""
        speed = f"{result['traces'] / seconds[name]:9.0f}" if seconds.get(name) else f"{'':9}"
        print(f"{name:14} {fp['hits']:6}/{fp['n']:<7} {fp['rate']:7.2%} [{fp['low']:.2%},{fp['high']:.2%}]  "
              + " ".join(f"{row['fp_by_source'][s]['rate'] or 0:10.2%}" for s in sources)
              + f" {row['unjudged']:8} {seconds.get(name, 0):8.1f} {speed}  {marker}")  # fmt: skip
    print("\n-- recall of every scorer on every kind (who catches what)")
    print(f"{'scorer':14} " + " ".join(f"{k:>13}" for k in corpus.KINDS))
    for name, row in result["scorers"].items():
        print(f"{name:14} " + " ".join(f"{_f(row['recall'][k]['rate']):>13}" for k in corpus.KINDS))
    places = sorted({p for row in result["kinds"].values() for p in row["placements"]})
    print("\n-- own-scorer recall by placement (planted count in brackets)")
    print(f"{'kind':14} " + " ".join(f"{p[:13]:>13}" for p in places))
    for kind, row in result["kinds"].items():
        cells = [row["placements"].get(p) for p in places]
        print(f"{kind:14} " + " ".join(f"{_f(c['rate'], 2) + f' [{c[chr(110)]}]' if c else '':>13}" for c in cells))


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report_sweep(runs: dict[float, dict]) -> None:
    print("\n== sweep: own-scorer recall / precision per rate (lower rates, fewer planted among the flags)")
    rates = list(runs)
    print(f"{'kind':14} " + " ".join(f"{f'{r:.2%}':>22}" for r in rates))
    for kind in corpus.KINDS:
        cells = []
        for rate in rates:
            row = runs[rate]["result"]["kinds"][kind]
            cells.append(f"{_f((row['own'] or {}).get('rate'))} / {_f((row['precision'] or {}).get('rate'))}")
        print(f"{kind:14} " + " ".join(f"{c:>22}" for c in cells))
    fp = [runs[r]["result"]["scorers"].get("any", {}).get("fp", {}).get("rate") for r in rates]
    print(f"{'any: clean FP':14} " + " ".join(f"{'-' if v is None else f'{v:.2%}':>22}" for v in fp))


# ---------------------------------------------------------------- main


def bench_rate(traces: list, rate: float, seed: int, args: argparse.Namespace, scorers: dict,
               dump_to: Path | None = None) -> dict:  # fmt: skip
    """Plant at ``rate``, score with every scorer, evaluate against what was planted."""
    planted, injections = corpus.plant(traces, rate, seed, args.min_planted)
    table = corpus.to_table(planted)
    if dump_to is not None:
        dump(table, injections, dump_to)
    flags, seconds, errors = run_scorers(table, scorers)
    labels: list[str | None] = [None] * len(planted)
    placements: list[str | None] = [None] * len(planted)
    for injection in injections:
        labels[injection.row], placements[injection.row] = injection.kind, injection.placement
    result = evaluate(flags, labels, placements, [t.source for t in planted])
    code = sum(t.task == "code" for t in traces)
    eligible = {kind: code if kind == "insecure_code" else len(traces) for kind in corpus.KINDS}
    planted_rows = [{**vars(i), "flagged_by": [name for name, v in flags.items() if v[i.row] == 1]} for i in injections]
    return {"result": result, "seconds": seconds, "errors": errors, "eligible": eligible, "injections": planted_rows}


def dump(table, injections: list, path: Path) -> None:
    """One JSON line per trace: the scorer's input columns plus kind, template, placement and span (or nulls)."""
    by_row = {injection.row: injection for injection in injections}
    with path.open("w") as out:
        for row, record in enumerate(table.to_pylist()):
            injection = by_row.get(row)
            label = {k: getattr(injection, k, None) for k in ("kind", "template", "placement", "start", "end")}
            out.write(json.dumps({**record, **label}) + "\n")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gsm8k", type=int, default=500, help="GSM8K train traces (0: none; -1: all 7,473)")
    parser.add_argument("--no-dev", action="store_true", help="leave out the 400 GPT-3 solutions")
    parser.add_argument("--code-samples", type=int, default=3, help="framings per HumanEval problem (0: no code)")
    parser.add_argument("--code-problems", type=int, help="a sample of this many HumanEval problems (default all 164)")
    parser.add_argument("--rate", type=float, default=0.01, help="share of eligible traces poisoned, per kind")
    parser.add_argument("--sweep", action="store_true", help=f"run rates {', '.join(map(str, SWEEP))} instead")
    parser.add_argument("--min-planted", type=int, default=20, help="plants per kind at least (for usable recall)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scorers", default=",".join(SAFETY), help="comma-separated scorer names")
    parser.add_argument("--perplexity", action="store_true", help="also the perplexity scorer (slow)")
    parser.add_argument("--json", type=Path, help="write the numbers (and every injection) here")
    parser.add_argument("--dump", type=Path, help="write the first rate's traces as JSONL, planted ones labelled")
    parser.add_argument("--smoke", action="store_true", help="30 GSM8K + 10 HumanEval traces, 2 plants per kind")
    args = parser.parse_args(argv)
    if args.smoke:
        args.gsm8k, args.no_dev, args.code_problems, args.code_samples, args.min_planted = 30, True, 10, 1, 2
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the report; return the numbers (the smoke test reads them)."""
    args = parse(argv)
    before = uptime()
    started = time.perf_counter()
    names = [n for n in args.scorers.split(",") if n] + (["perplexity"] if args.perplexity else [])
    scorers, missing = load_scorers(names)
    gsm8k = None if args.gsm8k < 0 else args.gsm8k
    traces = corpus.load(gsm8k, not args.no_dev, args.code_samples, args.seed, args.code_problems)
    code = sum(t.task == "code" for t in traces)
    print(f"{len(traces):,} clean traces ({len(traces) - code:,} math, {code:,} code); seed {args.seed}; "
          f"min {args.min_planted} plants per kind; uptime: {before}")  # fmt: skip
    for name, why in missing.items():
        print(f"scorer {name}: not available ({why})")
    rates = SWEEP if args.sweep else (args.rate,)
    runs: dict[float, dict] = {}
    short: dict[float, list[tuple[str, str]]] = {}
    for k, rate in enumerate(rates):
        run = bench_rate(traces, rate, args.seed * 1000 + k, args, scorers, args.dump if k == 0 else None)
        for name, error in run["errors"].items():
            print(f"scorer {name} failed at rate {rate}: {error}")
        report_rate(rate, run["result"], run["eligible"], run["seconds"])
        short[rate] = shortfalls(run["result"], {**missing, **run["errors"]})
        runs[rate] = run
    if len(rates) > 1:
        report_sweep(runs)
    after = uptime()
    elapsed = time.perf_counter() - started
    falls_short = short_line(short)
    print(f"\nfalls short: {'; '.join(falls_short) if falls_short else 'nothing'}")
    print(f"run time {elapsed:.1f}s; uptime before: {before}\nuptime after:  {after}")
    results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "missing": missing,
               "runs": {str(rate): run for rate, run in runs.items()}, "falls_short": falls_short,
               "seconds": elapsed, "uptime_before": before, "uptime_after": after}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    results["status"] = goals_table(goals(runs, missing), f"{len(traces):,} clean traces", args.smoke)
    return results


def goals(runs: dict[float, dict], missing: dict[str, str]) -> list[tuple[str, bool]]:
    """Per rate: each kind's own-scorer recall >= RECALL_TARGET, each scorer's clean FP rate <= FP_TARGET."""
    out = [(f"every safety scorer ran ({', '.join(missing)} did not)" if missing else "every safety scorer ran",
            not any(name in SAFETY for name in missing))]  # fmt: skip
    for rate, run in runs.items():
        result = run["result"]
        for kind, row in result["kinds"].items():
            value = "no scorer" if row["own"] is None else f"{row['own']['rate']:.3f}"
            ok = row["own"] is not None and row["own"]["rate"] >= RECALL_TARGET
            out.append((f"{kind} recall >= {RECALL_TARGET} at {rate:.2%} ({value})", ok))
        for name, row in result["scorers"].items():
            fp = row["fp"]["rate"]
            out.append((f"{name} flags <= {FP_TARGET:.0%} of clean traces at {rate:.2%} ({_f(fp, 4)})",
                        fp is None or fp <= FP_TARGET))  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main()["status"])
