"""zeroshot: cosine similarity of the two questions' sentence embeddings, no training.

The honest bar for LoRA: a sentence-embedding model already separates similar pairs. The cosine
is turned into a probability by a 1-D logistic fit, and the decision threshold is the one that
maximises validation accuracy; the test split is only scored.
"""

from sklearn.linear_model import LogisticRegression

from mqp.cli import stage
from mqp.files import write_json
from mqp.encoding import cosine
from mqp.metrics import best_threshold, headline, model_report, summary_line
from mqp.models import device, load_encoder, load_tokenizer
from mqp.paths import ZEROSHOT_METRICS, ZEROSHOT_REPORT, ZEROSHOT_RESULTS
from mqp.reports import write_test_results
from mqp.splits import load_splits


@stage("zeroshot")
def main(params) -> None:
    splits = load_splits()
    tokenizer = load_tokenizer(params.model)
    encoder = load_encoder(params.model).to(device()).eval()
    sims = {name: cosine(encoder, tokenizer, splits[name]["question_1"], splits[name]["question_2"],
                         params.model.max_length, params.eval.batch_size, params.model.pooling)
            for name in ("validation", "test")}
    labels = splits["validation"]["label"].to_numpy()
    calibration = LogisticRegression().fit(sims["validation"].reshape(-1, 1), labels)
    probs = {name: calibration.predict_proba(sim.reshape(-1, 1))[:, 1] for name, sim in sims.items()}
    threshold = best_threshold(labels, probs["validation"])
    metrics = model_report(splits, probs, threshold)
    write_test_results(ZEROSHOT_RESULTS, splits["test"], probs["test"], threshold, metrics["test"])
    write_json(ZEROSHOT_REPORT, metrics)
    write_json(ZEROSHOT_METRICS, headline(metrics))
    print(summary(metrics, device().type))


def summary(metrics: dict, device: str) -> str:
    return summary_line("zeroshot", metrics, device) + f"; threshold {metrics['threshold']:.4f} chosen on validation"


if __name__ == "__main__":
    main()
