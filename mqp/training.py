"""Training with the Hugging Face Trainer: tokenised datasets, collators, arguments, the Trainer
itself, and the summary of a run. stages/finetune.py puts them together."""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.trainer_pt_utils import get_length_grouped_indices

from mqp.biencoder import SIDES, BiEncoder
from mqp.errors import PipelineError
from mqp.inference import encode_pairs
from mqp.metrics import classification_metrics
from mqp.models import device, inference_batch_size
from mqp.params import Params
from mqp.paths import checkpoints_dir

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
VALIDATION_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc", "loss")
M_MMAP_THRESHOLD = -3  # glibc's mallopt option


def fix_mmap_threshold(size: int = 2 << 20) -> None:
    """Keep peak RSS down on glibc. It raises its mmap threshold each time a large block is freed,
    so activations of ever-changing batch shapes end up in a heap that never shrinks; a fixed 2 MB
    threshold gives them back to the OS (finetune's peak RSS, benchmarks/results.md)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, size)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def pair_dataset(table: pd.DataFrame, tokenizer, max_length: int, swapped: bool = False) -> Dataset:
    """Cross-encoder inputs, tokenised once, with a `length` column for length-grouped batches;
    with swapped, also each pair in the other question order (`swapped_*` columns)."""
    encoded = encode_pairs(tokenizer, table["question_1"], table["question_2"], max_length)
    columns = {**encoded, "labels": table["label"].tolist(), "length": [len(ids) for ids in encoded["input_ids"]]}
    if swapped:
        other = encode_pairs(tokenizer, table["question_2"], table["question_1"], max_length)
        columns.update({f"swapped_{key}": values for key, values in other.items()})
    return Dataset.from_dict(columns)


def question_dataset(table: pd.DataFrame, tokenizer, max_length: int) -> Dataset:
    """Bi-encoder inputs: each question tokenised alone (`*_1`, `*_2` columns), `length`, and
    `group`, the same number for the pairs that share a question_1 (QuestionGroupedSampler)."""
    columns = {"labels": table["label"].tolist()}
    for side, column in zip(SIDES, ("question_1", "question_2")):
        encoded = tokenizer(list(table[column]), truncation=True, max_length=max_length)
        columns.update({f"{key}_{side}": values for key, values in encoded.items()})
    columns["length"] = [len(a) + len(b) for a, b in zip(columns["input_ids_1"], columns["input_ids_2"])]
    columns["group"] = pd.factorize(table["question_1"])[0].tolist()
    return Dataset.from_dict(columns)


def with_implied_pairs(train: pd.DataFrame) -> pd.DataFrame:
    """MQP's pairs plus the ones they imply: where a question_1 has a similar rewrite A and a
    dissimilar rewrite B, A and B ask different things. One more dissimilar pair per question_1,
    two rewrites doctors wrote to look alike: from the train split alone, after its own pairs."""
    first = {label: train[train["label"] == label].drop_duplicates("question_1").set_index("question_1")
             for label in (1, 0)}
    both = first[1].index.intersection(first[0].index)
    implied = pd.DataFrame({"dr_id": first[1].loc[both, "dr_id"].to_numpy(),
                            "question_1": first[1].loc[both, "question_2"].to_numpy(),
                            "question_2": first[0].loc[both, "question_2"].to_numpy(), "label": 0})
    return pd.concat([train, implied], ignore_index=True)


def training_sets(params: Params, tokenizer, splits: dict[str, pd.DataFrame]) -> tuple[Dataset, Dataset]:
    """The train and validation datasets of model.architecture (batched by length: PairTrainer);
    with train.implied_pairs, the train split's implied pairs too."""
    max_length = params.model.max_length
    train = with_implied_pairs(splits["train"]) if params.train.implied_pairs else splits["train"]
    if params.model.architecture == "bi-encoder":
        return (question_dataset(train, tokenizer, max_length),
                question_dataset(splits["validation"], tokenizer, max_length))
    return (pair_dataset(train, tokenizer, max_length, swapped=params.train.swap_questions),
            pair_dataset(splits["validation"], tokenizer, max_length).sort("length"))


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


class QuestionPairCollator(DataCollatorWithPadding):
    """Pads each side of a bi-encoder batch on its own (`input_ids_1`, ..., `input_ids_2`, ...)."""

    def __call__(self, features: list[dict]) -> dict:
        batch = {"labels": torch.tensor([feature["labels"] for feature in features])}
        for side in SIDES:
            padded = super().__call__([{key: feature[f"{key}_{side}"] for key in MODEL_INPUTS
                                        if f"{key}_{side}" in feature} for feature in features])
            batch.update({f"{key}_{side}": value for key, value in padded.items()})
        return batch


def collator_for(params: Params, tokenizer, **padding) -> DataCollatorWithPadding:
    if params.model.architecture == "bi-encoder":
        return QuestionPairCollator(tokenizer, **padding)
    return PairCollator(tokenizer, params.train.seed, **padding)


def mixed_precision(precision: str) -> str:
    """train.precision with auto resolved: fp32 on every machine so far. At these shapes (22M-124M
    params, ~60 tokens) autocast's casts cost more than its faster matmuls save: bf16 ran 2.3-3.3x
    slower than fp32 on an H200 (issue 11) and slower on AVX2, AVX-512 and AMX CPUs
    (benchmarks/results.md). On CUDA, fp32 matmuls use TF32 tensor cores instead (mqp.models.device)."""
    return "fp32" if precision == "auto" else precision


def training_arguments(params: Params, output_dir: Path, report_to: list[str]) -> TrainingArguments:
    train = params.train
    precision = mixed_precision(train.precision)
    on_cuda = device().type == "cuda"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=inference_batch_size(params.eval.batch_size),
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        bf16=precision == "bf16",
        fp16=precision == "fp16",  # autocast; on CUDA with a loss scaler
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
        # On CUDA: batches copied from pinned memory without blocking, so the next batch's copy
        # overlaps the current step's kernels.
        dataloader_pin_memory=on_cuda,
        accelerator_config={"non_blocking": on_cuda},
        # The Trainer's NaN check reads every step's loss on the host: a sync per step that
        # leaves a GPU idle. A NaN loss then shows in the logged loss instead of being skipped.
        logging_nan_inf_filter=False,
        optim="adamw_torch_fused",  # the cross-encoder's; optimizer_for builds the bi-encoder's
        # The collators pick the model inputs themselves (PairCollator needs the swapped_* columns).
        remove_unused_columns=False,
        # Told outright when there is no accelerator: transformers refuses bf16 on a CPU it was not
        # told about, and torchrun on CPUs needs it to pick the gloo backend.
        use_cpu=device().type == "cpu",
    )


def compute_metrics(threshold: float):
    def compute(prediction) -> dict:
        logits = torch.as_tensor(prediction.predictions).float()
        probs = torch.softmax(logits, dim=-1)[:, 1].numpy()
        metrics = classification_metrics(prediction.label_ids, probs, threshold)
        # The Trainer reports the same cross-entropy as eval_loss.
        return {key: metrics[key] for key in VALIDATION_METRICS if key != "loss"}

    return compute


def optimizer_for(model, params: Params):
    """AdamW with the bi-encoder's scale and bias at their own learning rate (they move on a
    scale of ~10, the LoRA weights on ~1e-3); None lets the Trainer build its default. Fused on
    CUDA: one kernel for all parameters instead of several per tensor. Not on the CPU, where it
    changes the last bits of each update (the tiny pipeline's third logged loss moved by 1e-7)
    and so the default's CPU figures, for a few percent of a step."""
    if not isinstance(model, BiEncoder):
        return None
    head = [model.scale, model.bias]
    lora = [p for p in model.encoder.parameters() if p.requires_grad]
    return torch.optim.AdamW([
        {"params": lora, "lr": params.train.learning_rate, "weight_decay": params.train.weight_decay},
        {"params": head, "lr": params.train.head_learning_rate, "weight_decay": 0.0},
    ], fused=device().type == "cuda")


class QuestionGroupedSampler(Sampler):
    """The Trainer's group_by_length order (shuffled, then sorted by length within mega-batches)
    over groups of pairs instead of single pairs. Both pairs of a question_1 then sit side by side
    and share a batch, where the bi-encoder embeds that question once (BiEncoder.forward): a
    quarter fewer texts per step, with the same loss as embedding it twice."""

    def __init__(self, groups: list[int], lengths: list[int], batch_size: int, generator=None):
        members: dict[int, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(group, []).append(index)
        self.groups = list(members.values())
        self.group_lengths = [max(lengths[i] for i in group) for group in self.groups]
        # A mega-batch of as many pairs as the Trainer's own sampler takes.
        self.groups_per_batch = max(1, round(batch_size * len(self.groups) / len(groups)))
        self.generator = generator

    def __len__(self) -> int:
        return sum(len(group) for group in self.groups)

    def _group_order(self) -> list[list[int]]:
        order = get_length_grouped_indices(self.group_lengths, self.groups_per_batch, generator=self.generator)
        return [self.groups[group] for group in order]

    def __iter__(self):
        return iter([index for group in self._group_order() for index in group])

    def batch_count(self, batch_size: int, processes: int) -> int:
        """How many batches batches() makes: a multiple of processes."""
        count = -(-len(self) // batch_size)
        return -(-count // processes) * processes

    def batches(self, batch_size: int, processes: int = 1) -> list[list[int]]:
        """One epoch's batches in this order. One process: consecutive slices of batch_size, what a
        DataLoader cuts. Several: whole groups only, about batch_size pairs each, and a number of
        batches that is a multiple of processes, so that accelerate, which hands batch i to process
        i % processes, gives each the same number of steps, every pair once, and both pairs of a
        question_1 to one batch on one process."""
        groups = self._group_order()
        if processes == 1:
            order = [index for group in groups for index in group]
            return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        count, total, start = self.batch_count(batch_size, processes), len(self), 0
        batches: list[list[int]] = [[] for _ in range(count)]
        for group in groups:  # each group to the batch where its first pair falls
            batches[start * count // total].extend(group)
            start += len(group)
        if not all(batches):
            raise PipelineError(f"{len(self.groups)} question_1 groups are too few to split into {count} batches "
                                f"for {processes} processes: lower train.batch_size or the number of processes")
        return batches


class QuestionGroupedBatches(Sampler):
    """A DataLoader's batch_sampler: QuestionGroupedSampler.batches for this run's processes."""

    def __init__(self, sampler: QuestionGroupedSampler, batch_size: int, processes: int):
        self.sampler, self.batch_size_per_process, self.processes = sampler, batch_size, processes

    def __len__(self) -> int:
        return self.sampler.batch_count(self.batch_size_per_process, self.processes)

    def __iter__(self):
        # A generator: the order is drawn on the first batch, after the DataLoader's own seed,
        # as when the DataLoader batched QuestionGroupedSampler itself (the same batches).
        yield from self.sampler.batches(self.batch_size_per_process, self.processes)


class PairTrainer(Trainer):
    """The Trainer, with QuestionGroupedSampler for datasets that have a `group` column."""

    def _grouped_sampler(self, dataset, batch_size: int, generator=None):
        if "group" not in getattr(dataset, "column_names", ()):
            return None
        return QuestionGroupedSampler(list(dataset["group"]), list(dataset["length"]), batch_size, generator)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # One process draws from torch's global generator, seeded by train.seed (the order of every
        # run so far); under torchrun every process must draw the same order: a generator of their own.
        generator = None if self.args.world_size == 1 else torch.Generator().manual_seed(self.args.data_seed)
        sampler = self._grouped_sampler(dataset, self.args.train_batch_size, generator)
        return sampler if sampler is not None else super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self) -> DataLoader:
        """Grouped datasets: batches of whole question_1 groups, sharded across processes by
        accelerate (QuestionGroupedSampler.batches); else the Trainer's own."""
        sampler = self._get_train_sampler()
        if not isinstance(sampler, QuestionGroupedSampler):
            return super().get_train_dataloader()
        batches = QuestionGroupedBatches(sampler, self.args.train_batch_size, self.args.world_size)
        return self.accelerator.prepare(DataLoader(
            self.train_dataset, batch_sampler=batches, collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory))

    def _get_eval_sampler(self, eval_dataset):
        # One mega-batch: validation is sorted by length outright (least padding), the same every epoch.
        generator = torch.Generator().manual_seed(self.args.data_seed)
        sampler = self._grouped_sampler(eval_dataset, len(eval_dataset), generator)
        return sampler if sampler is not None else super()._get_eval_sampler(eval_dataset)


def make_trainer(model, params: Params, tokenizer, datasets: tuple[Dataset, Dataset], args: TrainingArguments,
                 collator, callbacks: list) -> Trainer:
    return PairTrainer(
        model=model,
        args=args,
        train_dataset=datasets[0],
        eval_dataset=datasets[1],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics(params.eval.threshold),
        callbacks=callbacks,
        optimizers=(optimizer_for(model, params), None),
    )


def fit(trainer: Trainer, epochs: int, checkpoints: Path):
    """Train (0 epochs: nothing) and keep the best epoch's weights; checkpoints are removed."""
    try:
        result = trainer.train() if epochs > 0 else None
        trainer.accelerator.wait_for_everyone()  # all processes have loaded the best epoch
    finally:
        if trainer.is_world_process_zero():
            shutil.rmtree(checkpoints, ignore_errors=True)
    return result


def remove_stale_checkpoints() -> list[Path]:
    """Remove the checkpoint folders of finetune runs whose process is gone (`kill -9` skips
    fit's cleanup); returns them. A torchrun launch names its folder by TORCHELASTIC_RUN_ID, not
    a pid, so nothing tells whether it still runs: such folders are left alone."""
    pattern = checkpoints_dir("*")
    prefix = checkpoints_dir("").name
    removed = []
    for folder in sorted(pattern.parent.glob(pattern.name)):
        run_id = folder.name.removeprefix(prefix)
        if folder.is_dir() and run_id.isdigit() and not process_alive(int(run_id)):
            shutil.rmtree(folder, ignore_errors=True)  # another finetune may be removing it too
            removed.append(folder)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a reused id counts as alive: the
    folder is kept, the safe side)."""
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False  # not a possible pid
    return True


def trainable_parameters(model) -> tuple[int, int]:
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def training_summary(trainer: Trainer, result, train_set: Dataset, params: Params, wall_seconds: float) -> dict:
    """What train.json records: sizes, the best epoch and its validation metrics, speed."""
    trainable, total = trainable_parameters(trainer.model)
    # load_best_model_at_end restored the epoch with the best validation F1.
    history = [log for log in trainer.state.log_history if "eval_f1" in log]
    best = max(history, key=lambda log: log["eval_f1"]) if history else {}
    seconds = result.metrics["train_runtime"] if result else 0.0
    train_tokens = sum(train_set["length"]) * params.train.epochs
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
        "wall_seconds": round(wall_seconds, 1),
        "validation": {key.removeprefix("eval_"): round(value, 6) for key, value in best.items()
                       if key.removeprefix("eval_") in VALIDATION_METRICS},
    }


def soup_summary(members: list[dict], validation: dict, params: Params, wall_seconds: float) -> dict:
    """train.json for a soup (train.members): what was trained, summed over the members; each
    member's best epoch; the soup's own validation metrics (mqp.metrics.classification_metrics)."""
    trainable = sum(member["trainable_params"] for member in members)
    total = members[0]["total_params"] - members[0]["trainable_params"] + trainable
    seconds = sum(member["train_seconds"] for member in members)
    samples = sum(member["train_samples_per_second"] * member["train_seconds"] for member in members)
    tokens = sum(member["train_tokens_per_second"] * member["train_seconds"] for member in members)
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
        "epochs": params.train.epochs,
        "best_epoch": [member["best_epoch"] for member in members],
        "train_loss": round(float(np.mean([member["train_loss"] for member in members])), 6),
        "train_seconds": round(seconds, 1),
        "train_samples_per_second": round(samples / seconds, 2),
        "train_tokens_per_second": round(tokens / seconds, 1),
        "wall_seconds": round(wall_seconds, 1),
        "validation": {key: round(float(validation[key]), 6) for key in VALIDATION_METRICS},
        "members": [{"seed": params.train.seed + i, "best_epoch": member["best_epoch"], "train_loss": member["train_loss"],
                     "validation": member["validation"]} for i, member in enumerate(members)],
    }
