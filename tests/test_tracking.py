"""Tracking: DVCLive curves always; W&B offline without network, online never prompting."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import make_project, run


def no_network_prefix() -> list[str]:
    """`unshare -n` runs a command with no network interface but loopback (root only)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    pytest.skip("cannot create a network namespace here")


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, tiny_bert):
    project = make_project(tmp_path_factory.mktemp("wandb") / "project", tiny_bert, logging__wandb="offline")
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    outputs = []
    for stage in ("prepare", "baseline", "finetune", "evaluate"):
        result = subprocess.run([*no_network_prefix(), sys.executable, "-m", f"stages.{stage}"], cwd=project,
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    return project, "\n".join(outputs)


def test_wandb_offline_writes_local_runs_without_network(offline_run):
    project, _ = offline_run
    runs = sorted((project / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # the training run and the evaluation run with the bar chart
    assert all(list(r.glob("run-*.wandb")) for r in runs)


def test_dvclive_logs_curves_per_epoch(offline_run):
    project, _ = offline_run
    f1 = pd.read_csv(project / "dvclive" / "plots" / "metrics" / "eval" / "f1.tsv", sep="\t")
    assert len(f1) == 2 and list(f1.columns) == ["step", "f1"]  # one row per epoch
    loss = pd.read_csv(project / "dvclive" / "plots" / "metrics" / "loss.tsv", sep="\t")
    assert len(loss) >= 1 and loss["loss"].gt(0).all()


def test_stage_summaries_are_one_line_each(offline_run):
    _, output = offline_run
    for stage in ("prepare", "baseline", "finetune", "evaluate"):
        assert sum(line.startswith(f"{stage}: ") for line in output.splitlines()) == 1
    assert "Warning" not in output and "Traceback" not in output


def test_wandb_online_without_key_fails_fast(tmp_path, tiny_bert):
    project = make_project(tmp_path / "project", tiny_bert, logging__wandb="online")
    run([sys.executable, "-m", "stages.prepare"], cwd=project)
    env = {key: value for key, value in os.environ.items() if key != "WANDB_API_KEY"}
    result = subprocess.run([sys.executable, "-m", "stages.finetune"], cwd=project, capture_output=True,
                            text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("finetune: error: logging.wandb is online but WANDB_API_KEY is not set")
