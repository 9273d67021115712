"""``tracebank train sft``: supervised fine-tuning of a student on a release's kept traces.

    tracebank train sft --release gsm8k-demo@v1 --student smollm2-135m-instruct --max-steps 8

Trains with TRL's SFTTrainer on the release's ``train`` split in TRL's conversational
prompt-completion format (loss on the completion only).

Chunks (the ``chunks`` table, filled by ``tracebank score --filter chunking``) are used two ways:

- cut: ``chunk_kinds`` and ``chunk_min_score`` keep only the steps worth learning (say,
  ``reasoning,compute`` steps scoring at least 0.5): each completion is its rationale with the other
  chunks' spans cut out. A trace with no chunks is trained on whole; one whose every chunk is cut is
  left out; a chunk without a score is kept.
- chunk-wise (``chunk_wise``, Skip-Thinking): one example per chunk, the earlier chunks as context
  (``train.chunkwise``); ``chunk_skip`` leaves the non-reasoning chunks out. Its default output is
  ``<catalog>/models/<dataset>-v<N>-sft-chunkwise``, beside the whole-trace student.

A trace chunked by several runs uses the latest run's chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tracebank import catalog as catalog_mod
from tracebank.curate.releases import ReleaseRef, resolve
from tracebank.errors import TracebankError
from tracebank.tasks import get_task
from tracebank.train.base import TrainConfig, TrainingData, TrainResult, run_training, sft_trainer
from tracebank.train.chunkwise import chunkwise_examples, chunkwise_trainer

SPLIT_SQL = """
SELECT d.trace_id, p.task, p.messages, t.rationale
FROM decisions d JOIN traces t ON t.trace_id = d.trace_id JOIN prompts p ON p.prompt_id = d.prompt_id
WHERE d.dataset = ? AND d.version = ? AND d.keep AND d.split = ? AND t.rationale IS NOT NULL
ORDER BY d.trace_id
"""


# The kept traces' chunks, from the latest chunking run of each trace, in order.
CHUNKS_SQL = """
SELECT c.trace_id, c.chunk_idx, c.char_start, c.char_end, c.kind, c.score
FROM chunks c
WHERE c.dataset = ? AND c.trace_id IN (
    SELECT trace_id FROM decisions WHERE dataset = ? AND version = ? AND keep AND split = ?)
QUALIFY c.run_id = max(c.run_id) OVER (PARTITION BY c.trace_id)
ORDER BY c.trace_id, c.chunk_idx
"""


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    chunk_kinds: str | None = None  # cut: keep only chunks of these kinds (comma-separated)
    chunk_min_score: float | None = None  # cut: keep only chunks scoring at least this
    chunk_wise: bool = False  # one example per chunk, the earlier chunks as context (Skip-Thinking)
    chunk_skip: bool = False  # with chunk_wise: leave non-reasoning chunks (restate, summary) out

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk_kinds is not None and not self.kinds():
            raise TracebankError("chunk_kinds names no kind; give e.g. reasoning,compute")
        if self.chunk_skip and not self.chunk_wise:
            raise TracebankError("chunk_skip is the skip variant of chunk-wise SFT; give chunk_wise too")
        if self.chunk_wise and self.cuts_chunks():
            raise TracebankError(
                "chunk_wise trains one chunk per example and takes no chunk_kinds or chunk_min_score; "
                "use chunk_skip to leave out non-reasoning chunks"
            )

    def kinds(self) -> set[str] | None:
        return None if self.chunk_kinds is None else {k.strip() for k in self.chunk_kinds.split(",") if k.strip()}

    def cuts_chunks(self) -> bool:
        return self.chunk_kinds is not None or self.chunk_min_score is not None

    def reads_chunks(self) -> bool:
        return self.cuts_chunks() or self.chunk_wise


def load_split(
    location: catalog_mod.CatalogLocation, ref: ReleaseRef, split: str, cfg: SFTConfig | None = None
) -> TrainingData:
    """Kept traces of one split of a release, as prompt/completion conversations (cut or chunk-wise if ``cfg`` says)."""
    chunk_wise = cfg is not None and cfg.reads_chunks()
    with catalog_mod.Catalog(location) as cat:
        release = resolve(cat, ref)
        params = [release["dataset"], release["version"], split]
        rows = cat.arrow(SPLIT_SQL, params).to_pylist()
        chunks = cat.arrow(CHUNKS_SQL, [release["dataset"], *params]).to_pylist() if chunk_wise else []
    if not rows:
        splits = sorted({c["split"] for c in release["counts"] if c["keep"]})
        raise TracebankError(
            f"{release['dataset']}@v{release['version']} keeps no traces in split {split!r}; "
            f"splits with kept traces: {', '.join(splits) or 'none'}"
        )
    stats: dict[str, float] = {}
    where = f"{release['dataset']}@v{release['version']} split {split!r}"
    if cfg is not None and cfg.chunk_wise:
        examples, stats = chunkwise_examples(rows, chunks, cfg.chunk_skip, where)
        return TrainingData(release, examples, stats)
    if chunk_wise:
        rows, stats = _chunk_wise(rows, chunks, cfg, where)
    examples = [
        {
            "trace_id": row["trace_id"],
            "prompt": get_task(row["task"]).render(row["messages"]),
            "completion": [{"role": "assistant", "content": row["rationale"]}],
        }
        for row in rows
    ]
    return TrainingData(release, examples, stats)


def _chunk_wise(
    rows: list[dict[str, Any]], chunks: list[dict[str, Any]], cfg: SFTConfig, where: str
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows with each chunked rationale cut down to its kept chunks; counters of what was cut."""
    if not chunks:
        raise TracebankError(
            f"no chunks for the kept traces of {where}: chunk_kinds and chunk_min_score cut steps using the "
            "chunks table; run `tracebank score DATASET --filter chunking` first"
        )
    kinds = cfg.kinds()
    present = {c["kind"] for c in chunks}
    if kinds is not None and kinds - present:  # a typo would otherwise cut every chunk of that kind
        raise TracebankError(
            f"no chunk of kind {', '.join(sorted(kinds - present))} in {where}; "
            f"kinds present: {', '.join(sorted(present))}"
        )
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks:
        by_trace.setdefault(chunk["trace_id"], []).append(chunk)
    kept_rows: list[dict[str, Any]] = []
    stats = dict.fromkeys(("chunked_traces", "unchunked_traces", "traces_cut_whole", "chunks_kept", "chunks_cut"), 0)
    for row in rows:
        spans = by_trace.get(row["trace_id"])
        if spans is None:
            stats["unchunked_traces"] += 1
            kept_rows.append(row)
            continue
        stats["chunked_traces"] += 1
        cut = [c for c in spans if not _keeps(c, kinds, cfg.chunk_min_score)]
        stats["chunks_cut"] += len(cut)
        stats["chunks_kept"] += len(spans) - len(cut)
        if len(cut) == len(spans):
            stats["traces_cut_whole"] += 1
            continue
        kept_rows.append({**row, "rationale": cut_spans(row["rationale"], cut, row["trace_id"])})
    if not kept_rows:
        raise TracebankError(f"chunk-wise SFT cut every trace of {where}: relax chunk_kinds or chunk_min_score")
    return kept_rows, stats


def _keeps(chunk: dict[str, Any], kinds: set[str] | None, min_score: float | None) -> bool:
    if kinds is not None and chunk["kind"] not in kinds:
        return False
    return min_score is None or chunk["score"] is None or chunk["score"] >= min_score


def cut_spans(text: str, cut: list[dict[str, Any]], trace_id: str) -> str:
    """``text`` without the character spans of ``cut`` chunks; one gap of whitespace is left per cut."""
    if not cut:
        return text
    pieces, position = [], 0
    for chunk in sorted(cut, key=lambda c: c["char_start"]):
        start, end = chunk["char_start"], chunk["char_end"]
        if not position <= start <= end <= len(text):
            raise TracebankError(
                f"chunk {chunk['chunk_idx']} of trace {trace_id} spans characters {start}..{end}, which do not "
                f"fit its {len(text)}-character rationale after the previous cut ending at {position}"
            )
        pieces.append(text[position:start])
        position = end
    pieces.append(text[position:])
    joined = pieces[0]
    for piece in pieces[1:]:
        before, after = joined[len(joined.rstrip()) :], piece[: len(piece) - len(piece.lstrip())]
        joined = joined.rstrip() + (before or after) + piece.lstrip()
    return joined.strip()


def _sft_trainer(model: Any, tokenizer: Any, train_set: Any, common: dict[str, Any]) -> Any:
    import trl

    return sft_trainer(model, tokenizer, train_set, trl.SFTConfig(**common))


def train_sft(location: catalog_mod.CatalogLocation, cfg: SFTConfig) -> TrainResult:
    data = load_split(location, ReleaseRef.parse(cfg.release), cfg.split, cfg)
    if not cfg.chunk_wise:
        return run_training(location, cfg, "sft", data, _sft_trainer)
    if cfg.output_dir is None:  # a chunk-wise student does not replace the whole-trace one
        name = f"{data.release['dataset']}-v{data.release['version']}-sft-chunkwise"
        cfg = replace(cfg, output_dir=str(location.home / "models" / name))
    return run_training(location, cfg, "sft", data, chunkwise_trainer)
