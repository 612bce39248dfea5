"""evaluate: reload the base model and the saved adapter from disk, score them, and compare them
pair by pair with the base model and the zero-shot baseline on the same test pairs."""

import json

from mqp.cli import stage
from mqp.errors import PipelineError
from mqp.files import write_json
from mqp.inference import score_splits
from mqp.lora import load_trained
from mqp.metrics import compare, headline, model_report, p_value_text, predicted_labels, summary_line
from mqp.models import device, load_tokenizer
from mqp.paths import ADAPTER_DIR, BASE_REPORT, BASE_RESULTS, LORA_METRICS, LORA_REPORT, LORA_RESULTS, ZEROSHOT_REPORT, ZEROSHOT_RESULTS
from mqp.reports import read_predictions, write_test_results
from mqp.splits import load_splits
from mqp.tracking import log_comparison

# name in lora.json: (metrics file, results folder) of each model LoRA is compared with.
OTHERS = {"base": (BASE_REPORT, BASE_RESULTS), "zeroshot": (ZEROSHOT_REPORT, ZEROSHOT_RESULTS)}


def paired_comparisons(test, predicted) -> dict:
    """vs_<model>: LoRA against each other model on the same test pairs."""
    comparisons = {}
    for name, (_, results) in OTHERS.items():
        other = read_predictions(results)
        if not other["question_1"].equals(test["question_1"]) or not other["question_2"].equals(test["question_2"]):
            raise PipelineError(f"{results} holds other test pairs than data/prepared: run `dvc repro`")
        comparisons[f"vs_{name}"] = compare(test["label"], predicted, other["predicted"])
    return comparisons


@stage("evaluate")
def main(params) -> None:
    splits = load_splits()
    tokenizer = load_tokenizer(params.model)
    model = load_trained(params, tokenizer, ADAPTER_DIR)
    probs = score_splits(model, tokenizer, splits, params)
    threshold = params.eval.threshold
    metrics = model_report(splits, probs, threshold)
    write_test_results(LORA_RESULTS, splits["test"], probs["test"], threshold, metrics["test"],
                       validation=(splits["validation"], probs["validation"]))
    metrics.update(paired_comparisons(splits["test"], predicted_labels(probs["test"], threshold)))
    write_json(LORA_REPORT, metrics)
    write_json(LORA_METRICS, headline(metrics))
    others = {name: json.loads(path.read_text()) for name, (path, _) in OTHERS.items()}
    log_comparison(params, {**others, "lora": metrics})
    print(summary(metrics, others["base"], device().type))


def summary(metrics: dict, base: dict, device: str) -> str:
    versus = metrics["vs_zeroshot"]
    return (summary_line("evaluate", metrics, device, base)
            + f"; vs zero-shot {versus['accuracy_diff']:+.4f}, McNemar p {p_value_text(versus['mcnemar_p'])}")


if __name__ == "__main__":
    main()
