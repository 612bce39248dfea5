"""The bi-encoder: each question embedded alone, P(similar) = sigmoid(scale * cosine + bias)
(mqp.biencoder.BiEncoder); exported as a sentence-transformers model with its calibration, it is
the one that embeds questions for retrieval and search.

One of the two architectures behind mqp.architectures' interface (see there)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from transformers import DataCollatorWithPadding

from mqp.biencoder import SIDES, BiEncoder
from mqp.encoding import MODEL_INPUTS, cosine
from mqp.errors import PipelineError
from mqp.export import merged, save_tokenizer
from mqp.files import write_json
from mqp.models import device, load_encoder, set_seed
from mqp.params import ModelParams, Params
from mqp.paths import CALIBRATION_JSON, HEAD_FILE

NAME = "bi-encoder"
TASK_TYPE = "FEATURE_EXTRACTION"  # PEFT's TaskType.FEATURE_EXTRACTION, as its adapter_config.json records it
PIPELINE_TAG = "sentence-similarity"
LIBRARY = "sentence-transformers"  # what loads the merged model
FULL_MODEL_CLASS = "AutoModel"
SAVES_HEAD_FILE = True  # scale and bias, beside the encoder (HEAD_FILE)
EMBEDS_QUESTIONS = True
BI_ENCODER_NEEDED = ("retrieval needs the bi-encoder: {folder} holds a cross-encoder, which scores a pair in one "
                     "input and embeds no question alone; run `dvc exp run -S model.architecture=bi-encoder` "
                     "(or set it in params.yaml and `dvc repro`)")
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


def base_model(params: Params, tokenizer) -> BiEncoder:
    """The pretrained encoder with the initial similarity head and train's loss weights."""
    # train.seed also fixes what comes next from torch's generator: LoRA's initial weights.
    set_seed(params.train.seed)
    return BiEncoder(load_encoder(params.model), params.model.pooling, params.train.ranking_weight,
                     params.train.batch_negatives_weight, params.train.anchor_weight)


# --- training -----------------------------------------------------------------------------------


def question_dataset(table: pd.DataFrame, tokenizer, max_length: int):
    """Bi-encoder inputs: each question tokenised alone (`*_1`, `*_2` columns), `length`, and
    `group`, the same number for the pairs that share a question_1 (QuestionGroupedSampler)."""
    from datasets import Dataset  # ~0.7 s to import: only training loads it

    columns = {"labels": table["label"].tolist()}
    for side, column in zip(SIDES, ("question_1", "question_2")):
        encoded = tokenizer(list(table[column]), truncation=True, max_length=max_length)
        columns.update({f"{key}_{side}": values for key, values in encoded.items()})
    columns["length"] = [len(a) + len(b) for a, b in zip(columns["input_ids_1"], columns["input_ids_2"])]
    columns["group"] = pd.factorize(table["question_1"])[0].tolist()
    return Dataset.from_dict(columns)


def training_sets(train: pd.DataFrame, validation: pd.DataFrame, tokenizer, params: Params):
    """Both splits by question, grouped by question_1 (the Trainer's QuestionGroupedSampler orders them)."""
    max_length = params.model.max_length
    return question_dataset(train, tokenizer, max_length), question_dataset(validation, tokenizer, max_length)


class QuestionPairCollator(DataCollatorWithPadding):
    """Pads each side of a bi-encoder batch on its own (`input_ids_1`, ..., `input_ids_2`, ...)."""

    def __call__(self, features: list[dict]) -> dict:
        batch = {"labels": torch.tensor([feature["labels"] for feature in features])}
        for side in SIDES:
            padded = super().__call__([{key: feature[f"{key}_{side}"] for key in MODEL_INPUTS
                                        if f"{key}_{side}" in feature} for feature in features])
            batch.update({f"{key}_{side}": value for key, value in padded.items()})
        return batch


def collator(params: Params, tokenizer, **padding) -> DataCollatorWithPadding:
    return QuestionPairCollator(tokenizer, **padding)


def optimizer(model: BiEncoder, params: Params):
    """AdamW with the scale and bias at their own learning rate (they move on a scale of ~10, the
    LoRA weights on ~1e-3). Fused on CUDA: one kernel for all parameters instead of several per
    tensor. Not on the CPU, where it changes the last bits of each update (the tiny pipeline's
    third logged loss moved by 1e-7) and so the default's CPU figures, for a few percent of a step."""
    head = [model.scale, model.bias]
    lora = [p for p in model.encoder.parameters() if p.requires_grad]
    return torch.optim.AdamW([
        {"params": lora, "lr": params.train.learning_rate, "weight_decay": params.train.weight_decay},
        {"params": head, "lr": params.train.head_learning_rate, "weight_decay": 0.0},
    ], fused=device().type == "cuda")


# --- LoRA, saving and loading -------------------------------------------------------------------


def lora_module(model: BiEncoder):
    """The module LoRA wraps: the encoder (the head stays plain parameters, trained alongside)."""
    return model.encoder


def with_lora_module(model: BiEncoder, module) -> BiEncoder:
    """The model with `module` (its lora_module wrapped or unwrapped) as its encoder."""
    model.encoder = module
    return model


def save_trained(model: BiEncoder, folder: Path) -> None:
    model.encoder.save_pretrained(folder)
    save_file(model.head_state(), folder / HEAD_FILE)


def load_adapter(model: BiEncoder, folder: Path) -> BiEncoder:
    """The base model with the adapter and head saved in folder."""
    from peft import PeftModel  # PEFT loads only where an adapter does (baseline never)

    model.encoder = PeftModel.from_pretrained(model.encoder, folder, is_trainable=False)
    model.load_head_state(load_file(folder / HEAD_FILE))
    return model


def load_full_model(params: Params, tokenizer, folder: Path) -> BiEncoder:
    """A fully fine-tuned encoder, loaded like a pretrained one from its folder, its head beside it."""
    model = BiEncoder(load_encoder(params.model.model_copy(update={"name": str(folder)})), params.model.pooling)
    model.load_head_state(load_file(folder / HEAD_FILE))
    return model


def soup(model: BiEncoder, folders: list[Path]) -> BiEncoder:
    """The fresh model (base_model) made one bi-encoder from several trained ones (train.members):
    its LoRA update is the exact mean of theirs, B·A = mean of B_i·A_i, their A and B side by side
    (PEFT's add_weighted_adapter, 'cat': rank members × r), and its head is the mean of their heads."""
    from peft import PeftModel  # PEFT loads only where an adapter does (baseline never)

    names = [f"member_{i}" for i in range(len(folders))]
    encoder = PeftModel.from_pretrained(model.encoder, folders[0], adapter_name=names[0])
    for name, folder in zip(names[1:], folders[1:]):
        encoder.load_adapter(folder, adapter_name=name)
    encoder.add_weighted_adapter(names, [1 / len(names)] * len(names), "default", combination_type="cat")
    encoder.set_adapter("default")
    for name in names:
        encoder.delete_adapter(name)
    model.encoder = encoder
    heads = [load_file(folder / HEAD_FILE) for folder in folders]
    model.load_head_state({key: torch.stack([head[key] for head in heads]).mean(0) for key in heads[0]})
    return model


# --- export, and the exported model in retrieval and search -------------------------------------


def merge(model: BiEncoder) -> BiEncoder:
    """The trained model with LoRA folded into its encoder's weights and PEFT's wrappers gone."""
    model.encoder = merged(model.encoder)
    return model


def pooling_config(pooling: str, dimension: int) -> dict:
    return {"word_embedding_dimension": dimension,
            **{key: key == ST_POOLING_MODES[pooling] for key in ST_POOLING_KEYS}, "include_prompt": True}


def calibration(model: BiEncoder, threshold: float) -> dict:
    """P(similar) = sigmoid(scale * cosine + bias); similar at P(similar) >= threshold."""
    return {"scale": model.scale.item(), "bias": model.bias.item(), "threshold": threshold}


def save_merged(model: BiEncoder, tokenizer, folder: Path, max_length: int, threshold: float) -> dict:
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


def is_exported(folder: Path) -> bool:
    """export saves the bi-encoder with its calibration, the cross-encoder without."""
    return (folder / CALIBRATION_JSON).exists()


def load_exported(folder: Path):
    """The exported bi-encoder as sentence-transformers loads it (no PEFT, no project code), and
    its calibration (scale, bias, threshold)."""
    if not folder.is_dir():
        raise PipelineError(f"no exported model in {folder}: run `dvc repro export`")
    if not is_exported(folder):
        raise PipelineError(BI_ENCODER_NEEDED.format(folder=folder))
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), local_files_only=True)
    return model, json.loads((folder / CALIBRATION_JSON).read_text())


def probability(cosine, calibration: dict) -> np.ndarray:
    """P(similar) = sigmoid(scale * cosine + bias), the exported model's calibrated head."""
    return 1 / (1 + np.exp(-(calibration["scale"] * np.asarray(cosine, dtype=np.float64) + calibration["bias"])))


# --- scoring ------------------------------------------------------------------------------------


@torch.inference_mode()
def score_pairs(model: BiEncoder, tokenizer, question_1, question_2, params: Params) -> np.ndarray:
    """P(similar) for each pair, from the cosine of its questions' embeddings."""
    similarity = cosine(model.encoder, tokenizer, question_1, question_2, params.model.max_length,
                        params.eval.batch_size, model.pooling)
    logit = model.logit(torch.as_tensor(similarity, device=model.scale.device, dtype=model.scale.dtype))
    return torch.sigmoid(logit).double().cpu().numpy()


# --- model card ---------------------------------------------------------------------------------


def head_description(model: ModelParams) -> str:
    return ("P(similar) = sigmoid(scale · cosine + bias) of the two questions' embeddings "
            f"({model.pooling} pooling), scale and bias trained")


def head_loading(folder: Path) -> list[str]:
    """The card's lines that load a fully fine-tuned model's head, saved beside it."""
    return ["from safetensors.torch import load_file",
            f'head = load_file("{folder}/{HEAD_FILE}")  # P(similar) = sigmoid(scale * cosine + bias)']


def adapter_loading(params: Params, folder: Path) -> list[str]:
    return ["from transformers import AutoModel; from peft import PeftModel; from safetensors.torch import load_file",
            f'encoder = PeftModel.from_pretrained(AutoModel.from_pretrained("{params.model.name}"), "{folder}")',
            f'head = load_file("{folder}/{HEAD_FILE}")  # P(similar) = sigmoid(scale * cosine + bias)']


def merged_usage(params: Params, folder: Path, sep_token: str | None, calibration: dict) -> tuple[list[str], str]:
    """The lines that load the merged model and set p_similar for one pair, and what follows them."""
    lines = ["import json, math; from sentence_transformers import SentenceTransformer",
             f'model, head = SentenceTransformer("{folder}"), json.load(open("{folder}/{CALIBRATION_JSON}"))',
             'e1, e2 = model.encode([question_1, question_2]); '
             'p_similar = 1 / (1 + math.exp(-(head["scale"] * float(e1 @ e2) + head["bias"])))']
    return lines, (f"The embeddings are unit vectors, so `e1 @ e2` is their cosine; P(similar) = sigmoid("
                   f"{calibration['scale']:.4f} · cosine {calibration['bias']:+.4f}), and a pair is called similar at "
                   f"P(similar) ≥ {calibration['threshold']:g} (all three in `{CALIBRATION_JSON}`).\n")
