"""Where the trained adapter in the workspace comes from: the git commit or the DVC experiment
whose dvc.lock records it. Plain git, no DVC import: predict stays quick to start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from mqp.paths import ADAPTER_DIR

LOCK_FILE = Path("dvc.lock")  # DVC's record of each stage's deps, params and outputs


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def adapter_hash(lock_text: str | None) -> str | None:
    """The hash dvc.lock records for finetune's adapter; None where there is none."""
    try:
        outs = (yaml.safe_load(lock_text or "") or {})["stages"]["finetune"]["outs"]
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    return next((out.get("md5") for out in outs if out.get("path") == str(ADAPTER_DIR)), None)


def adapter_origin() -> str:
    """e.g. 'git 9cacd04', 'experiment lofty-bass (on git 9cacd04)', or 'a run not committed (on git 9cacd04)'."""
    head = (_git("rev-parse", "HEAD") or "").strip()
    ours = adapter_hash(LOCK_FILE.read_text() if LOCK_FILE.exists() else None)
    if not head or ours is None:
        return "no git commit or dvc.lock to trace it to"
    if adapter_hash(_git("show", f"HEAD:{LOCK_FILE}")) == ours:
        return f"git {head[:7]}"
    # DVC keeps each experiment as refs/exps/<baseline[:2]>/<baseline[2:]>/<name>.
    refs = _git("for-each-ref", "--format=%(refname) %(objectname)", f"refs/exps/{head[:2]}/{head[2:]}/") or ""
    for line in refs.splitlines():
        ref, commit = line.split()
        if adapter_hash(_git("show", f"{commit}:{LOCK_FILE}")) == ours:
            return f"experiment {ref.rsplit('/', 1)[-1]} (on git {head[:7]})"
    return f"a run not committed (on git {head[:7]})"
