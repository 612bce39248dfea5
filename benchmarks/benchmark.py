"""Benchmark: the reference recipe against this pipeline's finetune, same model and split.

    python benchmarks/benchmark.py                 # both recipes, plus the GPT-2 step time
    python benchmarks/benchmark.py --only gpt2     # one part: reference | pipeline | gpt2
    python benchmarks/benchmark.py --epochs 1      # both recipes for 1 epoch (throughput only)
    python benchmarks/benchmark.py --only startup  # each stage's start-up beside torch+transformers+peft
    python benchmarks/benchmark.py --only profile  # where a training step's time goes (torch.profiler)
    python benchmarks/benchmark.py --only precision  # fp32 against bf16 autocast, step by step
    python benchmarks/benchmark.py --only grouping   # a question_1 embedded once per batch, or per pair

Run from the repository root after `dvc repro prepare`. Each recipe trains in its own process
(so peak RSS is its own), saves its adapter to a scratch folder, and is scored on the test
split by the same code as the evaluate stage. Results are printed and appended, with the date
and machine, to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The reference recipe (GPT-2 LoRA notebook) on our model: a cross-encoder, every pair padded to
# 128 tokens, batch 8, lr 2e-5, 3 epochs, fp32, LoRA and model dropout 0.1, each pair in its one order.
RECIPES = {
    "reference": {"train": {"learning_rate": 2e-5, "batch_size": 8, "epochs": 3, "precision": "fp32",
                            "warmup_ratio": 0.0, "swap_questions": False},
                  "model": {"max_length": 128, "dropout": None, "architecture": "cross-encoder"},
                  "lora": {"dropout": 0.1},
                  "eval": {"average_orders": False}, "pad_to_max_length": True},
    "pipeline": {"pad_to_max_length": False},  # params.yaml as it is
}


def run_recipe(name: str, epochs: int | None = None) -> dict:
    """Train and score one recipe in this process; returns its measurements."""
    from mqp.cli import quiet_libraries
    from mqp.inference import score_splits
    from mqp.lora import load_trained, save_trained, with_lora
    from mqp.metrics import classification_metrics
    from mqp.models import base_model, load_tokenizer
    from mqp.params import load_params
    from mqp.paths import TMP_DIR
    from mqp.splits import load_splits
    from mqp.training import (collator_for, fit, fix_mmap_threshold, make_trainer, training_arguments,
                              training_sets, training_summary)

    quiet_libraries()
    fix_mmap_threshold()
    recipe = RECIPES[name]
    params = load_params()
    updates = {group: params.__getattribute__(group).model_copy(update=values)
               for group, values in recipe.items() if group in ("train", "model", "lora", "eval")}
    params = params.model_copy(update=updates)
    if epochs is not None:  # a shorter run for a quick throughput comparison
        params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": epochs})})
    started = time.perf_counter()
    splits = load_splits()
    TMP_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TMP_DIR) as scratch:
        tokenizer = load_tokenizer(params.model)
        model = with_lora(base_model(params, tokenizer), params)
        datasets = training_sets(params, tokenizer, splits)
        args = training_arguments(params, Path(scratch) / "checkpoints", report_to=[])
        collator = collator_for(params, tokenizer)
        if recipe["pad_to_max_length"]:  # the reference: random batches, every pair padded to max_length
            args.train_sampling_strategy = "random"
            collator = collator_for(params, tokenizer, padding="max_length", max_length=params.model.max_length)
        trainer = make_trainer(model, params, tokenizer, datasets, args, collator, callbacks=[])
        result = fit(trainer, params.train.epochs, Path(scratch) / "checkpoints")
        summary = training_summary(trainer, result, datasets[0], params, time.perf_counter() - started)
        adapter = Path(scratch) / "adapter"
        adapter.mkdir()
        save_trained(trainer.model, adapter)
        model = load_trained(params, tokenizer, adapter)
        probs = score_splits(model, tokenizer, splits, params, names=("test",))["test"]
    metrics = classification_metrics(splits["test"]["label"], probs, params.eval.threshold)
    return {
        "recipe": name,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "train_seconds": summary["train_seconds"],
        "samples_per_second": summary["train_samples_per_second"],
        "tokens_per_second": summary["train_tokens_per_second"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "test_accuracy": metrics["accuracy"],
        "test_f1": metrics["f1"],
        "params": {"architecture": params.model.architecture, "learning_rate": params.train.learning_rate, "batch_size": params.train.batch_size,
                   "epochs": params.train.epochs, "lora_r": params.lora.r,
                   "padding": "max_length" if recipe["pad_to_max_length"] else "length-grouped dynamic"},
    }


def gpt2_step_time(steps: int = 5, batch: int = 16) -> dict:
    """Median time of one LoRA training step on GPT-2 124M (random init, real tokenizer)."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2Tokenizer

    from mqp.cli import quiet_libraries
    from mqp.inference import encode_pairs
    from mqp.lora import add_lora
    from mqp.params import LoraParams
    from mqp.splits import load_split

    quiet_libraries()
    shared = Path(os.environ.get("MQP_SHARED", REPO.parent / "shared")) / "gpt2-tokenizer"
    vocab = json.loads((shared / "encoder.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in (shared / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:] if line]
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    model = add_lora(GPT2ForSequenceClassification(GPT2Config(num_labels=2, pad_token_id=tokenizer.eos_token_id)),
                     LoraParams(r=8, alpha=32, dropout=0.1, target_modules="auto"))
    trainable, total = model.get_nb_trainable_parameters()
    train = load_split("train").iloc[:batch]
    encoded = encode_pairs(tokenizer, train["question_1"], train["question_2"], 128)
    inputs = tokenizer.pad(encoded, return_tensors="pt")
    inputs["labels"] = torch.tensor(train["label"].to_numpy())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    step = statistics.median(times[1:])
    steps_per_epoch = -(-2438 // batch)
    return {
        "recipe": "gpt2-124M step",
        "trainable_params": trainable,
        "total_params": total,
        "batch": batch,
        "tokens_per_pair": round(inputs["attention_mask"].sum().item() / batch, 1),
        "step_seconds": round(step, 3),
        "samples_per_second": round(batch / step, 1),
        "projected_3_epochs_minutes": round(3 * steps_per_epoch * step / 60, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


STAGES = ("prepare", "baseline", "zeroshot", "finetune", "evaluate")
REFERENCE_IMPORT = "import torch, transformers, peft"


def startup_times(repeats: int = 5) -> dict:
    """Median seconds for a fresh interpreter to import each stage, beside one that imports
    torch, transformers and peft only. Interleaved, so a busy machine slows them all alike."""
    commands = {"torch+transformers+peft": REFERENCE_IMPORT, **{name: f"import stages.{name}" for name in STAGES}}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, code in commands.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
            times[name].append(time.perf_counter() - start)
    return {"recipe": "startup", "repeats": repeats,
            "seconds": {name: round(statistics.median(values), 2) for name, values in times.items()}}


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def synchronize(device) -> None:
    """Wait for queued GPU work, so that wall-clock times are the work's."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device, rows: int, inner: int, cols: int, repeats: int = 50) -> float:
    """fp32 GFLOP/s of (rows x inner) @ (inner x cols) on this device, now: the ceiling that the
    training step's own matmuls are compared with."""
    import torch

    a, b = torch.randn(rows, inner, device=device), torch.randn(inner, cols, device=device)
    a @ b  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * rows * inner * cols * repeats / (time.perf_counter() - start) / 1e9


class TrainingSteps:
    """Pipeline training steps outside the Trainer: params.yaml's model with LoRA on this
    machine's device, its optimizer, and `steps` + 1 batches of real train pairs (one to warm up)."""

    def __init__(self, steps: int, grouped: bool = False):
        """grouped: whole question_1 groups in finetune's order (QuestionGroupedSampler), not a
        random sample of pairs."""
        import torch

        from mqp.cli import quiet_libraries
        from mqp.lora import with_lora
        from mqp.models import base_model, device, load_tokenizer
        from mqp.params import load_params
        from mqp.splits import load_split
        from mqp.training import QuestionGroupedSampler, collator_for, optimizer_for, training_sets

        quiet_libraries()
        self.params = params = load_params()
        self.device = device()
        size = params.train.batch_size
        tokenizer = load_tokenizer(params.model)
        self.model = with_lora(base_model(params, tokenizer), params).to(self.device).train()
        train = load_split("train")
        if grouped:
            questions = train["question_1"].drop_duplicates().sample(n=size // 2 * (steps + 1), random_state=0)
            train = train[train["question_1"].isin(questions)]
        else:
            train = train.sample(n=size * (steps + 1), random_state=0)
        dataset, _ = training_sets(params, tokenizer, {"train": train, "validation": train.iloc[:2]})
        self.collator = collator_for(params, tokenizer)
        order = (QuestionGroupedSampler(list(dataset["group"]), list(dataset["length"]), size, torch.Generator().manual_seed(0))
                 if grouped else range(len(dataset)))
        self.features = [dataset[i] for i in order]
        self.batches = [self.features[i : i + size] for i in range(0, len(self.features), size)]
        self.optimizer = optimizer_for(self.model, params) or torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=params.train.learning_rate)

    def run(self, features, autocast=None) -> float:
        """One step (collate, forward, backward, optimizer), autocast to a dtype if given;
        returns the seconds spent collating."""
        import torch

        started = time.perf_counter()
        batch = {key: value.to(self.device, non_blocking=True) for key, value in self.collator(features).items()}
        collated = time.perf_counter() - started
        with torch.autocast(self.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        synchronize(self.device)
        return collated


def precision_steps(steps: int = 6) -> dict:
    """Median seconds per training step in fp32 and under bf16 autocast, alternating step by step
    on the same batches (what train.precision: auto is chosen from)."""
    import torch

    runner = TrainingSteps(steps)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for features in runner.batches:
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            started = time.perf_counter()
            runner.run(features, dtype)
            times[name].append(time.perf_counter() - started)
    fp32, bf16 = (statistics.median(values[1:]) for values in times.values())  # the first warms up
    return {"recipe": "precision", "device": runner.device.type, "steps": steps, "fp32_step_seconds": round(fp32, 3),
            "bf16_step_seconds": round(bf16, 3), "bf16_over_fp32": round(bf16 / fp32, 2)}


def grouping_steps(steps: int = 8) -> dict:
    """The bi-encoder's batches of whole question_1 groups: median seconds per training step with
    each question_1 embedded once (finetune) against once per pair, alternating step by step on
    the same batches; and the texts each way runs through the encoder."""
    runner = TrainingSteps(steps, grouped=True)
    model = runner.model
    if not hasattr(model, "embed_each_once"):
        return {"recipe": "grouping", "skipped": "model.architecture is not bi-encoder"}
    times: dict[str, list[float]] = {"once": [], "per_pair": []}
    for features in runner.batches:
        for name in times:
            if name == "per_pair":
                model.embed_each_once = model.embed  # every row through the encoder
            started = time.perf_counter()
            runner.run(features)
            times[name].append(time.perf_counter() - started)
            if name == "per_pair":
                del model.embed_each_once
    once, per_pair = (statistics.median(values[1:]) for values in times.values())  # the first warms up
    texts = {"once": sum(len({tuple(f["input_ids_1"]) for f in b}) + len(b) for b in runner.batches[1:]),
             "per_pair": sum(2 * len(b) for b in runner.batches[1:])}
    return {"recipe": "grouping", "device": runner.device.type, "steps": steps, "once_step_seconds": round(once, 3),
            "per_pair_step_seconds": round(per_pair, 3), "once_over_per_pair": round(once / per_pair, 2),
            "texts_once": texts["once"], "texts_per_pair": texts["per_pair"]}


def profile_steps(steps: int = 8) -> dict:
    """Profile pipeline training steps (params.yaml's model and batch, real train pairs): the
    share of CPU (or GPU) time in matmuls, the step's arithmetic rate against a bare matmul of
    the layers' shapes, and the Python collator's share."""
    from torch.profiler import ProfilerActivity, profile

    runner = TrainingSteps(steps)
    on, params, model, batches, features = runner.device, runner.params, runner.model, runner.batches, runner.features
    step = runner.run
    step(batches[0])  # warm-up
    started = time.perf_counter()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on.type == "cuda" else [])
    with profile(activities=activities, with_flops=True) as profiler:
        collate_seconds = sum(step(features) for features in batches[1:])
    seconds = time.perf_counter() - started
    events = profiler.key_averages()
    # On a GPU the shares are of GPU time (what the kernels took); the step's wall time shows the rest.
    busy = "self_device_time_total" if on.type == "cuda" else "self_cpu_time_total"
    total_us = sum(getattr(e, busy) for e in events)
    matmul_us = sum(getattr(e, busy) for e in events if e.key in MATMUL_OPS)
    flops = sum(e.flops for e in events)
    tokens = int(np.mean([sum(len(f[k]) for k in f if k.startswith("input_ids")) for f in features]))
    hidden = model.config.hidden_size if hasattr(model, "config") else model.encoder.config.hidden_size
    ceiling = matmul_gflops(on, params.train.batch_size * tokens, hidden, 4 * hidden)
    top = sorted(events, key=lambda e: -getattr(e, busy))[:6]
    return {
        "recipe": "profile",
        "architecture": params.model.architecture,
        "device": on.type,
        "steps": steps,
        "step_seconds": round(seconds / steps, 3),
        "matmul_share": round(matmul_us / total_us, 3),
        "collate_share": round(collate_seconds / seconds, 3),
        "step_gflops": round(flops / seconds / 1e9, 1),
        "matmul_ceiling_gflops": round(ceiling, 1),
        "top_ops": {e.key: round(getattr(e, busy) / total_us, 3) for e in top},
        "tokens_per_pair": tokens,
    }


def in_subprocess(part: str, epochs: int | None) -> dict:
    extra = ["--epochs", str(epochs)] if epochs is not None else []
    result = subprocess.run([sys.executable, __file__, "--child", part, *extra], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"benchmark: {part} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def report(results: list[dict]) -> str:
    lines = [f"## {dt.date.today().isoformat()}: {machine()}", "", f"`{' '.join(sys.argv)}`"]
    recipes = [r for r in results if "test_accuracy" in r]
    if recipes:
        lines += ["", "| recipe | train s | samples/s | tokens/s | peak RSS MB | test acc | test F1 | wall s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in recipes:
        p = r["params"]
        lines.append(f"| {r['recipe']} ({p['architecture']}, {p['padding']}, bs {p['batch_size']}, "
                     f"lr {p['learning_rate']:g}, {p['epochs']} ep) | {r['train_seconds']} | "
                     f"{r['samples_per_second']} | {r['tokens_per_second']} | {r['peak_rss_mb']} | "
                     f"{r['test_accuracy']:.4f} | {r['test_f1']:.4f} | {r['wall_seconds']} |")
    by_name = {r["recipe"]: r for r in results}
    if {"reference", "pipeline"} <= set(by_name):
        ratio = by_name["pipeline"]["samples_per_second"] / by_name["reference"]["samples_per_second"]
        lines += ["", f"Throughput ratio pipeline / reference: {ratio:.2f}x samples/s"]
    startup = by_name.get("startup")
    if startup:
        seconds = startup["seconds"]
        lines += ["", f"Start-up (fresh interpreter + imports, median of {startup['repeats']}, interleaved): "
                  + ", ".join(f"{name} {value} s" for name, value in seconds.items())]
    profiled = by_name.get("profile")
    if profiled:
        lines += ["", f"Training step profile ({profiled['architecture']} on {profiled['device']}, {profiled['steps']} steps, "
                  f"{profiled['tokens_per_pair']} tokens per pair): {profiled['step_seconds']} s per step; "
                  f"matmuls {profiled['matmul_share']:.0%} of {profiled['device']} time, the collator {profiled['collate_share']:.0%}; "
                  f"{profiled['step_gflops']} GFLOP/s against {profiled['matmul_ceiling_gflops']} GFLOP/s for a bare "
                  f"matmul of the feed-forward shape; top ops: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in profiled["top_ops"].items())]
    precision = by_name.get("precision")
    if precision:
        lines += ["", f"Precision ({precision['device']}, median of {precision['steps']} alternating training steps): "
                  f"fp32 {precision['fp32_step_seconds']} s per step, bf16 autocast {precision['bf16_step_seconds']} s "
                  f"({precision['bf16_over_fp32']}x fp32's time)"]
    grouping = by_name.get("grouping")
    if grouping and "skipped" not in grouping:
        lines += ["", f"Question_1 groups ({grouping['device']}, median of {grouping['steps']} alternating bi-encoder "
                  f"training steps on the same batches): each question_1 embedded once {grouping['once_step_seconds']} s "
                  f"per step, once per pair {grouping['per_pair_step_seconds']} s ({grouping['once_over_per_pair']}x the "
                  f"time; {grouping['texts_once']} against {grouping['texts_per_pair']} texts encoded)"]
    gpt2 = by_name.get("gpt2-124M step")
    if gpt2:
        lines += ["", f"GPT-2 124M, LoRA c_attn+c_proj r=8 ({gpt2['trainable_params']:,} of {gpt2['total_params']:,} "
                  f"trainable): {gpt2['step_seconds']} s per step of {gpt2['batch']} pairs x {gpt2['tokens_per_pair']} "
                  f"tokens ({gpt2['samples_per_second']} pairs/s), so 3 epochs of MQP take about "
                  f"{gpt2['projected_3_epochs_minutes']} min; peak RSS {gpt2['peak_rss_mb']} MB"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["reference", "pipeline", "gpt2", "startup", "profile", "precision", "grouping"], action="append")
    parser.add_argument("--epochs", type=int, help="override both recipes' epochs (default: theirs, 3)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(REPO)
    if args.child:
        parts = {"gpt2": gpt2_step_time, "startup": startup_times, "profile": profile_steps,
                 "precision": precision_steps, "grouping": grouping_steps}
        result = parts[args.child]() if args.child in parts else run_recipe(args.child, args.epochs)
        print(json.dumps(result))
        return
    from mqp.paths import PREPARED_DIR, split_csv

    if not split_csv("train").exists():
        sys.exit(f"benchmark: {PREPARED_DIR} not found: run `dvc repro prepare` first")
    results = []
    for part in args.only or ["reference", "pipeline", "gpt2"]:
        print(f"benchmark: running {part} ...", flush=True)
        results.append(in_subprocess(part, args.epochs))
        print(json.dumps(results[-1]), flush=True)
    text = report(results)
    print(text)
    with open(REPO / "benchmarks" / "results.md", "a", encoding="utf-8") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
