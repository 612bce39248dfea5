"""baseline: the unmodified base model with a fresh, seeded classification head (the "before")."""

from stages.data import load_splits
from stages.errors import cli
from stages.io import write_json
from stages.metrics import evaluate_splits, summary_line
from stages.modeling import load_classifier, load_tokenizer, predict_splits, quiet_libraries
from stages.params import load_params
from stages.paths import BASE_METRICS, RESULTS_DIR


@cli("baseline")
def main() -> None:
    quiet_libraries()
    params = load_params()
    splits = load_splits()
    tokenizer = load_tokenizer(params.model)
    # Same seed as finetune, so this head is exactly the one LoRA starts from.
    model = load_classifier(params.model, tokenizer, params.train.seed)
    probs = predict_splits(model, tokenizer, splits, params)
    metrics = evaluate_splits(splits, probs, params.eval.threshold, RESULTS_DIR / "base")
    write_json(BASE_METRICS, metrics)
    print(summary_line("baseline", metrics))


if __name__ == "__main__":
    main()
