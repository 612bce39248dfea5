"""Reading past runs: the workspace, a git commit or a DVC experiment, named as a user names them
(`workspace`, `HEAD`, a commit, a branch, an experiment's name), and what they stored. The one
module that knows git's and DVC's layout: `git show`, refs/exps and dvc.api."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import yaml

from mqp.errors import PipelineError
from mqp.paths import ADAPTER_DIR, LOCK_FILE, LORA_RESULTS, PARAMS_FILE, PREDICTIONS_CSV
from mqp.reports import parse_predictions

WORKSPACE = "workspace"  # the rev `dvc exp show` gives the workspace
EXPERIMENTS = "refs/exps/"  # DVC keeps each experiment as refs/exps/<baseline[:2]>/<baseline[2:]>/<name>


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def _experiment_refs(baseline: str = "") -> list[tuple[str, str, str]]:
    """(baseline commit, name, commit) of each experiment, of one baseline commit or of all."""
    prefix = f"{EXPERIMENTS}{baseline[:2]}/{baseline[2:]}/" if baseline else EXPERIMENTS
    refs = []
    for line in (_git("for-each-ref", "--format=%(refname) %(objectname)", prefix) or "").splitlines():
        ref, commit = line.split()
        parts = ref.split("/")
        if len(parts) == 5 and len(parts[2] + parts[3]) == 40:
            refs.append((parts[2] + parts[3], parts[4], commit))
    return refs


def resolve_run(name: str) -> str:
    """A run's git commit (full sha): a git revision, or a DVC experiment's name; WORKSPACE as it is."""
    if name == WORKSPACE:
        return name
    commit = (_git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}") or "").strip()
    if commit:
        return commit
    found = [commit for _, experiment, commit in _experiment_refs() if experiment == name]
    if len(found) != 1:
        why = "no git revision or DVC experiment" if not found else f"{len(found)} DVC experiments"
        raise PipelineError(f"{why} is named {name!r}: give a commit, a branch, an experiment's name "
                            "(`dvc exp show`), or workspace")
    return found[0]


def committed_text(rev: str, path) -> str | None:
    """A file as git committed it in `rev` (a commit or an experiment's), or the workspace's; None
    where it does not exist."""
    if rev == WORKSPACE:
        return path.read_text() if path.exists() else None
    return _git("show", f"{rev}:{path}")


def git_report(rev: str, path) -> dict | None:
    """A JSON report (metrics/detail/...) as committed in `rev`, or the workspace's; None where there is none."""
    text = committed_text(rev, path)
    return json.loads(text) if text is not None else None


def git_lock(rev: str) -> dict | None:
    """dvc.lock as committed in `rev`, or the workspace's; None where there is none."""
    text = committed_text(rev, LOCK_FILE)
    return yaml.safe_load(text) if text is not None else None


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


def stage_is_current(lock: dict | None, stage: str) -> bool:
    """Whether a run's outputs of `stage` are its own: the stage's dvc.lock entry read what the run's
    other stages wrote (every dep that is another stage's output has that output's hash). A run
    queued with targets that stop before the stage (`... evaluate`) keeps its baseline commit's
    outputs of it: another fold's, or another adapter's. Without a dvc.lock nothing tells: True."""
    if lock is None:
        return True
    stages = lock.get("stages") or {}
    outs = {out["path"]: out.get("md5") for entry in stages.values() for out in entry.get("outs", [])}
    deps = (stages.get(stage) or {}).get("deps", [])
    return bool(deps) and all(outs[dep["path"]] == dep.get("md5") for dep in deps if dep["path"] in outs)


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested params as dotted keys: {"lora": {"r": 8}} -> {"lora.r": 8}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def todays_params() -> dict:
    """params.yaml as it is now, flat; empty where there is none."""
    return flatten(yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8")) or {}) if PARAMS_FILE.exists() else {}


def as_today(params: dict, today: dict) -> dict:
    """A run's params in today's params.yaml's terms, so that runs of older commits compare with
    new ones: a param the run lacks had the behaviour of its value today (a new param's default
    keeps the old behaviour), and one params.yaml has dropped is left out."""
    return {key: params.get(key, value) for key, value in today.items()} if today else params


def finished_entries(exp_show: list[dict]) -> list[tuple[str, dict, dict]]:
    """(name, `dvc exp show` entry, flat params as_today) of the workspace, the commits and each
    finished experiment; experiments still queued, running or failed are left out."""
    entries = [(entry["name"] or entry["rev"], entry) for entry in exp_show]
    for commit in exp_show:
        for experiment in commit.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state", "success")
            if state == "success":  # not queued, running or failed
                entries += [(rev.get("name") or rev["rev"][:7], rev) for rev in experiment["revs"]]
    finished, today = [], todays_params()
    for name, entry in entries:
        data = entry.get("data") or {}
        params = flatten((data.get("params") or {}).get(str(PARAMS_FILE), {}).get("data") or {})
        if not entry.get("error") and params:
            finished.append((name, entry, as_today(params, today)))
    return finished


def exp_show_json(all_commits: bool) -> list[dict]:
    """`dvc exp show --json` of HEAD, or with all_commits of HEAD and every commit that has
    experiments. Not DVC's --all-commits: that visits every commit of the history, and its cost
    grows with commits times finished queue tasks (minutes for a long history)."""
    baselines = sorted({baseline for baseline, _, _ in _experiment_refs()}) if all_commits else []
    revs = [arg for commit in ["HEAD", *baselines] for arg in ("--rev", commit)] if all_commits else []
    result = subprocess.run(["dvc", "exp", "show", "--json", *revs], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`dvc exp show --json` failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(result.stdout)


def adapter_hash(lock_text: str | None) -> str | None:
    """The hash dvc.lock records for finetune's adapter; None where there is none."""
    try:
        outs = (yaml.safe_load(lock_text or "") or {})["stages"]["finetune"]["outs"]
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    return next((out.get("md5") for out in outs if out.get("path") == str(ADAPTER_DIR)), None)


def adapter_origin() -> str:
    """Where the workspace's adapter comes from: the git commit or DVC experiment whose dvc.lock
    records it. e.g. 'git 9cacd04', 'experiment lofty-bass (on git 9cacd04)', or 'a run not
    committed (on git 9cacd04)'. Plain git, no DVC import: predict stays quick to start."""
    head = (_git("rev-parse", "HEAD") or "").strip()
    ours = adapter_hash(committed_text(WORKSPACE, LOCK_FILE))
    if not head or ours is None:
        return "no git commit or dvc.lock to trace it to"
    if adapter_hash(committed_text("HEAD", LOCK_FILE)) == ours:
        return f"git {head[:7]}"
    for _, name, commit in _experiment_refs(head):
        if adapter_hash(committed_text(commit, LOCK_FILE)) == ours:
            return f"experiment {name} (on git {head[:7]})"
    return f"a run not committed (on git {head[:7]})"
