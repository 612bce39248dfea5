"""The DVC workflows users run, for real, in a scratch git repo with a tiny model."""

import csv
import io
import json

import pandas as pd
import pytest

from conftest import dvc, make_project, read_json, run

METRIC_KEYS = {"accuracy", "f1", "precision", "recall", "roc_auc", "loss", "n"}


def test_dvc_repro_prepare_writes_grouped_splits(tmp_path):
    project = make_project(tmp_path / "project")
    out = dvc("repro", "prepare", cwd=project).stdout
    assert "prepare: 96 valid pairs (grouped split)" in out
    splits = {name: pd.read_csv(project / "data" / "prepared" / f"{name}.csv") for name in ("train", "validation", "test")}
    assert sum(len(part) for part in splits.values()) == 96
    questions = [set(part["question_1"]) for part in splits.values()]
    assert not (questions[0] & questions[1] or questions[0] & questions[2] or questions[1] & questions[2])
    data = read_json(project / "metrics" / "data.json")
    assert data["train"]["n"] == len(splits["train"]) and data["rows_read"] == 96
    assert run(["git", "check-ignore", "data/prepared"], cwd=project).returncode == 0  # DVC's, not git's


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, tiny_bert):
    """`dvc repro` from scratch on the tiny BERT, committed, as users do before experimenting."""
    project = make_project(tmp_path_factory.mktemp("pipeline") / "project", tiny_bert)
    first = dvc("repro", cwd=project).stdout
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "r=8 run"], cwd=project)
    return project, first


def test_repro_runs_all_stages_then_nothing(trained_project):
    project, first = trained_project
    for stage in ("prepare", "baseline", "finetune", "evaluate"):
        assert f"Running stage '{stage}'" in first
    assert (project / "models" / "adapter" / "adapter_model.safetensors").exists()
    config = read_json(project / "models" / "adapter" / "adapter_config.json")
    assert config["r"] == 8 and config["lora_alpha"] == 32 and "classifier" in config["modules_to_save"]
    again = dvc("repro", cwd=project).stdout
    assert "Running stage" not in again
    assert "up to date" in again


def test_base_and_lora_metrics_share_one_schema(trained_project):
    project, _ = trained_project
    base = read_json(project / "metrics" / "base.json")
    lora = read_json(project / "metrics" / "lora.json")
    for metrics in (base, lora):
        assert set(metrics) == {"validation", "test"}
        assert set(metrics["test"]) == METRIC_KEYS
    predictions = pd.read_csv(project / "results" / "lora" / "predictions.csv")
    assert len(predictions) == lora["test"]["n"]
    assert predictions["prob_similar"].between(0, 1).all()
    train = read_json(project / "metrics" / "train.json")
    assert train["trainable_params"] > 0 and 0 < train["trainable_percent"] < 100
    assert train["best_epoch"] in (1, 2)


def test_metrics_show_lines_up_base_and_lora(trained_project):
    project, _ = trained_project
    shown = json.loads(dvc("metrics", "show", "--json", cwd=project).stdout)
    files = shown[""]["data"]  # "" is the workspace
    assert {"metrics/base.json", "metrics/lora.json", "metrics/train.json", "metrics/data.json"} <= set(files)
    table = dvc("metrics", "show", cwd=project).stdout
    assert "metrics/base.json" in table and "metrics/lora.json" in table and "test.accuracy" in table


def test_exp_run_rank_reruns_only_finetune_and_evaluate(trained_project):
    project, _ = trained_project
    before = read_json(project / "metrics" / "lora.json")
    out = dvc("exp", "run", "-n", "rank4", "-S", "lora.r=4", cwd=project).stdout
    assert "Stage 'prepare' didn't change, skipping" in out
    assert "Stage 'baseline' didn't change, skipping" in out
    assert "Running stage 'finetune'" in out and "Running stage 'evaluate'" in out
    after = read_json(project / "metrics" / "lora.json")
    assert read_json(project / "models" / "adapter" / "adapter_config.json")["r"] == 4
    assert after["test"]["loss"] != before["test"]["loss"]
    # dvc exp show lists both runs with params and metrics.
    rows = list(csv.DictReader(io.StringIO(dvc("exp", "show", "--csv", cwd=project).stdout)))
    by_name = {row["Experiment"] or row["rev"]: row for row in rows}
    assert by_name["rank4"]["lora.r"] == "4" and by_name["workspace"]["lora.r"] == "4"
    assert float(by_name["rank4"]["metrics/lora.json:test.loss"]) == after["test"]["loss"]
    assert float(by_name["rank4"]["metrics/base.json:test.accuracy"]) >= 0


def test_metrics_diff_base_model_against_lora(trained_project):
    """The README's idiom: an untrained run (epochs=0) is the base model, diffed against LoRA."""
    project, _ = trained_project
    dvc("exp", "run", "-n", "base-model", "-S", "train.epochs=0", "-S", "lora.r=8", cwd=project)
    base = read_json(project / "metrics" / "base.json")
    untrained = read_json(project / "metrics" / "lora.json")
    # LoRA starts at zero and the head is seeded like baseline's: the exact base model.
    assert untrained["test"] == base["test"]
    dvc("exp", "run", "-n", "lora", "-S", "train.epochs=2", cwd=project)
    diff = json.loads(dvc("metrics", "diff", "base-model", "lora", "--targets", "metrics/lora.json", "--all", "--json", cwd=project).stdout)
    changes = diff["metrics/lora.json"]
    for key in ("accuracy", "f1", "precision", "recall"):
        assert f"test.{key}" in changes
    assert changes["test.loss"]["old"] == base["test"]["loss"]
    text = dvc("metrics", "diff", "base-model", "lora", "--targets", "metrics/lora.json", "--all", cwd=project).stdout
    assert "test.accuracy" in text and "Change" in text


def test_plots_show_renders_every_declared_plot_offline(trained_project):
    project, _ = trained_project
    shown = json.loads(dvc("plots", "show", "--json", cwd=project).stdout)
    assert not shown.get("errors"), shown.get("errors")
    expected = {
        "Training and validation loss", "Validation F1 per epoch", "Test metrics, base vs zero-shot vs LoRA",
        "ROC curve (test)", "Precision-recall curve (test)",
        "results/base/predictions.csv", "results/lora/predictions.csv",
    }
    assert expected <= set(shown["data"])
    for plot_id in expected:
        assert shown["data"][plot_id][0]["type"] == "vega"
    dvc("plots", "show", cwd=project)
    page = (project / "dvc_plots" / "index.html").read_text()
    assert "<script src=\"http" not in page and "cdn.jsdelivr" not in page
    assert page.count("vegaEmbed(") >= len(expected)
