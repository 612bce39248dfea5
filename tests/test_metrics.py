"""mqp.metrics and mqp.reports, and the reports they make: base.json, zeroshot.json and lora.json
in metrics/detail/ share validation, test (with 95% intervals and confusion counts) and threshold;
lora.json adds vs_base and vs_zeroshot, whose paired counts agree with the three predictions.csv
files; `dvc metrics show` prints each report's headline, metrics/*.json."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers import dvc, read_json
from mqp import paths
from mqp.metrics import best_threshold, classification_metrics, compare, headline, model_report, p_value_text, summary_line
from mqp.reports import read_predictions, write_test_results

METRIC_KEYS = {"accuracy", "f1", "precision", "recall", "roc_auc", "loss", "n", "tp", "fp", "fn", "tn"}
INTERVAL_KEYS = {f"{metric}_ci_{end}" for metric in ("accuracy", "f1", "roc_auc") for end in ("low", "high")}
COMPARISON_KEYS = {"accuracy_diff", "diff_ci_low", "diff_ci_high", "mcnemar_p", "this_only", "other_only", "n"}
MODELS = {"base": (paths.BASE_REPORT, paths.BASE_RESULTS), "zeroshot": (paths.ZEROSHOT_REPORT, paths.ZEROSHOT_RESULTS),
          "lora": (paths.LORA_REPORT, paths.LORA_RESULTS)}
HEADLINES = {"base": paths.BASE_METRICS, "zeroshot": paths.ZEROSHOT_METRICS, "lora": paths.LORA_METRICS}

LABELS = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 0])
PROBS = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.1, 0.7, 0.2, 0.55, 0.45])


# --- mqp.metrics ------------------------------------------------------------------------------


def test_classification_metrics_and_confusion_counts():
    metrics = classification_metrics(LABELS, PROBS, threshold=0.5)
    assert set(metrics) == METRIC_KEYS
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (4, 1, 1, 4)
    assert metrics["n"] == 10 and metrics["accuracy"] == 0.8
    assert metrics["precision"] == 0.8 and metrics["recall"] == 0.8 and metrics["f1"] == 0.8
    assert classification_metrics(LABELS, PROBS, threshold=0.25)["fp"] == 3  # the threshold is used


@pytest.fixture(scope="module")
def report() -> dict:
    """One model's report, computed once; its intervals come from mqp.stats (test_stats.py)."""
    splits = {"validation": pd.DataFrame({"label": LABELS[:6]}), "test": pd.DataFrame({"label": LABELS})}
    return model_report(splits, {"validation": PROBS[:6], "test": PROBS}, 0.5)


def test_model_report_has_validation_test_and_threshold(report):
    assert set(report) == {"validation", "test", "threshold"} and report["threshold"] == 0.5
    assert report["validation"] == classification_metrics(LABELS[:6], PROBS[:6], 0.5)
    assert set(report["test"]) == METRIC_KEYS | INTERVAL_KEYS


def test_test_metrics_carry_95_percent_intervals(report):
    metrics = report["test"]
    assert {k: v for k, v in metrics.items() if k in METRIC_KEYS} == classification_metrics(LABELS, PROBS, 0.5)
    for key in ("accuracy", "f1", "roc_auc"):
        assert 0 <= metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"] <= 1
        assert metrics[f"{key}_ci_low"] < metrics[f"{key}_ci_high"]


def test_compare_counts_the_discordant_pairs():
    this = (PROBS >= 0.5).astype(int)  # right on 8 of 10
    other = np.where(np.arange(10) < 5, LABELS, 1 - LABELS)  # right on the first 5 only
    result = compare(LABELS, this, other)
    assert set(result) == COMPARISON_KEYS
    right_this, right_other = this == LABELS, other == LABELS
    assert result["this_only"] == int((right_this & ~right_other).sum()) == 5
    assert result["other_only"] == int((~right_this & right_other).sum()) == 2
    assert result["accuracy_diff"] == pytest.approx(0.3) and result["n"] == 10
    assert result["diff_ci_low"] <= 0.3 <= result["diff_ci_high"] and 0 < result["mcnemar_p"] <= 1
    assert compare(LABELS, this, this)["mcnemar_p"] == 1.0


def test_best_threshold_maximises_accuracy():
    threshold = best_threshold(LABELS, PROBS)
    best = max(((PROBS >= t) == LABELS).mean() for t in np.linspace(0.01, 0.99, 99))
    assert classification_metrics(LABELS, PROBS, threshold)["accuracy"] == best


def test_summary_line(report):
    line = summary_line("evaluate", report, "cpu", reference={"test": {"accuracy": 0.5}})
    assert line.startswith("evaluate: test accuracy 0.8000 [") and "(base 0.5000), F1 0.8000" in line
    assert line.endswith("(n=10, cpu)")


def test_write_test_results_and_read_predictions(tmp_path, monkeypatch, report):
    monkeypatch.chdir(tmp_path)
    test = pd.DataFrame({"question_1": [f"q{i}" for i in range(10)], "question_2": ["NaN"] * 10, "label": LABELS})
    metrics = report["test"]
    write_test_results(paths.LORA_RESULTS, test, PROBS, 0.5, metrics)
    predictions = read_predictions(paths.LORA_RESULTS)
    assert predictions["question_2"].tolist() == ["NaN"] * 10  # text, never a missing value
    assert predictions["predicted"].tolist() == (PROBS >= 0.5).astype(int).tolist()
    bars = pd.read_csv(paths.LORA_RESULTS / paths.TEST_METRICS_CSV)
    assert dict(zip(bars["metric"], bars["value"])) == {k: metrics[k] for k in ("accuracy", "f1", "precision", "recall")}
    assert {paths.ROC_CSV, paths.PRECISION_RECALL_CSV} <= {p.name for p in paths.LORA_RESULTS.iterdir()}


# --- the metrics files of a trained project ------------------------------------------------------


@pytest.mark.slow
def test_metrics_files_share_one_schema(trained_project):
    project, _ = trained_project
    for name, (metrics_file, results) in MODELS.items():
        metrics = read_json(project / metrics_file)
        assert {"validation", "test", "threshold"} <= set(metrics), name
        assert set(metrics["validation"]) == METRIC_KEYS
        assert set(metrics["test"]) == METRIC_KEYS | INTERVAL_KEYS
        # test's counts are those of predictions.csv at the file's threshold
        predictions = read_predictions(project / results)
        assert len(predictions) == metrics["test"]["n"]
        assert predictions["prob_similar"].between(0, 1).all()
        assert (predictions["predicted"] == (predictions["prob_similar"] >= metrics["threshold"])).all()
        tp = int(((predictions["predicted"] == 1) & (predictions["label"] == 1)).sum())
        tn = int(((predictions["predicted"] == 0) & (predictions["label"] == 0)).sum())
        assert (metrics["test"]["tp"], metrics["test"]["tn"]) == (tp, tn)
    assert set(read_json(project / paths.LORA_REPORT)) == {"validation", "test", "threshold", "vs_base", "vs_zeroshot"}


@pytest.mark.slow
def test_paired_counts_agree_with_the_predictions(trained_project):
    project, _ = trained_project
    lora = read_json(project / paths.LORA_REPORT)
    predictions = {name: read_predictions(project / results) for name, (_, results) in MODELS.items()}
    right = {name: table["predicted"] == table["label"] for name, table in predictions.items()}
    for other in ("base", "zeroshot"):
        assert predictions[other][["question_1", "question_2", "label"]].equals(
            predictions["lora"][["question_1", "question_2", "label"]])  # the same test pairs, in the same order
        comparison = lora[f"vs_{other}"]
        assert set(comparison) == COMPARISON_KEYS
        assert comparison["this_only"] == int((right["lora"] & ~right[other]).sum())
        assert comparison["other_only"] == int((~right["lora"] & right[other]).sum())
        assert comparison["n"] == len(predictions["lora"])
        assert comparison["accuracy_diff"] == pytest.approx(right["lora"].mean() - right[other].mean(), abs=1e-6)


@pytest.mark.slow
def test_metrics_show_is_the_headline_of_each_report(trained_project):
    """`dvc metrics show` lists each model's headline (accuracy with its interval, F1, ROC AUC, n,
    the paired results as text) and the data's counts, in under 120 columns; the reports hold the rest."""
    project, _ = trained_project
    shown = json.loads(dvc("metrics", "show", "--json", cwd=project).stdout)
    files = {path: value["data"] for path, value in shown[""]["data"].items()}  # "" is the workspace
    assert set(files) == {str(paths.DATA_METRICS), str(paths.RETRIEVAL_METRICS), *(str(m) for m in HEADLINES.values())}
    for name, (report_path, _) in MODELS.items():
        report = read_json(project / report_path)
        lean = files[str(HEADLINES[name])]
        assert lean == headline(report), name
        test = report["test"]
        assert lean["acc_ci"] == f"{test['accuracy_ci_low']:.3f}-{test['accuracy_ci_high']:.3f}"
    data = read_json(project / paths.DATA_REPORT)
    assert files[str(paths.DATA_METRICS)] == {"n": sum(data[name]["n"] for name in paths.SPLITS), "n_dropped": 0}
    table = dvc("metrics", "show", cwd=project).stdout
    assert max(len(line) for line in table.splitlines()) <= 120, table
    lora = read_json(project / paths.LORA_REPORT)
    lora_row, = [line for line in table.splitlines() if line.startswith(str(paths.LORA_METRICS))]
    for other in ("base", "zeroshot"):  # the p-values as text: dvc's rounding cannot make them 0.0
        assert f"p={p_value_text(lora[f'vs_{other}']['mcnemar_p'])}" in lora_row


@pytest.mark.parametrize(("p", "text"), [(0.57, "0.570"), (0.0123, "0.012"), (0.001, "0.001"), (2.48208e-07, "2e-07"),
                                         (6.69673e-17, "7e-17"), (0.0, "0e+00")])
def test_p_values_print_as_text_that_dvc_cannot_round_to_zero(p, text):
    assert p_value_text(p) == text


def test_headline_of_a_report():
    report = {"test": {"n": 610, "accuracy": 0.862295, "accuracy_ci_low": 0.832674, "accuracy_ci_high": 0.887382,
                       "f1": 0.862295, "roc_auc": 0.92876, "tp": 263},
              "validation": {"accuracy": 0.86}, "threshold": 0.5,
              "vs_zeroshot": {"accuracy_diff": 0.091803, "mcnemar_p": 2.48208e-07, "this_only": 87}}
    assert headline(report) == {"n": 610, "acc": 0.8623, "acc_ci": "0.833-0.887", "f1": 0.8623, "auc": 0.9288,
                                "vs_zeroshot": "+9.2 p=2e-07"}
