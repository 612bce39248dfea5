"""export: fold the trained LoRA adapter into its base model and save a standalone Hugging Face
folder (no PEFT needed to load it) with a model card of the test results."""

from mqp.architectures import architecture_for
from mqp.card import CARD_FILE, merged_card
from mqp.cli import stage
from mqp.files import atomic_dir, read_json
from mqp.lora import adapted_layers, load_trained
from mqp.models import load_tokenizer
from mqp.paths import ADAPTER_DIR, DATA_REPORT, LORA_REPORT, MERGED_DIR, SPLITS


@stage("export")
def main(params) -> None:
    # The card's numbers first: cheap to check, and a missing file stops before the model loads.
    lora_metrics = read_json(LORA_REPORT, "evaluate")
    data = read_json(DATA_REPORT, "prepare")
    tokenizer = load_tokenizer(params.model)
    trained = load_trained(params, tokenizer, ADAPTER_DIR)
    layers = adapted_layers(trained)  # named before merging folds them away
    architecture = architecture_for(params)
    model = architecture.merge(trained).cpu()
    with atomic_dir(MERGED_DIR) as scratch:
        calibration = architecture.save_merged(model, tokenizer, scratch, params.model.max_length,
                                               lora_metrics["threshold"])
        sizes = {split: data[split]["n"] for split in SPLITS}
        (scratch / CARD_FILE).write_text(
            merged_card(params, lora_metrics, sizes, MERGED_DIR, layers, tokenizer.sep_token, calibration), encoding="utf-8")
    print(f"export: {params.model.name} + LoRA merged ({params.model.architecture}) into {MERGED_DIR}, "
          f"no PEFT needed; test accuracy {lora_metrics['test']['accuracy']:.4f} in its {CARD_FILE}")


if __name__ == "__main__":
    main()
