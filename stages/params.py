"""Typed, validated params.yaml: the one place that knows the params' names, types and ranges."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stages.errors import PipelineError
from stages.paths import PARAMS_FILE


class _Group(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Group):
    url: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    split: Literal["grouped", "random"] = "grouped"
    train_size: float = Field(default=0.8, gt=0, lt=1)
    validation_size: float = Field(default=0.1, gt=0, lt=1)
    test_size: float = Field(default=0.1, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sizes_sum_to_one(self):
        total = self.train_size + self.validation_size + self.test_size
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train_size + validation_size + test_size must sum to 1 (got {total:g})"
            )
        return self


class ModelParams(_Group):
    name: str = Field(min_length=1)
    max_length: int = Field(default=128, ge=8, le=4096)
    # Dropout inside the pretrained model while training; None keeps its config's (0.1 for most).
    dropout: float | None = Field(default=None, ge=0, lt=1)


class LoraParams(_Group):
    r: int = Field(default=8, ge=1, le=1024)
    alpha: float = Field(default=32, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: Literal["auto"] | list[str] = "auto"

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("must be 'auto' or a non-empty list of module names")
        return value


class TrainParams(_Group):
    learning_rate: float = Field(default=5e-4, gt=0, le=1)
    # 0 epochs saves the untrained adapter: the base model with a fresh seeded head.
    epochs: int = Field(default=3, ge=0, le=1000)
    batch_size: int = Field(default=16, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 42
    precision: Literal["fp32", "bf16"] = "fp32"
    # Show each training pair in a random order of its two questions (a seeded coin per pair).
    swap_questions: bool = True


class EvalParams(_Group):
    batch_size: int = Field(default=16, ge=1)
    # Score each pair in both question orders and average the probabilities.
    average_orders: bool = True
    threshold: float = Field(default=0.5, gt=0, lt=1)


class LoggingParams(_Group):
    wandb: Literal["disabled", "offline", "online"] = "disabled"
    wandb_project: str = Field(default="mqp-lora", min_length=1)


class Params(_Group):
    data: DataParams
    model: ModelParams
    lora: LoraParams = LoraParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    logging: LoggingParams = LoggingParams()


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
