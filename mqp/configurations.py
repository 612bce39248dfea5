"""Configurations: the params that make one run another configuration (all but the fold and the
logging settings), their one key, and how a configuration is labelled against another."""

from __future__ import annotations

import json

from mqp.errors import PipelineError
from mqp.runs import flatten

TODAY = "params.yaml"  # the label of the configuration params.yaml describes


def is_variant_param(key: str) -> bool:
    """Params that make another configuration: all but the fold and the logging settings."""
    return key != "data.fold" and not key.startswith("logging.")


def configuration_key(params: dict, ignore: tuple[str, ...] = ()) -> str:
    """The one key of a configuration: its variant params (flat) but `ignore`, as sorted JSON, so
    that runs with equal values group together whatever their types' order."""
    return json.dumps({k: v for k, v in params.items() if is_variant_param(k) and k not in ignore}, sort_keys=True)


def param_text(value) -> str:
    """A param's value as `-S` takes it: lists as [a,b]."""
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def differs(value, other) -> bool:
    return json.dumps(value) != json.dumps(other)


def change_from_today(params: dict, today: dict) -> str:
    """A run's params where they differ from params.yaml's (fold and logging aside), as -S takes
    them; 'params.yaml' where none do."""
    changed = [f"{key}={param_text(value)}" for key, value in sorted(params.items())
               if is_variant_param(key) and differs(value, today.get(key))]
    return ", ".join(changed) or TODAY


def change_label(summary: dict, reference: dict) -> str:
    """What a configuration changes from the reference: the params whose values differ (e.g.
    'lora.alpha=8, lora.r=2'), a seed ensemble's seeds as such; '(reference)' for the reference."""
    if summary is reference:
        return "(reference)"
    parts = []
    for key, value in sorted(summary["params"].items()):
        if not differs(value, reference["params"].get(key)):
            continue
        ensemble = summary.get("ensemble") and key == "train.seed"
        parts.append(f"ensemble of train.seed={value}" if ensemble else f"{key}={param_text(value)}")
    return ", ".join(parts) or "(same params as the reference)"


def find_reference(summaries: list[dict], params: dict, label: str | None) -> dict:
    """The configuration named by --reference (its label), else the one params.yaml describes
    (params: params.yaml as read, not as validated, whose floats would differ in type from DVC's)."""
    if label is not None:
        found = [s for s in summaries if s["configuration"] == label]
        if not found:
            names = "; ".join(s["configuration"] for s in summaries)
            raise PipelineError(f"no configuration {label!r} among the finished sweeps: {names}")
        return found[0]
    workspace = configuration_key(flatten(params))
    for summary in summaries:
        if configuration_key(summary["params"]) == workspace:
            return summary
    raise PipelineError("no finished configuration has params.yaml's values; run its folds too, or pass "
                        "--reference with one of: " + "; ".join(s["configuration"] for s in summaries))
