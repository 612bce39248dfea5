"""Metrics (scikit-learn) and the per-model evaluation outputs that dvc plots draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from stages.io import atomic_dir

DIGITS = 6  # rounded so the JSON is byte-stable across runs
BAR_METRICS = ("accuracy", "f1", "precision", "recall")  # the models' comparison chart


def classification_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """accuracy, f1, precision, recall, roc_auc, loss (log loss), n: one schema for every model."""
    labels = np.asarray(labels, dtype=int)
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    predicted = (probs >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    values = {
        "accuracy": accuracy_score(labels, predicted),
        "f1": f1_score(labels, predicted, zero_division=0),
        "precision": precision_score(labels, predicted, zero_division=0),
        "recall": recall_score(labels, predicted, zero_division=0),
        "roc_auc": roc_auc_score(labels, probs) if both_classes else float("nan"),
        "loss": log_loss(labels, probs, labels=[0, 1]),
    }
    rounded = {key: round(float(value), DIGITS) for key, value in values.items()}
    return {**rounded, "n": int(len(labels))}


def evaluate_splits(splits: dict[str, pd.DataFrame], probs: dict[str, np.ndarray], threshold: float,
                    results_dir: Path) -> dict:
    """Metrics per split, plus test predictions, ROC and precision-recall curves under results_dir."""
    report = {name: classification_metrics(splits[name]["label"], probs[name], threshold) for name in probs}
    test, test_probs = splits["test"], probs["test"]
    with atomic_dir(results_dir) as scratch:
        pd.DataFrame({
            "question_1": test["question_1"],
            "question_2": test["question_2"],
            "label": test["label"],
            "prob_similar": np.round(test_probs, DIGITS),
            "predicted": (test_probs >= threshold).astype(int),
        }).to_csv(scratch / "predictions.csv", index=False)
        fpr, tpr, _ = roc_curve(test["label"], test_probs)
        pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(DIGITS).to_csv(scratch / "roc.csv", index=False)
        pd.DataFrame({"metric": list(BAR_METRICS), "value": [report["test"][m] for m in BAR_METRICS]}).to_csv(
            scratch / "test_metrics.csv", index=False
        )
        precision, recall, _ = precision_recall_curve(test["label"], test_probs)
        pd.DataFrame({"recall": recall, "precision": precision}).round(DIGITS).to_csv(
            scratch / "precision_recall.csv", index=False
        )
    return report


def summary_line(stage: str, metrics: dict, reference: dict | None = None, name: str = "base") -> str:
    """e.g. `evaluate: test accuracy 0.8400 (base 0.5000), F1 0.8500`."""
    test = metrics["test"]
    versus = f" ({name} {reference['test']['accuracy']:.4f})" if reference else ""
    return f"{stage}: test accuracy {test['accuracy']:.4f}{versus}, F1 {test['f1']:.4f}, ROC AUC {test['roc_auc']:.4f} (n={test['n']})"
