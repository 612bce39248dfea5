"""A model's test outputs for dvc plots: predictions, ROC and precision-recall curves, bar values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from mqp.files import atomic_dir
from mqp.metrics import DIGITS, predicted_labels
from mqp.paths import PRECISION_RECALL_CSV, PREDICTIONS_CSV, ROC_CSV, TEST_METRICS_CSV, VALIDATION_PREDICTIONS_CSV

BAR_METRICS = ("accuracy", "f1", "precision", "recall")  # the models' comparison chart


def predictions_table(pairs: pd.DataFrame, probs: np.ndarray, threshold: float) -> pd.DataFrame:
    return pd.DataFrame({
        "question_1": pairs["question_1"],
        "question_2": pairs["question_2"],
        "label": pairs["label"],
        "prob_similar": np.round(probs, DIGITS),
        "predicted": predicted_labels(probs, threshold),
    })


def write_test_results(results_dir: Path, test: pd.DataFrame, probs: np.ndarray, threshold: float,
                       test_metrics: dict, validation: tuple[pd.DataFrame, np.ndarray] | None = None) -> None:
    """Replace results_dir with this model's test predictions and curves, in one rename; with
    validation (its pairs and probabilities), their predictions too."""
    with atomic_dir(results_dir) as scratch:
        predictions_table(test, probs, threshold).to_csv(scratch / PREDICTIONS_CSV, index=False)
        if validation is not None:
            predictions_table(*validation, threshold).to_csv(scratch / VALIDATION_PREDICTIONS_CSV, index=False)
        fpr, tpr, _ = roc_curve(test["label"], probs)
        pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(DIGITS).to_csv(scratch / ROC_CSV, index=False)
        precision, recall, _ = precision_recall_curve(test["label"], probs)
        pd.DataFrame({"recall": recall, "precision": precision}).round(DIGITS).to_csv(
            scratch / PRECISION_RECALL_CSV, index=False)
        pd.DataFrame({"metric": list(BAR_METRICS), "value": [test_metrics[m] for m in BAR_METRICS]}).to_csv(
            scratch / TEST_METRICS_CSV, index=False)


def read_predictions(results_dir: Path) -> pd.DataFrame:
    return parse_predictions(results_dir / PREDICTIONS_CSV)


def parse_predictions(source) -> pd.DataFrame:
    """A predictions.csv, from a path or an open file (a past run's, opened by mqp.runs)."""
    return pd.read_csv(source, dtype={"question_1": str, "question_2": str}, keep_default_na=False)
