"""Training with the Hugging Face Trainer: the architecture's datasets and collator, arguments,
samplers, the Trainer itself and fitting. stages/finetune.py puts them together, and
mqp.train_records records the run."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.trainer_pt_utils import get_length_grouped_indices

from mqp.architectures import architecture_for
from mqp.errors import PipelineError
from mqp.metrics import classification_metrics
from mqp.models import device, inference_batch_size
from mqp.params import Params
from mqp.train_records import VALIDATION_METRICS
M_MMAP_THRESHOLD = -3  # glibc's mallopt option


def fix_mmap_threshold(size: int = 2 << 20) -> None:
    """Keep peak RSS down on glibc. It raises its mmap threshold each time a large block is freed,
    so activations of ever-changing batch shapes end up in a heap that never shrinks; a fixed 2 MB
    threshold gives them back to the OS (finetune's peak RSS, benchmarks/results.md)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, size)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


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
    train = with_implied_pairs(splits["train"]) if params.train.implied_pairs else splits["train"]
    return architecture_for(params).training_sets(train, splits["validation"], tokenizer, params)


def collator_for(params: Params, tokenizer, **padding) -> DataCollatorWithPadding:
    return architecture_for(params).collator(params, tokenizer, **padding)


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
        max_steps=train.max_steps or -1,  # -1: the Trainer's "no cap"
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
        optim="adamw_torch_fused",  # the default; an architecture's optimizer_for may build its own
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
    """The architecture's optimizer; None lets the Trainer build its default."""
    return architecture_for(params).optimizer(model, params)


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
