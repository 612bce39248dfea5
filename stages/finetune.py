"""finetune: train a LoRA adapter (PEFT), or every weight (train.method full), with the Hugging Face
Trainer; keep the best epoch."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mqp.card import CARD_FILE, adapter_card
from mqp.cli import stage
from mqp.files import atomic_dir, write_json
from mqp.lora import adapted_layers, for_training, save_trained
from mqp.models import base_model, load_tokenizer
from mqp.paths import ADAPTER_DIR, DVCLIVE_DIR, DVCLIVE_PLOTS, TRAIN_REPORT, checkpoints_dir
from mqp.splits import load_splits
from mqp.tracking import training_callbacks
from mqp.training import (collator_for, fit, fix_mmap_threshold, make_trainer, remove_stale_checkpoints, training_arguments,
                          training_sets, training_summary)


def summary_line(summary: dict, device: str) -> str:
    if summary["epochs"] == 0:
        return f"finetune: epochs=0, saved the untrained adapter (the base model with its initial head) to {ADAPTER_DIR}"
    return (
        f"finetune: {summary['trainable_params']:,} trainable params of {summary['total_params']:,} "
        f"({summary['trainable_percent']}%); best epoch {summary['best_epoch']} of {summary['epochs']}, "
        f"validation F1 {summary['validation']['f1']:.4f}; {summary['train_samples_per_second']} samples/s, "
        f"{summary['wall_seconds']} s ({device})"
    )


@stage("finetune")
def main(params) -> None:
    started = time.perf_counter()
    fix_mmap_threshold()
    splits = load_splits()
    tokenizer = load_tokenizer(params.model)
    model = for_training(base_model(params, tokenizer), params)
    datasets = training_sets(params, tokenizer, splits)
    callbacks, report_to, finish_tracking = training_callbacks(params, DVCLIVE_DIR)
    for folder in remove_stale_checkpoints():
        print(f"finetune: removed {folder}, left behind by a run that was killed")
    # One folder for all processes of a torchrun launch (they share its run id).
    checkpoints = checkpoints_dir(os.environ.get("TORCHELASTIC_RUN_ID") or str(os.getpid()))
    trainer = make_trainer(model, params, tokenizer, datasets, training_arguments(params, checkpoints, report_to),
                           collator_for(params, tokenizer), callbacks)
    try:
        result = fit(trainer, params.train.epochs, checkpoints)
    finally:
        finish_tracking()
        Path(DVCLIVE_PLOTS).mkdir(parents=True, exist_ok=True)  # a DVC output, even at 0 epochs
    if not trainer.is_world_process_zero():
        return  # under torchrun, one process writes the outputs
    summary = training_summary(trainer, result, datasets[0], params, time.perf_counter() - started)
    with atomic_dir(ADAPTER_DIR) as scratch:
        save_trained(trainer.model, scratch)
        # Replaces PEFT's bare template with this run's card (train and validation only).
        sizes = {name: len(splits[name]) for name in ("train", "validation")}
        (scratch / CARD_FILE).write_text(adapter_card(params, summary, sizes, ADAPTER_DIR,
                                                        adapted_layers(trainer.model)), encoding="utf-8")
    write_json(TRAIN_REPORT, summary)
    print(summary_line(summary, str(trainer.args.device.type)))


if __name__ == "__main__":
    main()
