"""`dvc repro` for real, in a scratch git repo with the tiny BERT: every stage runs, then nothing is
left to do; the adapter and the splits are DVC's outputs. (The experiments users run on top of it:
test_untrained.py, test_scaling.py, test_kfold.py.)"""

import json

import pytest

from helpers import STAGES, dvc, project_params, read_json, run
from mqp import paths
from mqp.paths import HEAD_FILE
from mqp.splits import load_splits

pytestmark = pytest.mark.slow


def test_repro_runs_all_stages_then_nothing(trained_project):
    project, first = trained_project
    for name in STAGES:
        assert f"Running stage '{name}'" in first
    params = project_params(project)
    adapter = project / paths.ADAPTER_DIR
    config = read_json(adapter / "adapter_config.json")
    assert (config["r"], config["lora_alpha"]) == (params.lora.r, params.lora.alpha)
    assert not list(adapter.glob("*.bin"))  # safetensors only
    if params.model.architecture == "cross-encoder":
        assert config["task_type"] == "SEQ_CLS" and "classifier" in config["modules_to_save"]
    else:  # the encoder's adapter, and the similarity head beside it
        assert config["task_type"] == "FEATURE_EXTRACTION" and (adapter / HEAD_FILE).exists()
    train = read_json(project / paths.TRAIN_REPORT)
    assert train["epochs"] == params.train.epochs and 1 <= train["best_epoch"] <= params.train.epochs
    assert train["trainable_params"] > 0 and 0 < train["trainable_percent"] < 100
    again = dvc("repro", cwd=project).stdout
    assert "Running stage" not in again and "up to date" in again
    assert json.loads(dvc("status", "--json", cwd=project).stdout) == {}


def test_prepared_splits_are_dvc_outputs(trained_project, monkeypatch):
    project, _ = trained_project
    monkeypatch.chdir(project)
    splits = load_splits()
    data = read_json(paths.DATA_REPORT)
    assert {name: data[name]["n"] for name in paths.SPLITS} == {name: len(part) for name, part in splits.items()}
    assert data["rows_read"] == sum(len(part) for part in splits.values())
    # DVC's outputs, not git's: ignored by git, listed in dvc.lock.
    for output in (paths.PREPARED_DIR, paths.ADAPTER_DIR, paths.LORA_RESULTS):
        assert run(["git", "check-ignore", "-q", str(output)], cwd=project, check=False).returncode == 0, output
    lock = (project / "dvc.lock").read_text()
    assert all(f"path: {output}\n" in lock for output in (paths.PREPARED_DIR, paths.ADAPTER_DIR, paths.LORA_REPORT))
