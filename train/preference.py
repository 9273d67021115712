"""``tracebank train orpo`` and ``train dpo``: preference training on a release's stored pairs.

    tracebank pairs gsm8k@v2
    tracebank train orpo --release gsm8k@v2 --max-steps 20

Rows are in TRL's conversational preference format (``prompt``, ``chosen``, ``rejected`` as chat
messages). ORPO needs no reference model; DPO uses a frozen copy of the student (or the base
weights under LoRA) as its reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from tracebank import catalog as catalog_mod
from tracebank.curate.releases import ReleaseRef, resolve
from tracebank.errors import TracebankError
from tracebank.tasks import get_task
from tracebank.train.base import TrainConfig, TrainingData, TrainResult, run_training

METHODS = ("orpo", "dpo")
PAIRS_SQL = """
SELECT pr.pair_id, p.task, p.messages, c.rationale AS chosen, r.rationale AS rejected
FROM pairs pr
JOIN prompts p ON p.prompt_id = pr.prompt_id
JOIN traces c ON c.trace_id = pr.chosen_trace_id
JOIN traces r ON r.trace_id = pr.rejected_trace_id
WHERE pr.dataset = ? AND pr.version = ? AND pr.split = ?
ORDER BY pr.pair_id
"""


@dataclass(frozen=True)
class PreferenceConfig(TrainConfig):
    method: str = "orpo"  # orpo | dpo
    beta: float = 0.1  # ORPO: weight of the odds-ratio term; DPO: KL strength

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise TracebankError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.beta > 0:
            raise TracebankError(f"beta must be positive, got {self.beta}")


def load_pairs(location: catalog_mod.CatalogLocation, ref: ReleaseRef, split: str) -> TrainingData:
    with catalog_mod.Catalog(location) as cat:
        release = resolve(cat, ref)
        rows = cat.arrow(PAIRS_SQL, [release["dataset"], release["version"], split]).to_pylist()
    if not rows:
        name = f"{release['dataset']}@v{release['version']}"
        raise TracebankError(f"{name} has no pairs in split {split!r}: run `tracebank pairs {name}` first")
    examples = [
        {
            "pair_id": row["pair_id"],
            "prompt": get_task(row["task"]).render(row["messages"]),
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }
        for row in rows
    ]
    return TrainingData(release, examples)


def _trainer_factory(cfg: PreferenceConfig) -> Any:
    def make(model: Any, tokenizer: Any, train_set: Any, common: dict[str, Any]) -> Any:
        if cfg.method == "orpo":
            with warnings.catch_warnings():  # ORPO lives in trl.experimental, which warns on import
                warnings.simplefilter("ignore")
                from trl.experimental.orpo import ORPOConfig, ORPOTrainer

            args = ORPOConfig(**common, beta=cfg.beta, remove_unused_columns=False)
            return ORPOTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer)
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=cfg.beta, remove_unused_columns=False)
        return DPOTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer)

    return make


def train_preference(location: catalog_mod.CatalogLocation, cfg: PreferenceConfig) -> TrainResult:
    data = load_pairs(location, ReleaseRef.parse(cfg.release), cfg.split)
    return run_training(location, cfg, cfg.method, data, _trainer_factory(cfg))
