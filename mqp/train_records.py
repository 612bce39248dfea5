"""What a finetune run records (metrics/detail/train.json): the TrainSummary of one model or of a
soup of several, written and read in one place; and the checkpoint folders killed runs left behind."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mqp.files import read_json
from mqp.params import Params
from mqp.paths import checkpoints_dir

VALIDATION_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc", "loss")


@dataclass(frozen=True)
class MemberRun:
    """One trained model: its seed (None where train.json does not record it, a single run's: train.seed),
    its best epoch, training loss and that epoch's validation metrics."""

    seed: int | None
    best_epoch: int
    train_loss: float | None
    validation: dict


@dataclass(frozen=True)
class TrainSummary:
    """train.json: sizes, speed, the validation metrics of the model kept, and the runs that made it
    (one member; a soup of train.members has one per member)."""

    trainable_params: int
    total_params: int
    trainable_percent: float
    epochs: int
    train_loss: float | None
    train_seconds: float
    train_samples_per_second: float
    train_tokens_per_second: float
    wall_seconds: float
    validation: dict
    members: list[MemberRun] = field(default_factory=list)

    @property
    def is_soup(self) -> bool:
        return len(self.members) > 1

    def kept_epochs(self) -> str:
        """'epoch 2 of 3', or a soup's one per member."""
        if self.is_soup:
            return f"epochs {', '.join(str(m.best_epoch) for m in self.members)} of {self.epochs}, one per member of the soup"
        return f"epoch {self.members[0].best_epoch} of {self.epochs}"

    def to_json(self) -> dict:
        """train.json's keys in their order. A single run's best_epoch is a number and it has no
        members; a soup's best_epoch lists its members' and `members` details them."""
        best_epoch = [m.best_epoch for m in self.members] if self.is_soup else self.members[0].best_epoch
        record = {"trainable_params": self.trainable_params, "total_params": self.total_params,
                  "trainable_percent": self.trainable_percent, "epochs": self.epochs, "best_epoch": best_epoch,
                  "train_loss": self.train_loss, "train_seconds": self.train_seconds,
                  "train_samples_per_second": self.train_samples_per_second,
                  "train_tokens_per_second": self.train_tokens_per_second, "wall_seconds": self.wall_seconds,
                  "validation": self.validation}
        if self.is_soup:
            record["members"] = [{"seed": m.seed, "best_epoch": m.best_epoch, "train_loss": m.train_loss,
                                  "validation": m.validation} for m in self.members]
        return record

    @classmethod
    def from_json(cls, record: dict) -> TrainSummary:
        """The summary to_json wrote."""
        if "members" in record:
            members = [MemberRun(m["seed"], m["best_epoch"], m["train_loss"], m["validation"]) for m in record["members"]]
        else:
            members = [MemberRun(None, record["best_epoch"], record["train_loss"], record["validation"])]
        fields = {key: value for key, value in record.items() if key not in ("best_epoch", "members")}
        return cls(**fields, members=members)


def read_train_summary(path: Path) -> TrainSummary:
    """finetune's train.json; missing or broken says what to run again."""
    return TrainSummary.from_json(read_json(Path(path), "finetune"))


def trainable_parameters(model) -> tuple[int, int]:
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def training_summary(trainer, result, train_set, params: Params, wall_seconds: float) -> TrainSummary:
    """One run's summary: sizes, the best epoch and its validation metrics, speed. trainer: the
    Trainer after fit(); result: what its train() returned (None at 0 epochs)."""
    trainable, total = trainable_parameters(trainer.model)
    # load_best_model_at_end restored the epoch with the best validation F1.
    history = [log for log in trainer.state.log_history if "eval_f1" in log]
    best = max(history, key=lambda log: log["eval_f1"]) if history else {}
    seconds = result.metrics["train_runtime"] if result else 0.0
    train_tokens = sum(train_set["length"]) * params.train.epochs
    train_loss = round(result.training_loss, 6) if result else None
    validation = {key.removeprefix("eval_"): round(value, 6) for key, value in best.items()
                  if key.removeprefix("eval_") in VALIDATION_METRICS}
    return TrainSummary(
        trainable_params=int(trainable),
        total_params=int(total),
        trainable_percent=round(100 * trainable / total, 4),
        epochs=params.train.epochs,
        train_loss=train_loss,
        train_seconds=round(seconds, 1),
        train_samples_per_second=round(result.metrics["train_samples_per_second"], 2) if result else 0.0,
        train_tokens_per_second=round(train_tokens / seconds, 1) if seconds else 0.0,
        wall_seconds=round(wall_seconds, 1),
        validation=validation,
        members=[MemberRun(params.train.seed, int(best.get("epoch", 0)), train_loss, validation)],
    )


def soup_summary(members: list[TrainSummary], validation: dict, params: Params, wall_seconds: float) -> TrainSummary:
    """A soup's summary (train.members): what was trained, summed over the members; each member's
    run, seeded train.seed + its number; the soup's own validation metrics
    (mqp.metrics.classification_metrics)."""
    trainable = sum(member.trainable_params for member in members)
    total = members[0].total_params - members[0].trainable_params + trainable
    seconds = sum(member.train_seconds for member in members)
    samples = sum(member.train_samples_per_second * member.train_seconds for member in members)
    tokens = sum(member.train_tokens_per_second * member.train_seconds for member in members)
    return TrainSummary(
        trainable_params=trainable,
        total_params=total,
        trainable_percent=round(100 * trainable / total, 4),
        epochs=params.train.epochs,
        train_loss=round(float(np.mean([member.train_loss for member in members])), 6),
        train_seconds=round(seconds, 1),
        train_samples_per_second=round(samples / seconds, 2),
        train_tokens_per_second=round(tokens / seconds, 1),
        wall_seconds=round(wall_seconds, 1),
        validation={key: round(float(validation[key]), 6) for key in VALIDATION_METRICS},
        members=[MemberRun(params.train.seed + i, member.members[0].best_epoch, member.train_loss, member.validation)
                 for i, member in enumerate(members)],
    )


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
