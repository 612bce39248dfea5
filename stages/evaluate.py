"""evaluate: reload the base model and the saved adapter from disk, and score them."""

import json

from stages.data import load_splits
from stages.errors import cli
from stages.io import write_json
from stages.metrics import evaluate_splits, summary_line
from stages.modeling import load_trained, predict_splits, quiet_libraries
from stages.params import load_params
from stages.paths import BASE_METRICS, LORA_METRICS, RESULTS_DIR, ZEROSHOT_METRICS
from stages.tracking import log_comparison


@cli("evaluate")
def main() -> None:
    quiet_libraries()
    params = load_params()
    splits = load_splits()
    model, tokenizer = load_trained(params.model, params.train.seed)
    probs = predict_splits(model, tokenizer, splits, params)
    metrics = evaluate_splits(splits, probs, params.eval.threshold, RESULTS_DIR / "lora")
    write_json(LORA_METRICS, metrics)
    others = {name: json.loads(path.read_text()) for name, path in
              (("base", BASE_METRICS), ("zero-shot", ZEROSHOT_METRICS)) if path.exists()}
    log_comparison(params, {**others, "lora": metrics})
    print(summary_line("evaluate", metrics, others.get("base")))


if __name__ == "__main__":
    main()
