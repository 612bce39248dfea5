"""The reference recipe against this pipeline's finetune, same model and split: each trained in
its own process (peak RSS is its own), saved to a scratch folder, and scored on the test split by
the same code as the evaluate stage.

    python -m benchmarks.recipes --recipe pipeline [--epochs 1]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.common import run_cli

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


def run_recipe(recipe: str, epochs: int | None = None) -> dict:
    """Train and score one recipe in this process; returns its measurements."""
    from mqp.architectures import base_model
    from mqp.cli import quiet_libraries
    from mqp.inference import score_splits
    from mqp.lora import load_trained, save_trained, with_lora
    from mqp.metrics import classification_metrics
    from mqp.models import load_tokenizer
    from mqp.params import load_params
    from mqp.paths import TMP_DIR
    from mqp.splits import load_splits
    from mqp.train_records import training_summary
    from mqp.training import collator_for, fit, fix_mmap_threshold, make_trainer, training_arguments, training_sets

    quiet_libraries()
    fix_mmap_threshold()
    name, recipe = recipe, RECIPES[recipe]
    params = load_params()
    updates = {group: getattr(params, group).model_copy(update=values)
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
        save_trained(trainer.model, params, adapter)
        model = load_trained(params, tokenizer, adapter)
        probs = score_splits(model, tokenizer, splits, params, names=("test",))["test"]
    metrics = classification_metrics(splits["test"]["label"], probs, params.eval.threshold)
    return {
        "benchmark": name,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "train_seconds": summary.train_seconds,
        "samples_per_second": summary.train_samples_per_second,
        "tokens_per_second": summary.train_tokens_per_second,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "test_accuracy": metrics["accuracy"],
        "test_f1": metrics["f1"],
        "params": {"architecture": params.model.architecture, "learning_rate": params.train.learning_rate,
                   "batch_size": params.train.batch_size, "epochs": params.train.epochs, "lora_r": params.lora.r,
                   "padding": "max_length" if recipe["pad_to_max_length"] else "length-grouped dynamic"},
    }


def report(result: dict) -> list[str]:
    return table([result])


def table(results: list[dict]) -> list[str]:
    lines = ["| recipe | train s | samples/s | tokens/s | peak RSS MB | test acc | test F1 | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        p = r["params"]
        lines.append(f"| {r['benchmark']} ({p['architecture']}, {p['padding']}, bs {p['batch_size']}, "
                     f"lr {p['learning_rate']:g}, {p['epochs']} ep) | {r['train_seconds']} | "
                     f"{r['samples_per_second']} | {r['tokens_per_second']} | {r['peak_rss_mb']} | "
                     f"{r['test_accuracy']:.4f} | {r['test_f1']:.4f} | {r['wall_seconds']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (default: its own, 3)")
    run_cli(parser, run_recipe, report)


if __name__ == "__main__":
    main()
