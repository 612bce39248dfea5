"""A standalone model from the trained adapter: LoRA folded into the base weights, saved as a plain
Hugging Face classifier (cross-encoder) or a sentence-transformers folder (bi-encoder), so that
loading it needs neither PEFT nor this project."""

from __future__ import annotations

from pathlib import Path

from mqp.biencoder import BiEncoder
from mqp.files import write_json
from mqp.paths import CALIBRATION_JSON

LABELS = {0: "different", 1: "similar"}
# The sentence-transformers layout (the classic one, which every version since 2.x loads):
# the Transformer module at the root, then pooling, then L2 normalisation.
ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
ST_POOLING_MODES = {"mean": "pooling_mode_mean_tokens", "last": "pooling_mode_lasttoken"}
ST_POOLING_KEYS = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                   "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def merge(model):
    """The trained model with LoRA folded into its weights and PEFT's wrappers gone; a classifier's
    trained head (PEFT's modules_to_save copy) takes the place of the base head."""
    if isinstance(model, BiEncoder):
        model.encoder = merge(model.encoder)
        return model
    # A fully fine-tuned model (train.method full) has no LoRA to fold.
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def save_tokenizer(tokenizer, folder: Path) -> None:
    """The tokenizer without `local_files_only`, which records how this machine loaded it (true
    under HF_HUB_OFFLINE) and would make the same model's files differ from machine to machine."""
    tokenizer.init_kwargs.pop("local_files_only", None)
    tokenizer.save_pretrained(folder)


def save_classifier(model, tokenizer, folder: Path) -> None:
    """The merged cross-encoder as AutoModelForSequenceClassification loads it, labels named."""
    model.config.id2label = dict(LABELS)
    model.config.label2id = {label: index for index, label in LABELS.items()}
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tokenizer, folder)


def pooling_config(pooling: str, dimension: int) -> dict:
    return {"word_embedding_dimension": dimension,
            **{key: key == ST_POOLING_MODES[pooling] for key in ST_POOLING_KEYS}, "include_prompt": True}


def calibration(model: BiEncoder, threshold: float) -> dict:
    """P(similar) = sigmoid(scale * cosine + bias); similar at P(similar) >= threshold."""
    return {"scale": model.scale.item(), "bias": model.bias.item(), "threshold": threshold}


def save_merged(model, tokenizer, folder: Path, max_length: int, threshold: float) -> dict | None:
    """Either architecture's merged model into folder; the bi-encoder's calibration, else None."""
    if isinstance(model, BiEncoder):
        return save_sentence_transformer(model, tokenizer, folder, max_length, threshold)
    save_classifier(model, tokenizer, folder)
    return None


def save_sentence_transformer(model: BiEncoder, tokenizer, folder: Path, max_length: int, threshold: float) -> dict:
    """The merged bi-encoder in the sentence-transformers layout, its calibration beside it;
    returns the calibration."""
    model.encoder.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tokenizer, folder)
    write_json(folder / "modules.json", ST_MODULES)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    write_json(folder / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
    write_json(folder / "1_Pooling" / "config.json", pooling_config(model.pooling, model.encoder.config.hidden_size))
    write_json(folder / "2_Normalize" / "config.json", {})
    values = calibration(model, threshold)
    write_json(folder / CALIBRATION_JSON, values)
    return values
