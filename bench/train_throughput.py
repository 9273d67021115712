"""Training throughput: tracebank SFT (and ORPO, DPO) against a plain TRL script and a bare PyTorch loop.

    .venv/bin/python bench/train_throughput.py            # defaults: about 9 minutes on 2 CPU cores
    .venv/bin/python bench/train_throughput.py --smoke    # about 3 minutes, to check it runs (numbers are noise)
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/train_throughput.py  # as on AVX2 only

Builds a real release in a temp dir (GSM8K train questions with their reference solutions, and the
labeled GPT-3 solutions to GSM8K test questions 1-100, scored and curated with recipes' correct-only
policy), then trains SmolLM2-135M on it in three ways, each in its own process:
  - tracebank: ``train_sft`` (and ``train_preference`` for ORPO and DPO on ``build_pairs`` pairs of a
    correct vs a wrong labeled solution);
  - plain TRL: SFTConfig + SFTTrainer (ORPO/DPO trainers) on the same examples, model, batch size, max
    length, steps, seed, precision flags and gradient checkpointing;
  - bare loop (the ceiling): the same token batches (same chat template, same truncation, padded to
    the batch's longest), forward, backward and fused AdamW, under bf16 autocast when precision is bf16.
Every trainer arm gets the same instrumentation (a Trainer callback and a forward pre-hook), so the
timed part is the training steps only: model loading, tokenising and the first (warm-up) step are
excluded. Tokens/s counts the non-pad tokens that went through the model. Also measured: the defaults
that fight CPU training (gradient checkpointing, dataloader workers, padding to max_length) and the
bare loop in the other precision. The goals table comes last; the exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from machine import goals_table, uptime

ROOT = Path(__file__).resolve().parents[1]
DATASET = "throughput"
LEARNING_RATE = 2e-5  # tracebank's and SFTConfig's default, given to every arm
SEED = 0
GOALS = (("SFT tokens/s vs plain TRL", "sft trl", 0.95), ("SFT tokens/s vs bare loop", "sft bare", 0.80))


@dataclass(frozen=True)
class Arm:
    """One training run in its own process: who trains (tracebank | trl | bare), which stage, at what size."""

    name: str  # row label and result key
    runner: str  # tracebank | trl | bare
    stage: str  # sft | orpo | dpo
    steps: int
    batch_size: int
    max_length: int
    precision: str  # requested: auto | fp32 | bf16 (tracebank resolves it; TRL and bare get the resolved flags)
    gradient_checkpointing: bool = False
    workers: int = 0  # dataloader_num_workers (trl only; tracebank does not set it, so TRL's default 0)
    pad_to: str = "longest"  # bare only: longest (what TRL's collators do) | max_length


# ---------------------------------------------------------------- the release


def prepare(work: Path, train_prompts: int, labeled_rows: int) -> tuple[Any, str]:
    """A real curated release with pairs; returns (catalog location, DATASET@vN)."""
    from tracebank import catalog, sources
    from tracebank.curate import releases
    from tracebank.curate.policy import Policy
    from tracebank.filters.runner import ScoreConfig, score
    from tracebank.importer import ColumnMap, ImportConfig, import_data
    from tracebank.train.pairs import PairsConfig, build_pairs

    location = catalog.locate(work / "catalog")
    gold = ColumnMap.parse("prompt=question,reference=answer,response=answer")
    labeled = ColumnMap.parse("prompt=question,reference=ground_truth,response=*.solution")
    import_data(location, ImportConfig(str(sources.resolve("gsm8k/train")), DATASET, gold, split_hint="train",
                                       limit=train_prompts))  # fmt: skip
    import_data(location, ImportConfig(str(sources.resolve("gsm8k/labeled_solutions_dev")), DATASET, labeled,
                                       split_hint="labeled", limit=labeled_rows))  # fmt: skip
    score(location, ScoreConfig(DATASET))
    policy, _ = Policy.load(ROOT / "recipes" / "policies" / "correct-only.yaml")
    policy_dict = {**policy.as_dict(), "splits": {"train": 1.0}}  # every kept trace trains
    result = releases.curate(location, DATASET, Policy.from_dict(policy_dict), json.dumps(policy_dict), "throughput")
    release = f"{DATASET}@v{result.version}"
    # The labeled solutions hold right and wrong answers to one question: wrong teacher traces are the rejected.
    pairs = build_pairs(location, PairsConfig(release, rejected_from=("teacher",)))
    kept = sum(c["n"] for c in result.counts if c["keep"])
    print(f"release {release}: {kept} kept traces, {pairs.pairs_new} pairs over {pairs.prompts_paired} prompts")
    return location, release


# ---------------------------------------------------------------- in the child: instrumentation


def make_clock(record_batches: bool) -> Any:
    """A Trainer callback timing each optimizer step and, by a forward pre-hook, counting non-pad tokens."""
    import torch
    import transformers

    class Clock(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []  # (time at the end of a step, tokens so far)
            self.tokens, self.widths, self.longest, self.batches = 0, [], [], []
            self.started = 0.0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            # Hooked here, after the trainer built any reference model, so only the trained model counts.
            model.register_forward_pre_hook(self.count, with_kwargs=True)
            self.started = time.perf_counter()

        def count(self, module, args, kwargs):
            if not module.training:
                return
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            mask = torch.ones_like(ids) if mask is None else mask
            self.tokens += int(mask.sum())
            self.widths.append(ids.shape[1])
            self.longest.append(int(mask.sum(dim=1).max()))
            if record_batches:
                self.batches.append([row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)])

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append((time.perf_counter(), self.tokens))

    return Clock()


def summarise(clock: Any) -> dict[str, Any]:
    """Steady-state numbers: the steps after the first, which pays for warm-up (allocations, oneDNN kernels)."""
    (t_first, tokens_first), (t_last, tokens_last) = clock.marks[0], clock.marks[-1]
    measured = len(clock.marks) - 1
    seconds = t_last - t_first
    steps = sorted(b[0] - a[0] for a, b in zip(clock.marks, clock.marks[1:], strict=False))
    return {
        "measured_steps": measured,
        "s_per_step": seconds / measured,
        "median_s_per_step": steps[len(steps) // 2],  # robust to a neighbour's burst on a shared machine
        "tokens_per_s": (tokens_last - tokens_first) / seconds,
        "first_step_s": t_first - clock.started,
        "widths": clock.widths,
        "longest": clock.longest,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # dataloader workers are processes of their own: their peak, for the workers arm
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


# ---------------------------------------------------------------- in the child: the three runners


def run_tracebank(arm: Arm, location: Any, release: str, out: Path) -> None:
    from tracebank.train.preference import PreferenceConfig, train_preference
    from tracebank.train.sft import SFTConfig, train_sft

    common = {"release": release, "output_dir": str(out), "max_steps": arm.steps, "batch_size": arm.batch_size,
              "max_length": arm.max_length, "seed": SEED, "learning_rate": LEARNING_RATE, "precision": arm.precision,
              "gradient_checkpointing": arm.gradient_checkpointing, "force": True}  # fmt: skip
    if arm.stage == "sft":
        train_sft(location, SFTConfig(**common))
    else:
        train_preference(location, PreferenceConfig(**common, method=arm.stage))


def run_trl(arm: Arm, examples: list[dict[str, Any]], out: Path) -> None:
    """What a plain TRL user writes: load the model, a Dataset of the rows, a config, a trainer, train, save."""
    import warnings

    import datasets
    import transformers
    import trl

    from tracebank import precision as precision_mod
    from tracebank.models import DEFAULT_MODEL, resolve_model

    precision = precision_mod.resolve(arm.precision)
    path = resolve_model(DEFAULT_MODEL)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    columns = ("prompt", "completion") if arm.stage == "sft" else ("prompt", "chosen", "rejected")
    dataset = datasets.Dataset.from_list([{k: e[k] for k in columns} for e in examples])
    args = {"output_dir": str(out), "max_steps": arm.steps, "per_device_train_batch_size": arm.batch_size,
            "max_length": arm.max_length, "seed": SEED, "learning_rate": LEARNING_RATE,
            "gradient_checkpointing": arm.gradient_checkpointing, "dataloader_num_workers": arm.workers,
            "report_to": "none", "disable_tqdm": True, **precision.trainer_flags(),
            # transformers refuses bf16 without a GPU unless told it is a CPU run
            "use_cpu": precision.device == "cpu"}  # fmt: skip
    if arm.stage == "sft":
        trainer = trl.SFTTrainer(model=model, args=trl.SFTConfig(**args), train_dataset=dataset,
                                 processing_class=tokenizer)  # fmt: skip
    elif arm.stage == "orpo":
        with warnings.catch_warnings():  # trl.experimental warns on import
            warnings.simplefilter("ignore")
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        trainer = ORPOTrainer(model=model, args=ORPOConfig(**args), train_dataset=dataset, processing_class=tokenizer)
    else:
        trainer = trl.DPOTrainer(model=model, args=trl.DPOConfig(**args), train_dataset=dataset,
                                 processing_class=tokenizer)  # fmt: skip
    trainer.train()
    trainer.save_model()


def tokenise(tokenizer: Any, example: dict[str, Any], max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) as TRL's SFT prepares a conversational prompt-completion row: loss on the completion."""
    prompt = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]  # fmt: skip
    full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True,
                                         return_dict=True)["input_ids"]  # fmt: skip
    shared = next(
        (i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b), min(len(prompt), len(full))
    )
    labels = [-100] * shared + full[shared:]
    return full[:max_length], labels[:max_length]  # TRL's truncation_mode keep_start


def batch_order(sequences: list[tuple[list[int], list[int]]], arm: Arm, recorded: Path) -> tuple[list, str]:
    """The example indices of each step: the plain TRL SFT arm's batches where its record matches ours."""
    index = {tuple(ids): i for i, (ids, _) in enumerate(sequences)}
    steps = json.loads(recorded.read_text()) if recorded.exists() else []
    order = [[index.get(tuple(row)) for row in batch] for batch in steps]
    if order and all(i is not None for batch in order for i in batch) and len(order) >= arm.steps:
        return order, "the plain TRL arm's batches, token for token"
    shuffled = list(range(len(sequences)))
    random.Random(SEED).shuffle(shuffled)
    batches = [shuffled[i : i + arm.batch_size] for i in range(0, len(shuffled), arm.batch_size)]
    why = "no TRL record" if not order else "our tokens differ from TRL's"
    return [batches[i % len(batches)] for i in range(arm.steps)], f"seeded batches ({why})"


def run_bare(arm: Arm, examples: list[dict[str, Any]], out: Path, recorded: Path) -> tuple[Any, str]:
    """Forward, backward, AdamW on the same token batches; the Clock is fed by hand."""
    import torch
    import transformers

    from tracebank import precision as precision_mod
    from tracebank.models import DEFAULT_MODEL, resolve_model

    bf16 = precision_mod.resolve(arm.precision).name == "bf16"
    path = resolve_model(DEFAULT_MODEL)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train()
    sequences = [s for s in (tokenise(tokenizer, e, arm.max_length) for e in examples) if set(s[1]) != {-100}]
    order, source = batch_order(sequences, arm, recorded)
    torch.manual_seed(SEED)
    # Trainer's default optimizer on torch >= 2.8 is fused AdamW, weight decay 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0, fused=True)
    clock = make_clock(record_batches=False)
    clock.started = time.perf_counter()
    for batch in order[: arm.steps]:
        rows = [sequences[i] for i in batch]
        width = arm.max_length if arm.pad_to == "max_length" else max(len(ids) for ids, _ in rows)
        ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
        mask = torch.tensor([[1] * len(ids_) + [0] * (width - len(ids_)) for ids_, _ in rows])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tokens += int(mask.sum())
        clock.widths.append(width)
        clock.longest.append(int(mask.sum(dim=1).max()))
        clock.marks.append((time.perf_counter(), clock.tokens))
    model.save_pretrained(str(out))
    return clock, source


def child(arm: Arm, work: Path, release: str) -> None:
    """Run one arm and write its numbers to ``work/arms/<name>.json``."""
    import transformers
    from transformers.utils import logging as hf_logging

    from tracebank import catalog
    from tracebank import precision as precision_mod
    from tracebank.curate.releases import ReleaseRef
    from tracebank.train.preference import load_pairs
    from tracebank.train.sft import load_split

    hf_logging.set_verbosity_error()
    location, ref, out = catalog.locate(work / "catalog"), ReleaseRef.parse(release), work / "out" / arm.name
    recorded = work / "batches-sft-trl.json"
    extra: dict[str, Any] = {"precision": precision_mod.resolve(arm.precision).name}
    if arm.runner == "bare":
        clock, extra["batches"] = run_bare(arm, load_split(location, ref, "train").examples, out, recorded)
    else:
        clock = make_clock(record_batches=arm.name == "sft trl")
        # Every trainer arm is instrumented the same way: a default callback, invisible to the script itself.
        transformers.trainer.DEFAULT_CALLBACKS.append(clock)
        if arm.runner == "tracebank":
            run_tracebank(arm, location, release, out)
        else:
            load = load_split if arm.stage == "sft" else load_pairs
            run_trl(arm, load(location, ref, "train").examples, out)
        if clock.batches:
            recorded.write_text(json.dumps(clock.batches))
    result = {**asdict(arm), **summarise(clock), **extra}
    (work / "arms").mkdir(exist_ok=True)
    (work / "arms" / f"{arm.name}.json").write_text(json.dumps(result))


# ---------------------------------------------------------------- the parent


def run_arm(arm: Arm, work: Path, release: str) -> dict[str, Any] | None:
    """One arm in a fresh process (so its peak RSS is its own); None, with the child's tail, when it failed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(arm)),
               "--work", str(work), "--release", release]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    # The trained weights (and TRL's checkpoints) are not what is measured: ~0.5-1 GB an arm, gone now.
    shutil.rmtree(work / "out" / arm.name, ignore_errors=True)
    path = work / "arms" / f"{arm.name}.json"
    if done.returncode or not path.exists():
        print(f"  {arm.name}: FAILED (exit {done.returncode})\n{(done.stdout + done.stderr)[-3000:]}")
        return None
    result = json.loads(path.read_text())
    print(f"  {arm.name:28} {result['precision']:>4} {result['s_per_step']:7.3f} s/step "
          f"{result['tokens_per_s']:8.1f} tokens/s  peak RSS {result['peak_rss_mb']:6.0f} MB", flush=True)  # fmt: skip
    return result


def plan(args: argparse.Namespace, native: str) -> list[Arm]:
    """Every arm, in run order: the plain TRL SFT arm first, since it records the batches the bare loop replays."""
    sft = Arm("sft trl", "trl", "sft", args.steps, args.batch_size, args.max_length, args.precision)
    other = "fp32" if native == "bf16" else "bf16"
    short = max(2, args.precision_steps)
    arms = [sft, replace(sft, name="sft tracebank", runner="tracebank"), replace(sft, name="sft bare", runner="bare"),
            replace(sft, name=f"sft bare {other}", runner="bare", precision=other, steps=short),
            replace(sft, name="sft tracebank +grad ckpt", runner="tracebank", gradient_checkpointing=True),
            replace(sft, name="sft trl workers=2", workers=2),
            replace(sft, name="sft bare pad=max_length", runner="bare", pad_to="max_length", steps=short)]  # fmt: skip
    if not args.skip_preference:
        pref = replace(sft, steps=args.pref_steps, batch_size=args.pref_batch_size)
        for stage in ("orpo", "dpo"):
            arms += [replace(pref, name=f"{stage} tracebank", runner="tracebank", stage=stage),
                     replace(pref, name=f"{stage} trl", runner="trl", stage=stage)]  # fmt: skip
    return arms


def ratio(results: dict[str, dict], arm: str, baseline: str) -> float | None:
    if arm not in results or baseline not in results:
        return None
    return results[arm]["tokens_per_s"] / results[baseline]["tokens_per_s"]


def report(results: dict[str, dict], args: argparse.Namespace) -> bool:
    """The arms table, the defaults, then the goals table last; True when every goal is met (always
    at smoke sizes, where the numbers are noise)."""
    print(f"\n{'arm':28} {'prec':>4} {'steps':>5} {'s/step':>8} {'median':>8} {'tokens/s':>9} {'1st step s':>10} "
          f"{'peak RSS MB':>11}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:28} {r['precision']:>4} {r['measured_steps']:>5} {r['s_per_step']:>8.3f} {r['median_s_per_step']:>8.3f} "
              f"{r['tokens_per_s']:>9.1f} {r['first_step_s']:>10.2f} {r['peak_rss_mb']:>11.0f}")  # fmt: skip
    print("\nratios (tokens/s):")
    for stage, base in (("sft", "trl"), ("sft", "bare"), ("orpo", "trl"), ("dpo", "trl")):
        value = ratio(results, f"{stage} tracebank", f"{stage} {base}")
        if value is not None:
            print(f"  {stage} tracebank / {stage} {base:4} {value:6.3f}x")
    if "sft bare" in results:
        print(f"  bare loop replayed {results['sft bare']['batches']}")
    defaults(results)
    goals = []
    for label, baseline, target in GOALS:
        value = ratio(results, "sft tracebank", baseline)
        shown = "missing" if value is None else f"{value:.3f}x"
        goals.append((f"{label} >= {target:.2f}x ({shown})", value is not None and value >= target))
    heading = f"{args.steps} steps, batch {args.batch_size}, max length {args.max_length}"
    return goals_table(goals, heading, args.smoke) == 0


def defaults(results: dict[str, dict]) -> None:
    """Each default that could fight CPU training, measured against the arm that runs without it."""
    print("\n== defaults")
    for label, arm, base in (("gradient checkpointing on vs off (tracebank SFT)", "sft tracebank +grad ckpt",
                              "sft tracebank"), ("dataloader_num_workers 2 vs 0 (plain TRL SFT)", "sft trl workers=2",
                              "sft trl"), ("pad to max_length vs batch's longest (bare loop)", "sft bare pad=max_length",
                              "sft bare")):  # fmt: skip
        if arm in results and base in results:
            a, b = results[arm], results[base]
            print(f"  {label}: {a['s_per_step']:.3f} vs {b['s_per_step']:.3f} s/step, "
                  f"{a['tokens_per_s']:.1f} vs {b['tokens_per_s']:.1f} tokens/s ({a['tokens_per_s'] / b['tokens_per_s']:.2f}x), "
                  f"peak RSS {a['peak_rss_mb']:.0f} vs {b['peak_rss_mb']:.0f} MB")  # fmt: skip
    for name in ("sft trl", "sft tracebank", "orpo trl", "dpo trl"):
        if name in results:
            r = results[name]
            widths, longest = r["widths"], r["longest"]
            padded = sum(w == lg for w, lg in zip(widths, longest, strict=True))
            print(f"  padding ({name}): {padded}/{len(widths)} forwards padded to the batch's longest; mean width "
                  f"{sum(widths) / len(widths):.0f} tokens vs max_length {r['max_length']}")  # fmt: skip
    other = next((n for n in results if n.startswith("sft bare ") and n.split()[-1] in ("fp32", "bf16")), None)
    if other and "sft bare" in results:
        a, b = results[other], results["sft bare"]
        print(f"  bare loop {a['precision']} vs {b['precision']}: {a['s_per_step']:.3f} vs {b['s_per_step']:.3f} s/step "
              f"({a['tokens_per_s'] / b['tokens_per_s']:.2f}x tokens/s; {a['measured_steps']} vs {b['measured_steps']} steps)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="SFT steps per arm; the first is warm-up, not timed")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16 (tracebank.precision)")
    parser.add_argument("--precision-steps", type=int, default=3, help="steps of the short bare-loop arms")
    parser.add_argument("--pref-steps", type=int, default=4)
    parser.add_argument("--pref-batch-size", type=int, default=2)
    parser.add_argument("--train-prompts", type=int, default=64, help="GSM8K train questions imported")
    parser.add_argument("--labeled-rows", type=int, default=100, help="labeled questions (4 solutions each)")
    parser.add_argument("--skip-preference", action="store_true", help="no ORPO or DPO arms")
    parser.add_argument("--smoke", action="store_true", help="smallest sizes, to check every arm runs")
    parser.add_argument("--dir", type=Path, help="work directory (default: a new temp dir, kept)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--release", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(Arm(**json.loads(args.child)), args.work, args.release)
        return 0
    if args.smoke:
        args.steps, args.batch_size, args.max_length, args.precision_steps = 2, 1, 128, 2
        args.pref_steps, args.pref_batch_size, args.train_prompts, args.labeled_rows = 2, 1, 4, 12
    from tracebank import precision as precision_mod

    chosen = precision_mod.resolve(args.precision)
    work = args.dir or Path(tempfile.mkdtemp(prefix="tracebank-throughput-"))
    started = time.perf_counter()
    print(f"uptime: {uptime()}\nwork dir: {work}\nprecision: {chosen.describe()}")
    _, release = prepare(work, args.train_prompts, args.labeled_rows)
    results = {}
    for arm in plan(args, chosen.name):
        result = run_arm(arm, work, release)
        if result is not None:
            results[arm.name] = result
    print(f"\ntotal {time.perf_counter() - started:.0f} s; uptime after: {uptime()}")
    return 0 if report(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
