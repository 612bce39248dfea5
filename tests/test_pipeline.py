"""The DVC workflows users run, for real, in scratch git repos with the tiny BERT: `dvc repro` (then
nothing to do), `dvc exp run -S lora.r=4` (only finetune and evaluate rerun), `dvc exp show`, and
the untrained run (train.epochs=0) that is the base model, compared with `dvc metrics diff`."""

import csv
import io
import json

import pytest

from helpers import STAGES, copy_project, dvc, project_params, read_json, run
from mqp import paths
from mqp.splits import load_splits

pytestmark = pytest.mark.slow


def test_repro_runs_all_stages_then_nothing(trained_project):
    project, first = trained_project
    for name in STAGES:
        assert f"Running stage '{name}'" in first
    params = project_params(project)
    config = read_json(project / paths.ADAPTER_DIR / "adapter_config.json")
    assert (config["r"], config["lora_alpha"]) == (params.lora.r, params.lora.alpha)
    assert "classifier" in config["modules_to_save"]
    again = dvc("repro", cwd=project).stdout
    assert "Running stage" not in again and "up to date" in again
    assert json.loads(dvc("status", "--json", cwd=project).stdout) == {}


def test_prepared_splits_are_dvc_outputs(trained_project, monkeypatch):
    project, _ = trained_project
    monkeypatch.chdir(project)
    splits = load_splits()
    data = read_json(paths.DATA_METRICS)
    assert {name: data[name]["n"] for name in paths.SPLITS} == {name: len(part) for name, part in splits.items()}
    assert data["rows_read"] == sum(len(part) for part in splits.values())
    # DVC's outputs, not git's: ignored by git, listed in dvc.lock.
    for output in (paths.PREPARED_DIR, paths.ADAPTER_DIR, paths.LORA_RESULTS):
        assert run(["git", "check-ignore", "-q", str(output)], cwd=project, check=False).returncode == 0, output
    lock = (project / "dvc.lock").read_text()
    assert all(f"path: {output}\n" in lock for output in (paths.PREPARED_DIR, paths.ADAPTER_DIR, paths.LORA_METRICS))


def test_exp_run_rank_reruns_only_finetune_and_evaluate(trained_project, tmp_path):
    project = copy_project(trained_project[0], tmp_path / "project")
    before = read_json(project / paths.LORA_METRICS)
    out = dvc("exp", "run", "-n", "rank4", "-S", "lora.r=4", cwd=project).stdout
    for name in ("prepare", "baseline", "zeroshot"):
        assert f"Stage '{name}' didn't change, skipping" in out
    assert "Running stage 'finetune'" in out and "Running stage 'evaluate'" in out
    after = read_json(project / paths.LORA_METRICS)
    assert read_json(project / paths.ADAPTER_DIR / "adapter_config.json")["r"] == 4
    assert after["test"]["loss"] != before["test"]["loss"]
    # dvc exp show lists the run with its params and metrics.
    rows = list(csv.DictReader(io.StringIO(dvc("exp", "show", "--csv", cwd=project).stdout)))
    by_name = {row["Experiment"] or row["rev"]: row for row in rows}
    assert by_name["rank4"]["lora.r"] == "4" and by_name["workspace"]["lora.r"] == "4"
    assert float(by_name["rank4"][f"{paths.LORA_METRICS}:test.loss"]) == after["test"]["loss"]
    assert float(by_name["rank4"][f"{paths.BASE_METRICS}:test.accuracy"]) == read_json(project / paths.BASE_METRICS)["test"]["accuracy"]


def test_untrained_adapter_is_the_base_model(untrained_project):
    """train.epochs=0: LoRA starts at zero and the head is seeded like baseline's, so lora.json's
    test metrics are exactly base.json's (the README's `dvc metrics diff` idiom rests on it)."""
    base = read_json(untrained_project / paths.BASE_METRICS)
    untrained = read_json(untrained_project / paths.LORA_METRICS)
    assert read_json(untrained_project / paths.TRAIN_METRICS)["epochs"] == 0
    assert untrained["test"] == base["test"] and untrained["validation"] == base["validation"]
    assert (untrained["vs_base"]["this_only"], untrained["vs_base"]["other_only"]) == (0, 0)


def test_metrics_diff_base_model_against_lora(untrained_project, trained_project):
    """The untrained run (the base-model experiment) against the trained one (HEAD)."""
    base = read_json(untrained_project / paths.BASE_METRICS)
    trained = read_json(trained_project[0] / paths.LORA_METRICS)
    target = str(paths.LORA_METRICS)
    diff = json.loads(dvc("metrics", "diff", "base-model", "HEAD", "--targets", target, "--all", "--json",
                          cwd=untrained_project).stdout)
    changes = diff[target]
    for key in ("accuracy", "f1", "precision", "recall", "accuracy_ci_low", "tp"):
        assert f"test.{key}" in changes
    assert changes["test.loss"]["old"] == base["test"]["loss"]
    assert changes["test.loss"]["new"] == trained["test"]["loss"]
    text = dvc("metrics", "diff", "base-model", "HEAD", "--targets", target, "--all", cwd=untrained_project).stdout
    assert "test.accuracy" in text and "Change" in text
