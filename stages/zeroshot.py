"""zeroshot: cosine similarity of the two questions' sentence embeddings, no training.

The honest bar for LoRA: a sentence-embedding model already separates similar pairs. The cosine
is turned into a probability by a 1-D logistic fit, and the decision threshold is the one that
maximises validation accuracy; the test split is only scored.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression

from stages.data import load_splits
from stages.errors import cli
from stages.io import write_json
from stages.metrics import evaluate_splits, summary_line
from stages.modeling import embed, load_encoder, load_tokenizer, quiet_libraries
from stages.params import load_params
from stages.paths import RESULTS_DIR, ZEROSHOT_METRICS


def cosine(encoder, tokenizer, table, max_length: int, batch_size: int) -> np.ndarray:
    first = embed(encoder, tokenizer, table["question_1"], max_length, batch_size)
    second = embed(encoder, tokenizer, table["question_2"], max_length, batch_size)
    return (first * second).sum(axis=1).astype(np.float64)


def best_threshold(labels, probs) -> float:
    """The cut on validation probabilities with the highest accuracy (midpoints between values)."""
    values = np.unique(probs)
    candidates = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2]) if len(values) > 1 else np.array([0.5])
    accuracy = [((probs >= t).astype(int) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


@cli("zeroshot")
def main() -> None:
    quiet_libraries()
    params = load_params()
    splits = load_splits()
    tokenizer = load_tokenizer(params.model)
    encoder = load_encoder(params.model)
    sims = {name: cosine(encoder, tokenizer, splits[name], params.model.max_length, params.eval.batch_size)
            for name in ("validation", "test")}
    labels = splits["validation"]["label"].to_numpy()
    calibration = LogisticRegression().fit(sims["validation"].reshape(-1, 1), labels)
    probs = {name: calibration.predict_proba(sim.reshape(-1, 1))[:, 1] for name, sim in sims.items()}
    threshold = best_threshold(labels, probs["validation"])
    metrics = evaluate_splits(splits, probs, threshold, RESULTS_DIR / "zeroshot")
    metrics["threshold"] = round(threshold, 6)
    write_json(ZEROSHOT_METRICS, metrics)
    print(summary_line("zeroshot", metrics) + f"; threshold {threshold:.4f} chosen on validation")


if __name__ == "__main__":
    main()
