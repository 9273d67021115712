"""Near-duplicate throughput and accuracy on planted GSM8K duplicates, next to datasketch on the same corpus.

    .venv/bin/python bench/dedup_throughput.py                    # N=20,000: near_dup vs datasketch, both scopes
    .venv/bin/python bench/dedup_throughput.py --smoke            # N=3,000 smoke run (about 10 s)
    .venv/bin/python bench/dedup_throughput.py --scale 1000000    # + exact and near dedup of 1M traces (--n 0: only that)
    .venv/bin/python bench/dedup_throughput.py --semantic         # + embedding throughput, paraphrase recall

The corpus (``bench/dedup/corpus.py``) is GSM8K reference solutions in families of one question
each, with planted exact and near copies and planted negatives; a pair's label is its exact word
3-gram Jaccard similarity against the threshold (``bench/dedup/eval.py``). Every arm runs in a
fresh process that reads the same corpus file, so its time, CPU and peak RSS are its own; the clock
covers scoring only (imports, reading the file and one warm-up call on 200 rows are outside it, for
every arm alike; the scale run has no warm-up).

Arms: ``near_dup`` (``filters/diversity/near_dup.py``); datasketch the usual way (one ``MinHash`` per trace
with ``update`` per shingle, ``MinHashLSH`` insert, a query per trace, the estimated Jaccard
checked against the threshold); datasketch tuned (``MinHash.bulk``: one permutation set, batched
updates). Both datasketch arms get the scorer's tokens (``filters.diversity.text.words``) and clustering,
so only MinHash and LSH differ. Targets (2 cores, N=20,000): near_dup >= 10x the usual datasketch
docs/s; recall >= 0.95 at precision >= 0.95. The goals come last; the exit status is 1 on a miss.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

os.environ["TRACEBANK_EMBEDDING_CACHE"] = "off"  # time the embedding, not the vector cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup import corpus as corpus_module
from dedup import evaluation as dedup_eval
from dedup import report as dedup_report
from machine import uptime

WARMUP_ROWS = 200  # each arm scores this slice once before the clock: first-call costs are not throughput


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def read_table(path: str) -> pa.Table:
    """The whole corpus in memory (not memory-mapped), so every arm starts from the same resident table."""
    with pa.OSFile(path) as source:
        return pa.ipc.open_file(source).read_all()


def write_table(table: pa.Table, path: str | Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def timed(step, *args) -> tuple[object, dict[str, float]]:
    before, started = _usage(), time.perf_counter()
    out = step(*args)
    seconds, after = time.perf_counter() - started, _usage()
    return out, {"seconds": seconds, "cpu_s": after["cpu_s"] - before["cpu_s"], "peak_rss_mb": after["peak_rss_mb"]}


# ---------------------------------------------------------------- arms (each in its own process)


def near_dup(table: pa.Table, scope: str, args: argparse.Namespace) -> pa.Table:
    from tracebank.filters.diversity.near_dup import NearDuplicate

    options = NearDuplicate.Options(shingle=args.shingle, num_perm=args.num_perm, threshold=args.threshold, scope=scope)
    return NearDuplicate(options).score(table)


def datasketch_arm(table: pa.Table, scope: str, args: argparse.Namespace, bulk: bool) -> pa.Table:
    """datasketch MinHash + MinHashLSH on the scorer's shingles, clustered by the scorer's rule."""
    import polars as pl

    from tracebank.filters.diversity.clusters import leader_clusters, representative_order
    from tracebank.filters.diversity.exact import question_text
    from tracebank.filters.diversity.text import normalized, words

    size = args.shingle
    frame = pl.from_arrow(table.select(["messages", "rationale"]))
    keyed = frame.select(tokens=words(pl.col("rationale")), group=normalized(question_text(pl.col("messages"))).hash())
    groups = keyed["group"].to_numpy() if scope == "prompt" else np.zeros(table.num_rows, np.uint64)
    shingles = [
        {" ".join(t[i : i + size]).encode() for i in range(max(1, len(t) - size + 1))}
        for t in keyed["tokens"].to_list()
    ]
    left, right, similarity = lsh_pairs(minhashes(shingles, args.num_perm, bulk), groups, args.threshold)
    clusters = leader_clusters(representative_order(table), left, right, similarity)
    ids = pl.Series(table.column("trace_id"))
    leader = ids.gather(clusters.leader)
    is_dup = pl.Series(clusters.leader != np.arange(table.num_rows))
    duplicate_of = pl.select(pl.when(is_dup).then(leader)).to_series()
    return pl.DataFrame({"trace_id": ids, "cluster_id": leader, "duplicate_of": duplicate_of}).to_arrow()


def minhashes(shingles: list[set[bytes]], num_perm: int, bulk: bool) -> list:
    """One MinHash per text: the usual ``update`` per shingle, or ``MinHash.bulk`` (shared permutations)."""
    from datasketch import MinHash

    if bulk:
        return MinHash.bulk(shingles, num_perm=num_perm)
    sketches = []
    for grams in shingles:
        sketch = MinHash(num_perm=num_perm)
        for gram in grams:
            sketch.update(gram)
        sketches.append(sketch)
    return sketches


def lsh_pairs(sketches: list, groups: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Insert every sketch, query every sketch; keep same-group pairs whose estimated Jaccard passes."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=len(sketches[0].hashvalues) if sketches else 128)
    for row, sketch in enumerate(sketches):
        lsh.insert(row, sketch)
    pairs = []
    for row, sketch in enumerate(sketches):
        for other in lsh.query(sketch):
            if other < row and groups[other] == groups[row]:
                estimate = sketch.jaccard(sketches[other])
                if estimate >= threshold:
                    pairs.append((row, other, estimate))
    left, right, similarity = zip(*pairs, strict=True) if pairs else ((), (), ())
    return np.array(left, np.int64), np.array(right, np.int64), np.array(similarity, np.float64)


def exact_dup(table: pa.Table, scope: str, args: argparse.Namespace) -> pa.Table:
    from tracebank.filters.diversity.exact import ExactDuplicate

    return ExactDuplicate().score(table)


ARMS = {
    "near_dup": near_dup,
    "datasketch": lambda table, scope, args: datasketch_arm(table, scope, args, bulk=False),
    "datasketch_bulk": lambda table, scope, args: datasketch_arm(table, scope, args, bulk=True),
    "exact_dup": exact_dup,
}


def run_arm(args: argparse.Namespace) -> dict:
    """One arm on the corpus file: the scored columns written beside it, the timings returned."""
    import datasketch  # noqa: F401  (imports outside the clock for every arm)
    import polars  # noqa: F401

    import tracebank.filters.diversity.exact

    if args.role == "near_dup":
        import tracebank.filters.diversity.near_dup  # noqa: F401
    table = read_table(args.corpus)
    loaded = _rss_mb()
    _, warmup = timed(ARMS[args.role], table.slice(0, WARMUP_ROWS), args.scope, args)
    result, usage = timed(ARMS[args.role], table, args.scope, args)
    keep = [c for c in ("trace_id", "cluster_id", "duplicate_of") if c in result.column_names]
    write_table(result.select(keep), args.out)
    return {**usage, "loaded_rss_mb": loaded, "docs": table.num_rows, "warmup_s": warmup["seconds"]}


def run_scale(args: argparse.Namespace) -> dict:
    """Exact, then near dedup per scope, on one resident table; peak RSS noted after each step."""
    import tracebank.filters.diversity.exact
    import tracebank.filters.diversity.near_dup  # noqa: F401

    table = read_table(args.corpus)
    out = {"docs": table.num_rows, "loaded_rss_mb": _rss_mb(), "steps": {}}
    for step, scope in [("exact_dup", "prompt")] + [("near_dup", s) for s in args.scopes.split(",")]:
        result, usage = timed(ARMS[step], table, scope, args)
        name = step if step == "exact_dup" else f"near_dup/{scope}"
        keep = [c for c in ("trace_id", "cluster_id", "duplicate_of") if c in result.column_names]
        write_table(result.select(keep), Path(args.out).with_name(f"scale-{name.replace('/', '-')}.arrow"))
        out["steps"][name] = usage
        del result
    return out


def run_generate(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    corpus = corpus_module.build(args.n, args.seed, semantic=args.semantic_corpus)
    seconds = time.perf_counter() - started
    write_table(corpus.table, args.corpus)
    np.savez(args.out, **corpus.planted.arrays())
    return {"seconds": seconds, "peak_rss_mb": _usage()["peak_rss_mb"], "docs": corpus.table.num_rows,
            "arrow_mb": corpus.table.nbytes / 2**20}  # fmt: skip


def run_semantic(args: argparse.Namespace) -> dict:
    """Embedding throughput (texts per CPU-second) and, when filters/diversity/semantic.py exists, its clusters."""
    from tracebank.filters.diversity.embeddings import DEFAULT_MODEL, get_embedder
    from tracebank.tasks import get_task

    table = read_table(args.corpus)
    texts = table.column("rationale").to_pylist()
    model = args.embed_model or DEFAULT_MODEL
    embedder, load = timed(lambda name: (e := get_embedder(name), e.model)[0], model)  # the model loads lazily
    vectors, usage = timed(embedder.encode, texts)
    np.save(Path(args.out).with_name("vectors.npy"), vectors)
    out = {"model": model, "load_s": load["seconds"], "embed": usage, "texts": len(texts)}
    if importlib.util.find_spec("tracebank.filters.diversity.semantic") is not None:
        from tracebank.filters.diversity.semantic import SemanticDuplicate

        settings = {"scope": args.scope, **({"threshold": args.semantic_threshold} if args.semantic_threshold else {})}
        scorer = SemanticDuplicate(SemanticDuplicate.Options(**settings))
        if "answer" not in table.column_names:  # the extracted answer, as the builders store it
            parse = get_task("math").parse
            table = table.append_column("answer", pa.array([parse(t) if t else None for t in texts], pa.string()))
        result, scored = timed(scorer.score, table)
        keep = [c for c in ("trace_id", "cluster_id", "duplicate_of") if c in result.column_names]
        write_table(result.select(keep), args.out)
        out["scorer"] = {**scored, "options": {k: str(v) for k, v in vars(scorer.options).items()}}
    return out


ROLES = {"generate": run_generate, "scale": run_scale, "semantic": run_semantic}


# ---------------------------------------------------------------- the parent


def _child(role: str, args: argparse.Namespace, corpus: Path, out: Path, scope: str = "prompt", **extra) -> dict:
    command = [sys.executable, __file__, "--role", role, "--corpus", str(corpus), "--out", str(out), "--scope", scope,
               "--shingle", str(args.shingle), "--num-perm", str(args.num_perm), "--threshold", str(args.threshold),
               "--seed", str(args.seed), "--scopes", args.scopes]  # fmt: skip
    for flag, value in extra.items():
        command += [f"--{flag.replace('_', '-')}", str(value)] if value is not True else [f"--{flag.replace('_', '-')}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"{role} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def planted_with_labels(path: Path, truth: dedup_eval.Truth, sample: int | None = None, seed: int = 0) -> dict:
    """The planted pairs (all, or a seeded sample) with their exact Jaccard similarity."""
    with np.load(path) as saved:
        planted = {name: saved[name] for name in ("left", "right", "kind")}
    if sample is not None and len(planted["left"]) > sample:
        keep = np.sort(np.random.default_rng(seed).choice(len(planted["left"]), sample, replace=False))
        planted = {name: values[keep] for name, values in planted.items()}
    planted["similarity"] = truth.similarity(planted["left"], planted["right"])
    return planted


def compare(args: argparse.Namespace, work: Path) -> dict:
    """The N-trace comparison: every arm on both scopes, evaluated against the planted pairs."""
    corpus, pairs = work / "corpus.arrow", work / "planted.npz"
    generated = _child("generate", args, corpus, pairs, n=args.n)
    table = read_table(str(corpus))
    truth = dedup_eval.Truth(table.column("rationale"), args.shingle)
    truth.need(np.arange(table.num_rows))
    planted = planted_with_labels(pairs, truth)
    kinds = corpus_module.KINDS
    runs: dict[str, dict] = {}
    arms = ["near_dup"] + ([] if args.skip_baseline else ["datasketch"] + ([] if args.no_bulk else ["datasketch_bulk"]))
    print(dedup_report.HEADER)
    for scope in args.scopes.split(","):
        for arm in arms:
            out = work / f"{arm}-{scope}.arrow"
            run = _child(arm, args, corpus, out, scope)
            run["eval"] = dedup_eval.evaluate(dedup_eval.assignment(read_table(str(out))), planted, truth,
                                              args.threshold, kinds)  # fmt: skip
            runs[f"{arm}/{scope}"] = run
            print(dedup_report.arm_line(f"{arm}/{scope}", run), flush=True)
    runs["ceiling/prompt"] = {"eval": dedup_eval.evaluate(dedup_eval.ceiling(table, truth, args.threshold), planted,
                                                          truth, args.threshold, kinds)}  # fmt: skip
    exact = _child("exact_dup", args, corpus, work / "exact.arrow")
    exact_kinds = [kinds.index("exact"), kinds.index("format")]
    exact["eval"] = dedup_eval.evaluate_exact(dedup_eval.assignment(read_table(str(work / "exact.arrow"))), planted,
                                              table.column("rationale"), exact_kinds)  # fmt: skip
    runs["exact_dup"] = exact
    return {"n": table.num_rows, "generated": generated, "runs": runs, "kinds": planted_summary(planted, args)}


def planted_summary(planted: dict, args: argparse.Namespace) -> dict:
    """Per kind: pairs, positives and the similarity range (what the labels came out as)."""
    out = {}
    for code in np.unique(planted["kind"]).tolist():
        values = planted["similarity"][planted["kind"] == code]
        out[corpus_module.KINDS[code]] = {"pairs": len(values), "positives": int((values >= args.threshold).sum()),
                                          "mean": float(values.mean()), "min": float(values.min()),
                                          "max": float(values.max())}  # fmt: skip
    return out


def scale(args: argparse.Namespace, work: Path) -> dict:
    """Exact + near dedup of ``--scale`` traces: time, docs/s, peak RSS; accuracy on a sample of pairs."""
    corpus, pairs = work / "scale.arrow", work / "scale-planted.npz"
    generated = _child("generate", args, corpus, pairs, n=args.scale)
    run = _child("scale", args, corpus, work / "scale-result.arrow")
    table = read_table(str(corpus))
    truth = dedup_eval.Truth(table.column("rationale"), args.shingle)
    planted = planted_with_labels(pairs, truth, sample=args.sample, seed=args.seed)
    for name, usage in run["steps"].items():
        result = read_table(str(work / f"scale-{name.replace('/', '-')}.arrow"))
        assign = dedup_eval.assignment(result)
        if name == "exact_dup":
            exact_kinds = [corpus_module.KINDS.index("exact"), corpus_module.KINDS.index("format")]
            usage["eval"] = dedup_eval.evaluate_exact(assign, planted, table.column("rationale"), exact_kinds,
                                                      sample=args.sample)  # fmt: skip
        else:
            usage["eval"] = dedup_eval.evaluate(assign, planted, truth, args.threshold, corpus_module.KINDS,
                                                sample=args.sample)  # fmt: skip
    return {"generated": generated, **run}


def semantic(args: argparse.Namespace, work: Path) -> dict:
    """Embedding throughput and paraphrase recall on a semantic corpus (base, paraphrase, negatives)."""
    if importlib.util.find_spec("tracebank.filters.diversity.embeddings") is None:
        return {"missing": "tracebank.filters.diversity.embeddings"}
    corpus, pairs = work / "semantic.arrow", work / "semantic-planted.npz"
    _child("generate", args, corpus, pairs, n=args.semantic_n, semantic_corpus=True)
    extra = {"embed_model": args.embed_model} if args.embed_model else {}
    if args.semantic_threshold:
        extra["semantic_threshold"] = args.semantic_threshold
    run = _child("semantic", args, corpus, work / "semantic-result.arrow", args.semantic_scope, **extra)
    table = read_table(str(corpus))
    truth = dedup_eval.Truth(table.column("rationale"), args.shingle)
    planted = planted_with_labels(pairs, truth)
    vectors = np.load(work / "vectors.npy")
    cosine = np.einsum("ij,ij->i", vectors[planted["left"]], vectors[planted["right"]])
    rng = np.random.default_rng(args.seed)
    unrelated = rng.integers(0, len(vectors), (2, 2000))
    run["cosine"] = {corpus_module.KINDS[c]: np.quantile(cosine[planted["kind"] == c], [0.05, 0.5, 0.95]).tolist()
                     for c in np.unique(planted["kind"]).tolist()}  # fmt: skip
    run["cosine"]["unrelated"] = np.quantile(np.einsum("ij,ij->i", vectors[unrelated[0]], vectors[unrelated[1]]),
                                             [0.05, 0.5, 0.95]).tolist()  # fmt: skip
    kinds = [corpus_module.KINDS[c] for c in np.unique(planted["kind"]).tolist()]
    run["sweep"] = {  # share of each kind's pairs at or above a cosine threshold: recall for paraphrases
        threshold: {kind: float((cosine[planted["kind"] == corpus_module.KINDS.index(kind)] >= threshold).mean())
                    for kind in kinds}
        for threshold in (0.85, 0.9, 0.93, 0.95, 0.97)
    }  # fmt: skip
    if "scorer" in run:
        assign = dedup_eval.assignment(read_table(str(work / "semantic-result.arrow")))
        together = assign.cluster[planted["left"]] == assign.cluster[planted["right"]]
        run["scorer"]["together"] = {corpus_module.KINDS[c]: float(together[planted["kind"] == c].mean())
                                     for c in np.unique(planted["kind"]).tolist()}  # fmt: skip
    return run


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="traces in the comparison corpus")
    parser.add_argument("--quick", "--smoke", action="store_true", help="a smoke run: N=3,000, semantic N=300")
    parser.add_argument("--scale", type=int, default=0, help="also run exact + near dedup on this many traces")
    parser.add_argument("--scopes", default="prompt,dataset", help="near_dup scopes to run, comma-separated")
    parser.add_argument("--shingle", type=int, default=3)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=20_000, help="planted pairs and relations checked at scale")
    parser.add_argument("--skip-baseline", action="store_true", help="near_dup (and exact_dup) only")
    parser.add_argument("--no-bulk", action="store_true", help="skip the tuned datasketch arm (MinHash.bulk)")
    parser.add_argument("--semantic", action="store_true", help="also embedding throughput and paraphrase recall")
    parser.add_argument("--semantic-n", type=int, default=1000, help="traces in the semantic corpus")
    parser.add_argument("--semantic-scope", default="prompt")
    parser.add_argument("--semantic-threshold", type=float, help="SemanticDuplicate threshold (default: its own)")
    parser.add_argument("--embed-model", help="embedding model (default: filters.diversity.embeddings.DEFAULT_MODEL)")
    parser.add_argument("--dir", type=Path, help="keep the corpus and results here (default: a temp dir, removed)")
    parser.add_argument("--role", choices=(*ARMS, *ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--scope", default="prompt", help=argparse.SUPPRESS)
    parser.add_argument("--semantic-corpus", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.semantic_n = min(args.n, 3000), min(args.semantic_n, 300)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the report; return the numbers (the smoke test reads them)."""
    args = parse(argv)
    if args.role:
        result = (ROLES.get(args.role) or run_arm)(args)
        print(json.dumps(result))
        return result
    before = uptime()
    print(f"N={args.n:,} shingle={args.shingle} num_perm={args.num_perm} threshold={args.threshold} "
          f"{os.cpu_count()} CPUs; uptime: {before}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tracebank-dedup-") as scratch:
        work = args.dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        results: dict = {"uptime_before": before, "compare": compare(args, work) if args.n else None}
        if args.scale:
            results["scale"] = scale(args, work)
        if args.semantic:
            results["semantic"] = semantic(args, work)
    results["uptime_after"] = uptime()
    dedup_report.report(results, args)
    return results


if __name__ == "__main__":
    sys.exit(main().get("status", 0))
