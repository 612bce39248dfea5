"""finetune: train a LoRA adapter (PEFT), or every weight (train.method full), with the Hugging Face
Trainer; keep the best epoch."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from mqp.architectures import base_model, bi_encoder
from mqp.card import CARD_FILE, adapter_card
from mqp.cli import stage
from mqp.files import atomic_dir, write_json
from mqp.inference import score_pairs
from mqp.lora import adapted_layers, for_training, save_trained
from mqp.metrics import classification_metrics
from mqp.models import device, load_tokenizer
from mqp.paths import ADAPTER_DIR, DVCLIVE_DIR, DVCLIVE_PLOTS, TMP_DIR, TRAIN_REPORT, checkpoints_dir
from mqp.splits import load_splits
from mqp.tracking import training_callbacks
from mqp.train_records import TrainSummary, remove_stale_checkpoints, soup_summary, training_summary
from mqp.training import collator_for, fit, fix_mmap_threshold, make_trainer, training_arguments, training_sets


def summary_line(summary: TrainSummary, device: str) -> str:
    if summary.epochs == 0:
        return f"finetune: epochs=0, saved the untrained adapter (the base model with its initial head) to {ADAPTER_DIR}"
    return (
        f"finetune: {summary.trainable_params:,} trainable params of {summary.total_params:,} "
        f"({summary.trainable_percent}%); best {summary.kept_epochs()}, "
        f"validation F1 {summary.validation['f1']:.4f}; {summary.train_samples_per_second} samples/s, "
        f"{summary.wall_seconds} s ({device})"
    )


def member_params(params, member: int):
    """The params of a soup's member: train.seed + member, the rest alike."""
    return params.model_copy(update={"train": params.train.model_copy(update={"seed": params.train.seed + member})})


def train_one(params, tokenizer, datasets, resume_log: bool = False):
    """One model trained with the Trainer, its best epoch loaded: (trainer, the Trainer's result)."""
    model = for_training(base_model(params, tokenizer), params)
    callbacks, report_to, finish_tracking = training_callbacks(params, DVCLIVE_DIR, resume=resume_log)
    # One folder for all processes of a torchrun launch (they share its run id).
    checkpoints = checkpoints_dir(os.environ.get("TORCHELASTIC_RUN_ID") or str(os.getpid()))
    trainer = make_trainer(model, params, tokenizer, datasets, training_arguments(params, checkpoints, report_to),
                           collator_for(params, tokenizer), callbacks)
    try:
        result = fit(trainer, params.train.epochs, checkpoints)
    finally:
        finish_tracking()
        Path(DVCLIVE_PLOTS).mkdir(parents=True, exist_ok=True)  # a DVC output, even at 0 epochs
    return trainer, result


def train_single(params, tokenizer, datasets, started: float):
    """(model, train.json's summary); (None, None) in a torchrun launch's other processes."""
    trainer, result = train_one(params, tokenizer, datasets)
    if not trainer.is_world_process_zero():
        return None, None
    return trainer.model, training_summary(trainer, result, datasets[0], params, time.perf_counter() - started)


def train_soup(params, tokenizer, datasets, splits, started: float):
    """train.members models, one after another (their curves follow each other in dvclive/), then
    their soup (bi_encoder.soup: params allow train.members for the bi-encoder only) and its
    validation metrics: (model, train.json's summary), as train_single."""
    members, folders = [], []
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TMP_DIR) as scratch:
        for member in range(params.train.members):
            trainer, result = train_one(member_params(params, member), tokenizer, datasets, resume_log=member > 0)
            members.append(training_summary(trainer, result, datasets[0], params, 0.0))
            folders.append(Path(scratch) / f"member_{member}")
            if trainer.is_world_process_zero():
                save_trained(trainer.model, params, folders[-1])
        if not trainer.is_world_process_zero():
            return None, None
        model = bi_encoder.soup(base_model(params, tokenizer), folders)
    validation = splits["validation"]
    probs = score_pairs(model, tokenizer, validation["question_1"], validation["question_2"], params)
    metrics = classification_metrics(validation["label"], probs, params.eval.threshold)
    return model, soup_summary(members, metrics, params, time.perf_counter() - started)


@stage("finetune")
def main(params) -> None:
    started = time.perf_counter()
    fix_mmap_threshold()
    splits = load_splits()
    tokenizer = load_tokenizer(params.model)
    datasets = training_sets(params, tokenizer, splits)
    for folder in remove_stale_checkpoints():
        print(f"finetune: removed {folder}, left behind by a run that was killed")
    if params.train.members > 1:
        model, summary = train_soup(params, tokenizer, datasets, splits, started)
    else:
        model, summary = train_single(params, tokenizer, datasets, started)
    if model is None:
        return  # under torchrun, one process writes the outputs
    with atomic_dir(ADAPTER_DIR) as scratch:
        save_trained(model, params, scratch)
        # Replaces PEFT's bare template with this run's card (train and validation only).
        sizes = {name: len(splits[name]) for name in ("train", "validation")}
        (scratch / CARD_FILE).write_text(adapter_card(params, summary, sizes, ADAPTER_DIR, adapted_layers(model)),
                                         encoding="utf-8")
    write_json(TRAIN_REPORT, summary.to_json())
    print(summary_line(summary, device().type))


if __name__ == "__main__":
    main()
