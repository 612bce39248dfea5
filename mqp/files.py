"""Write outputs so that a crash or Ctrl-C never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from mqp.errors import PipelineError
from mqp.paths import TMP_DIR


def _scratch(target: Path) -> Path:
    # Same filesystem as the target, so the final rename is atomic.
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=TMP_DIR))
    scratch.chmod(0o755)  # mkdtemp's 0700 would follow the folder into place
    return scratch


def read_json(path: Path, stage: str) -> dict:
    """A JSON output of an earlier stage; missing or broken says what to run again."""
    if not path.exists():
        raise PipelineError(f"{path} not found: run `dvc repro` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc}): run `dvc repro --force {stage}`") from None


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON (sorted keys, stable bytes) via a temp file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


@contextlib.contextmanager
def atomic_dir(target: str | Path):
    """Yield an empty scratch folder; on success it replaces `target` in one rename.

    On an exception (or Ctrl-C) the scratch folder is removed and `target` is untouched.
    """
    target = Path(target)
    scratch = _scratch(target)
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = _scratch(target)
        os.replace(target, old / "old")
    os.replace(scratch, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w"):
    """Yield a temp file beside `target`, opened for writing; on success it replaces `target` in
    one rename. On an exception (or Ctrl-C) it is removed and `target` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(mode, dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
        try:
            yield tmp
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, target)
