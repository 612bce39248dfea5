"""The DVC workflows users run, for real, in scratch git repos with the tiny BERT: `dvc repro` (then
nothing to do), `dvc exp run -S lora.r=4` (only finetune and evaluate rerun), `dvc exp show`, and
the untrained run (train.epochs=0) that is the base model, for either architecture, compared with
`dvc metrics diff`."""

import csv
import io
import json

import pandas as pd
import pytest

from helpers import DEFAULT_ARCHITECTURE, PROJECT_OF, STAGES, copy_project, dvc, project_params, read_json, run, set_params
from mqp import paths
from mqp.lora import HEAD_FILE
from mqp.reports import read_predictions
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
    train = read_json(project / paths.TRAIN_METRICS)
    assert train["epochs"] == params.train.epochs and 1 <= train["best_epoch"] <= params.train.epochs
    assert train["trainable_params"] > 0 and 0 < train["trainable_percent"] < 100
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


@pytest.mark.parametrize("architecture", [pytest.param(arch, marks=pytest.mark.xdist_group(
    "trained" if arch == DEFAULT_ARCHITECTURE else arch)) for arch in PROJECT_OF])
def test_untrained_adapter_is_the_base_model(request, architecture, tmp_path, in_project):
    """train.epochs=0 saves LoRA at zero with the initial head (the cross-encoder's seeded like
    baseline's): lora.json's metrics are exactly base.json's, the README's `dvc metrics diff` idiom.
    params.yaml's architecture: `dvc exp run -S train.epochs=0` (untrained_project); the other: a
    copy of its project with finetune and evaluate run in this process."""
    if architecture == DEFAULT_ARCHITECTURE:
        project = request.getfixturevalue("untrained_project")
    else:
        from stages import evaluate, finetune

        project = in_project(copy_project(request.getfixturevalue(PROJECT_OF[architecture])[0], tmp_path / "project"))
        set_params(project, {"train.epochs": 0})
        finetune.main()
        evaluate.main()
    assert project_params(project).model.architecture == architecture
    assert read_json(project / paths.TRAIN_METRICS)["epochs"] == 0
    base, untrained = read_json(project / paths.BASE_METRICS), read_json(project / paths.LORA_METRICS)
    assert untrained["test"] == base["test"] and untrained["validation"] == base["validation"]
    assert (untrained["vs_base"]["this_only"], untrained["vs_base"]["other_only"]) == (0, 0)
    pd.testing.assert_frame_equal(read_predictions(project / paths.LORA_RESULTS),
                                  read_predictions(project / paths.BASE_RESULTS))


def test_metrics_diff_base_model_against_lora(untrained_project, trained_project):
    """`dvc exp run -n base-model -S train.epochs=0` against the trained run (HEAD)."""
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
