"""``tracebank train sft``: supervised fine-tuning of a student on a release's kept traces.

    tracebank train sft --release gsm8k-demo@v1 --student smollm2-135m-instruct --max-steps 8

Trains with TRL's SFTTrainer on the release's ``train`` split in TRL's conversational
prompt-completion format (loss on the completion only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracebank import catalog as catalog_mod
from tracebank.errors import TracebankError
from tracebank.releases import ReleaseRef, resolve
from tracebank.tasks import get_task
from tracebank.train.base import TrainConfig, TrainingData, TrainResult, run_training

SPLIT_SQL = """
SELECT d.trace_id, p.task, p.messages, t.rationale
FROM decisions d JOIN traces t ON t.trace_id = d.trace_id JOIN prompts p ON p.prompt_id = d.prompt_id
WHERE d.dataset = ? AND d.version = ? AND d.keep AND d.split = ? AND t.rationale IS NOT NULL
ORDER BY d.trace_id
"""


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    pass


def load_split(location: catalog_mod.CatalogLocation, ref: ReleaseRef, split: str) -> TrainingData:
    """Kept traces of one split of a release, as prompt/completion conversations."""
    with catalog_mod.Catalog(location) as cat:
        release = resolve(cat, ref)
        rows = cat.arrow(SPLIT_SQL, [release["dataset"], release["version"], split]).to_pylist()
    if not rows:
        splits = sorted({c["split"] for c in release["counts"] if c["keep"]})
        raise TracebankError(
            f"{release['dataset']}@v{release['version']} keeps no traces in split {split!r}; "
            f"splits with kept traces: {', '.join(splits) or 'none'}"
        )
    examples = [
        {
            "trace_id": row["trace_id"],
            "prompt": get_task(row["task"]).render(row["messages"]),
            "completion": [{"role": "assistant", "content": row["rationale"]}],
        }
        for row in rows
    ]
    return TrainingData(release, examples)


def _sft_trainer(model: Any, tokenizer: Any, train_set: Any, common: dict[str, Any]) -> Any:
    import trl

    return trl.SFTTrainer(
        model=model, args=trl.SFTConfig(**common), train_dataset=train_set, processing_class=tokenizer
    )


def train_sft(location: catalog_mod.CatalogLocation, cfg: SFTConfig) -> TrainResult:
    data = load_split(location, ReleaseRef.parse(cfg.release), cfg.split)
    return run_training(location, cfg, "sft", data, _sft_trainer)
