"""Hugging Face model cards (README.md: YAML front matter, then Markdown) for the adapter and the
merged model, written from the run's own params and numbers."""

from __future__ import annotations

from pathlib import Path

import yaml

from mqp.architectures import architecture_for
from mqp.models import resolve_model
from mqp.params import Params
from mqp.train_records import TrainSummary

CARD_FILE = "README.md"  # where the Hub and PEFT look for a model card
DATASET_ID = "curaihealth/medical_questions_pairs"  # its copy on the Hugging Face Hub
DATASET_URL = "https://github.com/curai/medical-question-pair-dataset"
METRICS = {"accuracy": "accuracy", "f1": "F1", "precision": "precision", "recall": "recall", "roc_auc": "ROC AUC"}
COMPARED = {"vs_base": "base model with its untrained head", "vs_zeroshot": "zero-shot cosine of the base embeddings"}


def base_license(model_name: str) -> str | None:
    """The license in the base model's own card, when it is a local folder that has one."""
    card = Path(resolve_model(model_name)) / CARD_FILE
    if not card.is_file():
        return None
    parts = card.read_text(encoding="utf-8").split("---")
    try:
        meta = yaml.safe_load(parts[1]) if len(parts) > 2 and not parts[0].strip() else None
    except yaml.YAMLError:
        return None
    return meta.get("license") if isinstance(meta, dict) else None


def front_matter(meta: dict) -> str:
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def metadata(params: Params, name: str, split: str, metrics: dict, extra: dict) -> dict:
    """The card's front matter; model-index carries the numbers the Hub shows beside the card."""
    license_ = base_license(params.model.name)
    return {
        **extra,
        **({"license": license_} if license_ else {}),
        "base_model": params.model.name,
        "datasets": [DATASET_ID],
        "language": ["en"],
        "metrics": list(METRICS),
        "pipeline_tag": architecture_for(params).PIPELINE_TAG,
        "tags": [*(["lora"] if params.train.method == "lora" else []), params.model.architecture, "medical", "question-similarity", "dvc"],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "text-classification", "name": "Medical question pair similarity"},
                "dataset": {"name": "Medical Question Pairs (MQP)", "type": DATASET_ID, "split": split},
                "metrics": [{"type": key, "value": metrics[key], "name": f"{split} {label}"}
                            for key, label in METRICS.items() if key in metrics],
            }],
        }],
    }


def data_section(params: Params, sizes: dict[str, int]) -> str:
    data = params.data
    if data.split == "kfold":
        protocol = (f"grouped {data.folds}-fold split by `question_1`: fold {data.fold} of 0..{data.folds - 1} is "
                    f"the test set, {data.validation_size:.0%} of all pairs from the other folds are validation, "
                    "the rest train")
    elif data.split == "grouped":
        protocol = (f"one split grouped by `question_1`: {data.test_size:.0%} test, "
                    f"{data.validation_size:.0%} validation, the rest train")
    else:
        protocol = (f"a random row split ({data.test_size:.0%} test, {data.validation_size:.0%} validation), "
                    "the reference recipe's: the two rewrites of a question can land in different splits")
    grouped = "" if data.split == "random" else " No `question_1` is in two splits."
    counts = ", ".join(f"{name} {n:,}" for name, n in sizes.items())
    return (f"## Data\n\n[Medical Question Pairs]({DATASET_URL}) (MQP; on the Hub as `{DATASET_ID}`): 3,048 pairs of patient "
            "questions written by Curai doctors; label 1 = the second question asks the same as the first. "
            f"Split (`data.split={data.split}`, seed {data.seed}): {protocol}.{grouped} Pairs: {counts}.\n")


def training_section(params: Params, layers: list[str]) -> str:
    """Model, LoRA and training params; `layers` are the layers LoRA adapted (mqp.lora.adapted_layers)."""
    lora, train, model = params.lora, params.train, params.model
    chosen = "chosen by `lora.target_modules: auto`" if lora.target_modules == "auto" else "from `lora.target_modules`"
    head = architecture_for(params).head_description(model)
    adapted = (f"- LoRA (PEFT): r={lora.r}, alpha={lora.alpha:g}, dropout {lora.dropout:g}, on the {', '.join(layers)} "
               f"layers ({chosen}).\n" if train.method == "lora" else
               "- Full fine-tuning (`train.method: full`): every weight of the model trained, no LoRA.\n")
    return (f"## Training\n\n- Base model: `{model.name}`, as a {model.architecture}: {head}.\n{adapted}"
            f"- Training: {train.epochs} epochs, learning rate {train.learning_rate:g} (head {train.head_learning_rate:g}), "
            f"batch {train.batch_size}, weight decay {train.weight_decay:g}, warmup {train.warmup_ratio:g}, "
            f"precision {train.precision}, max {model.max_length} tokens, seed {train.seed}; the epoch with the best "
            f"validation F1 is kept.\n{extras(params)}")


def extras(params: Params) -> str:
    """The training options beyond the reference recipe's, where they are on."""
    train = params.train
    losses = {"ranking_weight": "A ranking loss beside the head's",
              "batch_negatives_weight": "The head's BCE on the batch's random pairs, labelled dissimilar",
              "anchor_weight": "A term holding each question's embedding near the base model's"}
    lines = [f"- {text} (`train.{name}: {getattr(train, name):g}`).\n" for name, text in losses.items() if getattr(train, name)]
    if train.members > 1:
        seeds = ", ".join(str(train.seed + i) for i in range(train.members))
        lines.append(f"- A model soup (`train.members: {train.members}`): {train.members} adapters trained alike with seeds "
                     f"{seeds}, each its best epoch kept; this adapter's update is the mean of theirs (rank "
                     f"{train.members} × {params.lora.r}) and its head the mean of their heads.\n")
    if train.implied_pairs:
        lines.append("- Also trained on the pairs MQP implies (`train.implied_pairs`): each question_1's similar and "
                     "dissimilar rewrites, as a dissimilar pair.\n")
    return "".join(lines)


def metrics_table(metrics: dict) -> str:
    """One row per metric, with its 95% interval where the metrics have intervals (test)."""
    keys = [key for key in METRICS if key in metrics]
    if not any(f"{key}_ci_low" in metrics for key in keys):
        return "\n".join(["| metric | value |", "| --- | --- |"]
                         + [f"| {METRICS[key]} | {metrics[key]:.4f} |" for key in keys]) + "\n"
    rows = ["| metric | value | 95% CI |", "| --- | --- | --- |"]
    for key in keys:
        low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
        interval = f"[{low:.4f}, {high:.4f}]" if low is not None else ""
        rows.append(f"| {METRICS[key]} | {metrics[key]:.4f} | {interval} |")
    return "\n".join(rows) + "\n"


def comparison_table(lora_metrics: dict) -> str:
    rows = ["| LoRA against | accuracy difference [95% CI] | exact McNemar p | pairs only LoRA / only the other got right |",
            "| --- | --- | --- | --- |"]
    for key, label in COMPARED.items():
        if key in lora_metrics:
            c = lora_metrics[key]
            rows.append(f"| {label} | {c['accuracy_diff']:+.4f} [{c['diff_ci_low']:+.4f}, {c['diff_ci_high']:+.4f}] | "
                        f"{c['mcnemar_p']:.3g} | {c['this_only']} / {c['other_only']} |")
    return "\n".join(rows) + "\n"


def python_block(lines: list[str]) -> str:
    return "```python\n" + "\n".join(lines) + "\n```\n"


def adapter_usage(params: Params, folder: Path) -> str:
    architecture = architecture_for(params)
    if params.train.method == "full":
        loader = architecture.FULL_MODEL_CLASS
        lines = [f"from transformers import {loader}",
                 f'model = {loader}.from_pretrained("{folder}")  # every weight fine-tuned, no PEFT',
                 *architecture.head_loading(folder)]
    else:
        lines = architecture.adapter_loading(params, folder)
    return ("## Load it\n\n" + python_block(lines) + "\nIn this repository `python -m mqp predict \"question 1\" "
            "\"question 2\"` scores a pair with it, and the `export` stage merges it into a standalone model.\n")


def merged_usage(params: Params, folder: Path, sep_token: str | None, calibration: dict | None) -> str:
    """Three lines that load the merged model and set p_similar for one pair, with no PEFT."""
    lines, notes = architecture_for(params).merged_usage(params, folder, sep_token, calibration)
    return "## Use it\n\n" + python_block(lines) + "\n" + notes


LIMITS = ("## Intended use and limits\n\nA research model: it tells whether two patient questions ask the same "
          "thing, to study LoRA fine-tuning on MQP. It is not a medical device and must not be used for medical "
          "decisions, triage or advice. MQP is small (1,524 questions, English, written by a few doctors), so "
          "expect errors on other wording, topics and languages; the figures above hold for MQP's "
          "distribution only.\n")


def adapter_card(params: Params, summary: TrainSummary, sizes: dict[str, int], folder: Path, layers: list[str]) -> str:
    """The adapter's card: validation metrics of the kept epoch (finetune never reads the test split)."""
    validation = summary.validation
    what = "LoRA adapter for" if params.train.method == "lora" else "Fully fine-tuned"
    title = f"# {what} `{params.model.name}`: is question 2 the same as question 1? (MQP)\n"
    if validation:
        results = (f"## Validation metrics\n\nKept {summary.kept_epochs()} (best validation F1), "
                   f"{summary.trainable_params:,} trainable parameters of "
                   f"{summary.total_params:,} ({summary.trainable_percent}%), threshold "
                   f"{params.eval.threshold:g}:\n\n{metrics_table(validation)}\nThe test metrics are the `evaluate` "
                   "stage's (`metrics/detail/lora.json`) and the merged model's card.\n")
    else:
        results = "## Validation metrics\n\nNone: `train.epochs=0` saved the untrained adapter.\n"
    library = "peft" if params.train.method == "lora" else "transformers"
    meta = metadata(params, "mqp-lora-adapter", "validation", validation, {"library_name": library})
    return "\n".join([front_matter(meta), title, data_section(params, sizes), training_section(params, layers),
                      results, adapter_usage(params, folder), LIMITS])


def merged_card(params: Params, lora_metrics: dict, sizes: dict[str, int], folder: Path, layers: list[str],
                sep_token: str | None, calibration: dict | None) -> str:
    """The merged model's card: test metrics with their 95% intervals and the paired comparisons."""
    meta = metadata(params, "mqp-lora-merged", "test", lora_metrics["test"],
                    {"library_name": architecture_for(params).LIBRARY})
    title = (f"# `{params.model.name}` + LoRA, merged: is question 2 the same as question 1? (MQP)\n\n"
             "The LoRA adapter folded into the base weights (PEFT `merge_and_unload`): a standalone model that "
             "loads without PEFT.\n" if params.train.method == "lora" else
             f"# `{params.model.name}`, fully fine-tuned: is question 2 the same as question 1? (MQP)\n\n"
             "Every weight trained (`train.method: full`, no LoRA): a standalone model.\n")
    results = (f"## Test metrics\n\n{lora_metrics['test']['n']:,} test pairs, threshold "
               f"{lora_metrics['threshold']:g}; intervals: Wilson (accuracy), seeded bootstrap over pairs (F1, "
               f"ROC AUC).\n\n{metrics_table(lora_metrics['test'])}\nOn the same test pairs:\n\n"
               f"{comparison_table(lora_metrics)}")
    return "\n".join([front_matter(meta), title, data_section(params, sizes), training_section(params, layers), results,
                      merged_usage(params, folder, sep_token, calibration), LIMITS])
