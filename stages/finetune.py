"""finetune: train a LoRA adapter (PEFT) with the Hugging Face Trainer; keep the best epoch."""

from __future__ import annotations

import ctypes
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from stages.data import load_split
from stages.errors import cli
from stages.io import atomic_dir, write_json
from stages.metrics import classification_metrics
from stages.modeling import add_lora, encode_pairs, load_classifier, load_tokenizer, quiet_libraries
from stages.params import Params, load_params
from stages.paths import ADAPTER_DIR, DVCLIVE_DIR, TMP_DIR, TRAIN_METRICS
from stages.tracking import training_callbacks

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
M_MMAP_THRESHOLD = -3  # glibc's mallopt option


def fix_mmap_threshold(size: int = 2 << 20) -> None:
    """Keep peak RSS down on glibc. It raises its mmap threshold each time a large block is freed,
    so activations of ever-changing batch shapes end up in a heap that never shrinks; a fixed 2 MB
    threshold gives them back to the OS (finetune's peak RSS, benchmarks/results.md)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, size)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def tokenized(split: str, tokenizer, max_length: int, swapped: bool = False) -> Dataset:
    """A split tokenised once, with a `length` column for length-grouped batches; with swapped,
    also each pair in the other question order (`swapped_*` columns)."""
    table = load_split(split)
    encoded = encode_pairs(tokenizer, table["question_1"], table["question_2"], max_length)
    columns = {**encoded, "labels": table["label"].tolist()}
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    if swapped:
        other = encode_pairs(tokenizer, table["question_2"], table["question_1"], max_length)
        columns.update({f"swapped_{key}": values for key, values in other.items()})
    return Dataset.from_dict(columns)


class PairCollator(DataCollatorWithPadding):
    """Pads a batch of model inputs; where a pair comes in both orders, a seeded coin picks one.

    Question similarity is symmetric, so the swapped pair is a free second example: the model
    learns no preference for which question comes first.
    """

    def __init__(self, tokenizer, seed: int, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.rng = np.random.default_rng(seed)

    def __call__(self, features: list[dict]) -> dict:
        batch = []
        for feature in features:
            swap = "swapped_input_ids" in feature and self.rng.random() < 0.5
            prefix = "swapped_" if swap else ""
            inputs = {key: feature[prefix + key] for key in MODEL_INPUTS if prefix + key in feature}
            batch.append({**inputs, "labels": feature["labels"]})
        return super().__call__(batch)


def training_arguments(params: Params, output_dir: str, report_to: list[str]) -> TrainingArguments:
    train = params.train
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=params.eval.batch_size,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        bf16=train.precision == "bf16",
        seed=train.seed,
        data_seed=train.seed,
        # Batches of similar length: little padding, same shuffling from the seed.
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=10,
        report_to=report_to,
        disable_tqdm=False,
        dataloader_num_workers=0,
        # PairCollator picks the model inputs itself (it needs the swapped_* columns).
        remove_unused_columns=False,
        # torchrun on CPUs: accelerate picks the gloo backend only when told it runs on CPU.
        use_cpu=int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available(),
    )


def compute_metrics(threshold: float):
    def compute(prediction) -> dict:
        logits = torch.as_tensor(prediction.predictions).float()
        probs = torch.softmax(logits, dim=-1)[:, 1].numpy()
        metrics = classification_metrics(prediction.label_ids, probs, threshold)
        # The Trainer reports the same cross-entropy as eval_loss.
        return {key: value for key, value in metrics.items() if key not in ("loss", "n")}

    return compute


def train(params: Params, adapter_dir=ADAPTER_DIR, pad_to_max_length: bool = False,
          log_dir=DVCLIVE_DIR) -> dict | None:
    """Train LoRA, save the best epoch's adapter and head to adapter_dir, return the summary.

    pad_to_max_length pads every pair to model.max_length in random batches, as the reference
    recipe did (the benchmark compares it); the default pads each length-grouped batch.
    """
    started = time.perf_counter()
    fix_mmap_threshold()
    tokenizer = load_tokenizer(params.model)
    model = add_lora(load_classifier(params.model, tokenizer, params.train.seed), params.lora)
    # Record the model id, not this machine's path to it.
    model.peft_config["default"].base_model_name_or_path = params.model.name
    trainable, total = model.get_nb_trainable_parameters()

    train_set = tokenized("train", tokenizer, params.model.max_length, swapped=params.train.swap_questions)
    # Length-sorted, so the per-epoch evaluation pads little.
    validation_set = tokenized("validation", tokenizer, params.model.max_length).sort("length")
    callbacks, report_to, finish_tracking = training_callbacks(params, log_dir)
    # One folder for all processes of a torchrun launch (they share its run id).
    checkpoints = TMP_DIR / f"checkpoints-{os.environ.get('TORCHELASTIC_RUN_ID') or os.getpid()}"
    args = training_arguments(params, str(checkpoints), report_to)
    collator = PairCollator(tokenizer, params.train.seed)
    if pad_to_max_length:
        args.train_sampling_strategy = "random"
        collator = PairCollator(tokenizer, params.train.seed, padding="max_length", max_length=params.model.max_length)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics(params.eval.threshold),
        callbacks=callbacks,
    )
    try:
        result = trainer.train() if params.train.epochs > 0 else None
        trainer.accelerator.wait_for_everyone()  # all processes have loaded the best epoch
    finally:
        finish_tracking()
        if trainer.is_world_process_zero():
            shutil.rmtree(checkpoints, ignore_errors=True)
        (Path(log_dir) / "plots").mkdir(parents=True, exist_ok=True)  # a DVC output, even at 0 epochs

    if not trainer.is_world_process_zero():
        return None  # under torchrun, one process writes the outputs
    with atomic_dir(adapter_dir) as scratch:
        trainer.model.save_pretrained(scratch)

    # load_best_model_at_end restored the epoch with the best validation F1.
    history = [log for log in trainer.state.log_history if "eval_f1" in log]
    best = max(history, key=lambda log: log["eval_f1"]) if history else {}
    train_tokens = sum(train_set["length"]) * params.train.epochs
    seconds = result.metrics["train_runtime"] if result else 0.0
    return {
        "trainable_params": int(trainable),
        "total_params": int(total),
        "trainable_percent": round(100 * trainable / total, 4),
        "epochs": params.train.epochs,
        "best_epoch": int(best.get("epoch", 0)),
        "train_loss": round(result.training_loss, 6) if result else None,
        "train_seconds": round(seconds, 1),
        "train_samples_per_second": round(result.metrics["train_samples_per_second"], 2) if result else 0.0,
        "train_tokens_per_second": round(train_tokens / seconds, 1) if seconds else 0.0,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "validation": {key.removeprefix("eval_"): round(value, 6) for key, value in best.items()
                       if key.removeprefix("eval_") in ("accuracy", "f1", "precision", "recall", "roc_auc", "loss")},
    }


@cli("finetune")
def main() -> None:
    quiet_libraries()
    params = load_params()
    summary = train(params)
    if summary is None:
        return
    write_json(TRAIN_METRICS, summary)
    if params.train.epochs == 0:
        print(f"finetune: epochs=0, saved the untrained adapter (the base model with its seeded head) to {ADAPTER_DIR}")
        return
    print(
        f"finetune: {summary['trainable_params']:,} trainable params of {summary['total_params']:,} "
        f"({summary['trainable_percent']}%); best epoch {summary['best_epoch']} of {params.train.epochs}, "
        f"validation F1 {summary['validation']['f1']:.4f}; {summary['train_samples_per_second']} samples/s, "
        f"{summary['wall_seconds']} s"
    )


if __name__ == "__main__":
    main()
