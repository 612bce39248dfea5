"""Reading past runs: the workspace, a git commit or a DVC experiment, named as a user names them
(`workspace`, `HEAD`, a commit, a branch, an experiment's name), and what they stored."""

from __future__ import annotations

import subprocess

import pandas as pd

from mqp.errors import PipelineError
from mqp.paths import LORA_RESULTS, PREDICTIONS_CSV
from mqp.reports import parse_predictions
from mqp.stats import paired_comparison

WORKSPACE = "workspace"  # the rev `dvc exp show` gives the workspace
PAIR = ["question_1", "question_2"]


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def resolve_run(name: str) -> str:
    """A run's git commit (full sha): a git revision, or a DVC experiment's name (DVC keeps each as
    refs/exps/<baseline[:2]>/<baseline[2:]>/<name>); WORKSPACE as it is."""
    if name == WORKSPACE:
        return name
    commit = _git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    if commit:
        return commit
    refs = (_git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/") or "").splitlines()
    found = [line.split()[1] for line in refs if line.split()[0].rsplit("/", 1)[-1] == name]
    if len(found) != 1:
        why = "no git revision or DVC experiment" if not found else f"{len(found)} DVC experiments"
        raise PipelineError(f"{why} is named {name!r}: give a commit, a branch, an experiment's name "
                            "(`dvc exp show`), or workspace")
    return found[0]


def read_run_output(rev: str, path, parse):
    """parse() of a run's output: the workspace's file, or the one in an experiment's commit (DVC's
    cache holds the outputs of queued runs); FileNotFoundError where the run has none."""
    if rev == WORKSPACE:
        return parse(path)
    import dvc.api  # here: only runs of experiments need it, and it is slow to import
    from dvc.exceptions import PathMissingError

    try:
        with dvc.api.open(str(path), rev=rev) as source:
            return parse(source)
    except PathMissingError:
        raise FileNotFoundError(path) from None


def predictions_at(rev: str, file: str = PREDICTIONS_CSV) -> pd.DataFrame:
    """A run's LoRA predictions (test, or validation with VALIDATION_PREDICTIONS_CSV)."""
    path = LORA_RESULTS / file
    try:
        return read_run_output(rev, path, parse_predictions)
    except FileNotFoundError:
        raise PipelineError(f"run {rev[:7]} has no {path}: it ran before evaluate wrote it; run it again") from None


def correct_by_pair(predictions: pd.DataFrame) -> pd.Series:
    """Whether the model got each test pair right, indexed by the pair."""
    return (predictions["predicted"] == predictions["label"]).set_axis(pd.MultiIndex.from_frame(predictions[PAIR]))


def paired_answers(ours: pd.Series, theirs: pd.Series) -> dict:
    """Two runs' correct_by_pair on the same pairs (in any order): paired_comparison's counts,
    difference, interval and McNemar p."""
    if len(ours) != len(theirs) or not ours.index.isin(theirs.index).all():
        raise PipelineError("the two runs were tested on other pairs; compare runs with the same data params")
    return paired_comparison(ours.to_numpy(), theirs.reindex(ours.index).to_numpy())
