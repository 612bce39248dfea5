"""Interruption and determinism, for real, in a copy of the trained tiny-BERT project.

Ctrl-C (SIGINT) or kill -9 in the middle of training, run directly or under `dvc repro`,
leaves the last good adapter, train.json and dvc.lock as they were, and the next `dvc repro`
completes. The same params and seed give the same metrics, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import STAGES, commit, copy_project, dvc, output_files, read_json, run, set_params
from mqp.paths import (ADAPTER_DIR, BASE_METRICS, BASE_REPORT, DATA_METRICS, DATA_REPORT, LORA_METRICS, LORA_REPORT,
                       MERGED_DIR, PARAMS_FILE, PREPARED_DIR, RESULTS_DIR, TMP_DIR, TRAIN_REPORT, ZEROSHOT_METRICS,
                       ZEROSHOT_REPORT)

# Its tests run in order on one project (pytest-xdist sends the file whole to one worker).
pytestmark = pytest.mark.slow

# Written byte-identically by two runs with the same params and seed on one machine (README
# "Reproducibility"): everything but train.json's clock readings.
STABLE_OUTPUTS = (DATA_METRICS, BASE_METRICS, ZEROSHOT_METRICS, LORA_METRICS, DATA_REPORT, BASE_REPORT, ZEROSHOT_REPORT,
                  LORA_REPORT, PREPARED_DIR, RESULTS_DIR, ADAPTER_DIR, MERGED_DIR)
ADAPTER_WEIGHTS = ADAPTER_DIR / "adapter_model.safetensors"


def without_timings(train: dict) -> dict:
    """train.json less its clock readings (wall_seconds, train_seconds, *_per_second)."""
    return {key: value for key, value in train.items() if "second" not in key}


# tqdm's training bar at step 2 or later ("  0%|   | 2/400 [00:03<...]"): an optimizer step is done.
TRAINING = re.compile(r"\b([2-9]|\d{2,})/\d+ \[")


@pytest.fixture(scope="module")
def project(tmp_path_factory, trained_project):
    """A copy of the shared project: `dvc repro` from scratch on the tiny BERT, committed."""
    return copy_project(trained_project[0], tmp_path_factory.mktemp("interrupt") / "project")


def kept_outputs(project: Path) -> dict[str, bytes]:
    """What an interrupted finetune must not touch: the adapter and its metrics."""
    files = [*sorted((project / ADAPTER_DIR).iterdir()), project / TRAIN_REPORT]
    return {str(path.relative_to(project)): path.read_bytes() for path in files}


def set_epochs(project: Path, epochs: int) -> None:
    set_params(project, {"train.epochs": epochs})


def default_sigint() -> None:
    # A job started in the background (`cmd &`, nohup) ignores SIGINT, and its children inherit that;
    # Python then installs no KeyboardInterrupt handler. Restore what a terminal job has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cmd: list[str], project: Path, log: Path) -> subprocess.Popen:
    """Run in its own process group (like a terminal job), output to a log file we can poll. With
    faulthandler on, SIGABRT makes every Python process of the group print its threads' stacks."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=project, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=default_sigint,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"})


def wait_or_show_stacks(proc: subprocess.Popen, log: Path, timeout: float) -> int:
    """The exit code; a process group still running after timeout s fails the test with its stacks."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGABRT)
        time.sleep(5)
        pytest.fail(f"still running {timeout} s after the signal; its stacks:\n{log.read_text(errors='replace')[-12000:]}")


def wait_for_training(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if TRAINING.search(log.read_text(errors="replace")):
            return
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before training started:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"training did not start within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_group(proc: subprocess.Popen) -> None:
    """Never leave a training run behind, whatever the test's outcome."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def interrupt(cmd: list[str], project: Path, log: Path, sig: signal.Signals, group: bool = False) -> tuple[int, str]:
    """Start cmd, wait until it is training, send sig (to the whole group if asked); exit code and output."""
    proc = start(cmd, project, log)
    try:
        wait_for_training(proc, log)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        returncode = wait_or_show_stacks(proc, log, timeout=120)
    finally:
        stop_group(proc)
    return returncode, log.read_text(errors="replace")


def changed_outs(status: dict, stage: str) -> dict:
    changes = {}
    for entry in status.get(stage, []):
        if isinstance(entry, dict):
            changes.update(entry.get("changed outs", {}))
    return changes


def test_repro_force_gives_byte_identical_outputs(project):
    """Same params and seed: the from-scratch run and a forced rerun agree byte for byte, in every
    metrics file and report, the splits, the predictions and curves, the adapter and the merged
    model; train.json differs in its clock readings only."""
    first = output_files(project, *STABLE_OUTPUTS)
    assert {str(ADAPTER_WEIGHTS), str(MERGED_DIR / "model.safetensors"), str(LORA_METRICS)} <= set(first)
    first_train = read_json(project / TRAIN_REPORT)
    out = dvc("repro", "--force", cwd=project).stdout
    assert all(f"Running stage '{stage}'" in out for stage in STAGES)
    again = output_files(project, *STABLE_OUTPUTS)
    assert set(again) == set(first)
    assert [path for path in first if again[path] != first[path]] == [], "differ between identical runs"
    again_train = read_json(project / TRAIN_REPORT)
    assert set(again_train) == set(first_train)
    assert without_timings(again_train) == without_timings(first_train)
    assert {"wall_seconds", "train_seconds", "train_samples_per_second"} <= set(first_train) - set(without_timings(first_train))
    commit(project, "forced run")


def test_ctrl_c_and_kill_9_during_finetune_lose_nothing(project, tmp_path):
    before = kept_outputs(project)
    set_epochs(project, 40)  # long enough to be stopped mid-training
    finetune = [sys.executable, "-m", "stages.finetune"]

    returncode, output = interrupt(finetune, project, tmp_path / "sigint.log", signal.SIGINT)
    assert returncode == 130, output[-3000:]
    assert "finetune: interrupted; outputs written before are intact" in output
    assert "Traceback" not in output
    assert kept_outputs(project) == before
    assert not list((project / TMP_DIR).glob("*"))  # the checkpoint scratch folder is removed

    returncode, output = interrupt(finetune, project, tmp_path / "sigkill.log", signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert kept_outputs(project) == before

    # Back to the committed params: repro reruns finetune (DVCLive's curves were rewritten)
    # and ends with everything up to date.
    run(["git", "checkout", str(PARAMS_FILE)], cwd=project)
    dvc("repro", cwd=project)
    assert not list((project / TMP_DIR).glob("*"))  # the killed run's checkpoints went with it
    assert json.loads(dvc("status", "--json", cwd=project).stdout) == {}
    assert "up to date" in dvc("status", cwd=project).stdout
    after = kept_outputs(project)
    assert {k: v for k, v in after.items() if k.startswith(str(ADAPTER_DIR))} == \
           {k: v for k, v in before.items() if k.startswith(str(ADAPTER_DIR))}  # and the same adapter
    commit(project, "after interruptions")


def test_interrupted_dvc_repro_keeps_lock_and_outputs(project, tmp_path):
    """Ctrl-C and kill -9 of the whole `dvc repro` process group mid-training.

    dvc.yaml marks finetune's adapter and train.json `persist: true`: otherwise DVC deletes
    them before running the stage, and a killed run would leave dvc.lock pointing at nothing.
    """
    lock = (project / "dvc.lock").read_bytes()
    before = kept_outputs(project)
    set_epochs(project, 40)
    repro = [sys.executable, "-m", "dvc", "repro"]

    returncode, output = interrupt(repro, project, tmp_path / "dvc-sigint.log", signal.SIGINT, group=True)
    assert returncode != 0
    assert "finetune: interrupted; outputs written before are intact" in output
    # DVC runs the stage through $SHELL. bash execs the command, so DVC sees our exit code 130;
    # dash (/bin/sh, where SHELL is unset) waits, then re-raises the SIGINT on itself: -2.
    assert "failed to reproduce 'finetune'" in output
    assert re.search(r"exited with (130|-2)\b", output), output[-3000:]
    assert (project / "dvc.lock").read_bytes() == lock
    assert kept_outputs(project) == before

    returncode, output = interrupt(repro, project, tmp_path / "dvc-sigkill.log", signal.SIGKILL, group=True)
    assert returncode == -signal.SIGKILL
    assert (project / "dvc.lock").read_bytes() == lock
    assert kept_outputs(project) == before
    # dvc.lock still matches the files on disk: only params (and DVCLive's curves) changed.
    status = json.loads(dvc("status", "--json", cwd=project).stdout)
    assert set(status) == {"finetune", "export"}  # the stages that read train.epochs (export: its card)
    changed = changed_outs(status, "finetune")
    assert str(ADAPTER_DIR) not in changed and str(TRAIN_REPORT) not in changed
    for name in status:
        assert {"changed deps": {str(PARAMS_FILE): {"train": "modified"}}} in status[name]
    assert not changed_outs(status, "export")

    # The killed run left no lock behind that blocks the next one.
    run(["git", "checkout", str(PARAMS_FILE)], cwd=project)
    out = dvc("repro", cwd=project).stdout
    assert "Running stage 'finetune'" in out or "didn't change" in out
    assert json.loads(dvc("status", "--json", cwd=project).stdout) == {}
