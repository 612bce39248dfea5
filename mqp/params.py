"""Typed, validated params.yaml: the params' names, types and ranges.

The values, and what each one means, live in params.yaml alone: no field here has a default, so
nothing can drift from it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mqp.errors import PipelineError
from mqp.paths import PARAMS_FILE


class _Group(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Group):
    sha256: str | None = Field(pattern=r"^[0-9a-f]{64}$")
    split: Literal["kfold", "grouped", "random"]
    folds: int = Field(ge=2, le=100)
    fold: int = Field(ge=0)
    validation_size: float = Field(gt=0, lt=1)
    test_size: float = Field(gt=0, lt=1)
    seed: int

    @model_validator(mode="after")
    def _consistent(self):
        if self.fold >= self.folds:
            raise ValueError(f"data.fold must be below data.folds (got fold {self.fold} of {self.folds})")
        held_out = self.validation_size + (1 / self.folds if self.split == "kfold" else self.test_size)
        if held_out >= 1:
            raise ValueError(f"validation and test take {held_out:g} of the data, leaving nothing to train on")
        return self


class ModelParams(_Group):
    name: str = Field(min_length=1)
    architecture: Literal["cross-encoder", "bi-encoder"]
    pooling: Literal["mean", "last"]
    max_length: int = Field(ge=8, le=4096)
    dropout: float | None = Field(ge=0, lt=1)


class LoraParams(_Group):
    r: int = Field(ge=1, le=1024)
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: Literal["auto"] | list[str]

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("must be 'auto' or a non-empty list of module names")
        return value


class TrainParams(_Group):
    method: Literal["lora", "full"]
    learning_rate: float = Field(gt=0, le=1)
    head_learning_rate: float = Field(gt=0, le=10)
    epochs: int = Field(ge=0, le=1000)
    batch_size: int = Field(ge=1)
    weight_decay: float = Field(ge=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    seed: int
    members: int = Field(ge=1, le=32)
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    swap_questions: bool
    ranking_weight: float = Field(ge=0)
    batch_negatives_weight: float = Field(ge=0)
    anchor_weight: float = Field(ge=0)
    implied_pairs: bool
    max_steps: int | None = Field(ge=1)


class EvalParams(_Group):
    batch_size: Literal["auto"] | int
    average_orders: bool
    threshold: float = Field(gt=0, lt=1)

    @field_validator("batch_size", mode="plain")
    @classmethod
    def _auto_or_positive(cls, value):
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError("must be auto or a whole number of at least 1")


class LoggingParams(_Group):
    wandb: Literal["disabled", "offline", "online"]
    wandb_project: str = Field(min_length=1)


class RetrievalParams(_Group):
    bank: str = Field(min_length=1)
    bank_column: str = Field(min_length=1)
    k: int = Field(ge=1, le=10000)
    search: Literal["exact", "hnsw"]
    hnsw_m: int = Field(ge=2, le=256)
    hnsw_ef_construction: int = Field(ge=1)
    hnsw_ef_search: int = Field(ge=1)
    method: Literal["zeroshot", "lora", "fusion"]
    fusion_weights: list[float]
    adapter_scale: float = Field(gt=0, lt=1)
    false_match_cost: float = Field(gt=0)

    @field_validator("fusion_weights")
    @classmethod
    def _positive_weights(cls, value):
        if not value or any(weight <= 0 for weight in value):
            raise ValueError("must be a non-empty list of positive weights")
        return value


class Params(_Group):
    data: DataParams
    model: ModelParams
    lora: LoraParams
    train: TrainParams
    eval: EvalParams
    logging: LoggingParams
    retrieval: RetrievalParams

    @model_validator(mode="after")
    def _ranking_needs_embeddings(self):
        for name in ("ranking_weight", "batch_negatives_weight", "anchor_weight"):
            if getattr(self.train, name) and self.model.architecture != "bi-encoder":
                raise ValueError(f"train.{name} scores sentence embeddings: it needs model.architecture=bi-encoder "
                                 f"(got {self.model.architecture}); set it to 0")
        return self

    @model_validator(mode="after")
    def _anchor_needs_lora(self):
        if self.train.anchor_weight and self.train.method != "lora":
            raise ValueError(f"train.anchor_weight compares with the base model, LoRA's adapter turned off: it needs "
                             f"train.method=lora (got {self.train.method}); set it to 0")
        return self

    @model_validator(mode="after")
    def _soup_needs_lora_biencoder(self):
        if self.train.members > 1 and (self.train.method != "lora" or self.model.architecture != "bi-encoder"):
            raise ValueError(f"train.members={self.train.members} averages LoRA bi-encoders: it needs train.method=lora "
                             f"and model.architecture=bi-encoder (got {self.train.method}, {self.model.architecture}); "
                             "set train.members to 1")
        return self


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at `loc` (a pydantic error location), for 'did you mean'."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _describe(error: dict) -> str:
    loc = tuple(error["loc"])
    key = ".".join(map(str, loc))
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(Params, loc)
        typed = str(loc[-1])
        # Close spellings first; else a key the typed one starts with (rank -> r).
        hint = difflib.get_close_matches(typed, allowed, n=1) or [k for k in allowed if typed.startswith(k)][:1]
        suggestion = f" (did you mean '{'.'.join(map(str, loc[:-1] + (hint[0],)))}'?)" if hint else ""
        return f"unknown key '{key}'{suggestion}; allowed here: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    message = error["msg"].removeprefix("Value error, ")
    # Model-level checks (sums of several keys) have no single key to name.
    where = f"'{key}'" if key else "params"
    got = error.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{where}: {message}{shown}"


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    """Validate a params mapping, raising one PipelineError that names every bad key."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{source} must be a mapping of groups (data, model, lora, ...)")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise PipelineError(f"invalid {source}: {problems}") from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: run the stages from the repository root")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_params(raw, source=path.name)
