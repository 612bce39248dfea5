"""baseline: the untrained model (the "before"): the base model with a fresh, seeded classifier
head, or for the bi-encoder its initial similarity head."""

from mqp.architectures import base_model
from mqp.cli import stage
from mqp.files import write_json
from mqp.inference import score_splits
from mqp.metrics import headline, model_report, summary_line
from mqp.models import device, load_tokenizer
from mqp.paths import BASE_METRICS, BASE_REPORT, BASE_RESULTS
from mqp.reports import write_test_results
from mqp.splits import load_splits


@stage("baseline")
def main(params) -> None:
    splits = load_splits()
    tokenizer = load_tokenizer(params.model)
    # Same seed as finetune, so this head is exactly the one LoRA starts from.
    model = base_model(params, tokenizer).to(device()).eval()
    probs = score_splits(model, tokenizer, splits, params)
    metrics = model_report(splits, probs, params.eval.threshold)
    write_test_results(BASE_RESULTS, splits["test"], probs["test"], params.eval.threshold, metrics["test"])
    write_json(BASE_REPORT, metrics)
    write_json(BASE_METRICS, headline(metrics))
    print(summary_line("baseline", metrics, device().type))


if __name__ == "__main__":
    main()
