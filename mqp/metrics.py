"""Metrics (scikit-learn) of one model on one split, with 95% intervals for the test split, and
paired comparisons of two models on the same pairs (mqp.stats)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

from mqp.stats import bootstrap_ci, confusion_counts, f1, paired_comparison, proportion_ci, roc_auc

DIGITS = 6  # rounded so the JSON is byte-stable across runs
BOOTSTRAP_SEED = 0  # one fixed seed: the same predictions always give the same intervals


def predicted_labels(probs, threshold: float) -> np.ndarray:
    return (np.asarray(probs) >= threshold).astype(int)


def classification_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """accuracy, f1, precision, recall, roc_auc, loss (log loss), n, and the confusion counts
    (tp, fp, fn, tn: pooled figures over folds are computed from them exactly)."""
    labels = np.asarray(labels, dtype=int)
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    predicted = predicted_labels(probs, threshold)
    values = {
        "accuracy": accuracy_score(labels, predicted),
        "f1": f1_score(labels, predicted, zero_division=0),
        "precision": precision_score(labels, predicted, zero_division=0),
        "recall": recall_score(labels, predicted, zero_division=0),
        "roc_auc": roc_auc_score(labels, probs) if len(np.unique(labels)) == 2 else float("nan"),
        "loss": log_loss(labels, probs, labels=[0, 1]),
    }
    rounded = {key: round(float(value), DIGITS) for key, value in values.items()}
    return {**rounded, "n": int(len(labels)), **confusion_counts(labels, predicted)}


def metrics_with_intervals(labels, probs, threshold: float) -> dict:
    """classification_metrics plus 95% intervals: Wilson for accuracy, a seeded bootstrap over
    pairs for F1 and ROC AUC."""
    metrics = classification_metrics(labels, probs, threshold)
    labels, probs = np.asarray(labels, dtype=int), np.asarray(probs, dtype=np.float64)
    intervals = {
        "accuracy": proportion_ci(metrics["tp"] + metrics["tn"], metrics["n"]),
        "f1": bootstrap_ci(f1, labels, predicted_labels(probs, threshold), seed=BOOTSTRAP_SEED),
        "roc_auc": bootstrap_ci(roc_auc, labels, probs, seed=BOOTSTRAP_SEED),
    }
    for key, (low, high) in intervals.items():
        metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = round(float(low), DIGITS), round(float(high), DIGITS)
    return metrics


def model_report(splits: dict, probs: dict[str, np.ndarray], threshold: float) -> dict:
    """One model's metrics file: validation metrics, and test metrics with their intervals."""
    report = {name: classification_metrics(splits[name]["label"], probs[name], threshold)
              for name in probs if name != "test"}
    report["test"] = metrics_with_intervals(splits["test"]["label"], probs["test"], threshold)
    report["threshold"] = round(float(threshold), DIGITS)
    return report


def compare(labels, predicted, other_predicted) -> dict:
    """This model against another on the same pairs: accuracy difference, its 95% CI, the exact
    McNemar p-value and the two discordant counts (this_only: pairs only this model got right)."""
    labels = np.asarray(labels, dtype=int)
    return paired_comparison(np.asarray(predicted) == labels, np.asarray(other_predicted) == labels)


def best_threshold(labels, probs) -> float:
    """The cut on validation probabilities with the highest accuracy (midpoints between values)."""
    values = np.unique(probs)
    candidates = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2]) if len(values) > 1 else np.array([0.5])
    accuracy = [(predicted_labels(probs, t) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def summary_line(stage: str, metrics: dict, device: str, reference: dict | None = None, name: str = "base") -> str:
    """e.g. `evaluate: test accuracy 0.8400 [0.80, 0.88] (base 0.5000), F1 0.8500, ROC AUC 0.9 (n=306, cpu)`."""
    test = metrics["test"]
    interval = f" [{test['accuracy_ci_low']:.4f}, {test['accuracy_ci_high']:.4f}]" if "accuracy_ci_low" in test else ""
    versus = f" ({name} {reference['test']['accuracy']:.4f})" if reference else ""
    return (f"{stage}: test accuracy {test['accuracy']:.4f}{interval}{versus}, F1 {test['f1']:.4f}, "
            f"ROC AUC {test['roc_auc']:.4f} (n={test['n']}, {device})")


def p_value_text(p: float) -> str:
    """A p-value that dvc's 5-decimal rounding cannot turn into 0.0: 0.570, 0.012, 2e-07."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"


def paired_text(comparison: dict) -> str:
    """e.g. '+9.2 p=2e-07': the accuracy difference in points and its exact McNemar p."""
    return f"{100 * comparison['accuracy_diff']:+.1f} p={p_value_text(comparison['mcnemar_p'])}"


def points_text(diff: float, low: float, high: float) -> str:
    """e.g. '+1.2 points [-0.3, +2.6]': an accuracy difference and its 95% CI, in points."""
    return f"{100 * diff:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]"


def headline(report: dict) -> dict:
    """What `dvc metrics show` prints of one model's report: test accuracy with its 95% CI, F1, ROC
    AUC, n, and each paired comparison as text. Short keys, shared by every model's file, keep the
    table under 120 columns; the report holds the rest."""
    test = report["test"]
    lean = {"n": test["n"], "acc": round(test["accuracy"], 4),
            "acc_ci": f"{test['accuracy_ci_low']:.3f}-{test['accuracy_ci_high']:.3f}",
            "f1": round(test["f1"], 4), "auc": round(test["roc_auc"], 4)}
    lean.update({key: paired_text(value) for key, value in report.items() if key.startswith("vs_")})
    return lean
