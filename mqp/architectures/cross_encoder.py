"""The cross-encoder: both questions in one input, a 2-class classification head on top.

One of the two architectures behind mqp.architectures' interface (see there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import DataCollatorWithPadding

from mqp.encoding import MODEL_INPUTS, PAIR_SEPARATOR, encode_pairs, length_sorted_batches
from mqp.export import merged, save_tokenizer
from mqp.models import load_classifier
from mqp.params import ModelParams, Params

NAME = "cross-encoder"
TASK_TYPE = "SEQ_CLS"  # PEFT's TaskType.SEQ_CLS, as its adapter_config.json records it
PIPELINE_TAG = "text-classification"
LIBRARY = "transformers"  # what loads the merged model
FULL_MODEL_CLASS = "AutoModelForSequenceClassification"
SAVES_HEAD_FILE = False  # the classification head is saved inside the model's own weights
EMBEDS_QUESTIONS = False  # it scores a pair in one input: retrieval needs the bi-encoder
LABELS = {0: "different", 1: "similar"}


def base_model(params: Params, tokenizer):
    """The pretrained model with its fresh head, seeded by train.seed (baseline and finetune share
    it), which also fixes what torch draws next: LoRA's initial weights."""
    return load_classifier(params.model, tokenizer, params.train.seed)


# --- training -----------------------------------------------------------------------------------


def pair_dataset(table: pd.DataFrame, tokenizer, max_length: int, swapped: bool = False):
    """Cross-encoder inputs, tokenised once, with a `length` column for length-grouped batches;
    with swapped, also each pair in the other question order (`swapped_*` columns)."""
    from datasets import Dataset  # ~0.7 s to import: only training loads it

    encoded = encode_pairs(tokenizer, table["question_1"], table["question_2"], max_length)
    columns = {**encoded, "labels": table["label"].tolist(), "length": [len(ids) for ids in encoded["input_ids"]]}
    if swapped:
        other = encode_pairs(tokenizer, table["question_2"], table["question_1"], max_length)
        columns.update({f"swapped_{key}": values for key, values in other.items()})
    return Dataset.from_dict(columns)


def training_sets(train: pd.DataFrame, validation: pd.DataFrame, tokenizer, params: Params):
    """The train pairs (in both orders with train.swap_questions) and the validation pairs sorted
    by length."""
    max_length = params.model.max_length
    return (pair_dataset(train, tokenizer, max_length, swapped=params.train.swap_questions),
            pair_dataset(validation, tokenizer, max_length).sort("length"))


class PairCollator(DataCollatorWithPadding):
    """Pads a batch of model inputs; where a pair comes in both orders, a seeded coin picks one.

    Question similarity is symmetric, so the swapped pair is a free second example: the model
    learns no preference for which question comes first.
    """

    def __init__(self, tokenizer, seed: int, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.rng = np.random.default_rng(seed)

    def __call__(self, features: list[dict]) -> dict:
        batch = []
        for feature in features:
            swap = "swapped_input_ids" in feature and self.rng.random() < 0.5
            prefix = "swapped_" if swap else ""
            inputs = {key: feature[prefix + key] for key in MODEL_INPUTS if prefix + key in feature}
            batch.append({**inputs, "labels": feature["labels"]})
        return super().__call__(batch)


def collator(params: Params, tokenizer, **padding) -> DataCollatorWithPadding:
    return PairCollator(tokenizer, params.train.seed, **padding)


def optimizer(model, params: Params):
    """None: the Trainer builds its default (TrainingArguments.optim)."""
    return None


# --- LoRA, saving and loading -------------------------------------------------------------------


def lora_module(model):
    """The module LoRA wraps: the whole classifier (PEFT keeps its head trainable, modules_to_save)."""
    return model


def with_lora_module(model, module):
    """The model once its lora_module is wrapped (or unwrapped): that module itself."""
    return module


def save_trained(model, folder: Path) -> None:
    model.save_pretrained(folder)


def load_adapter(model, folder: Path):
    """The base model with the adapter (and its trained head) saved in folder."""
    from peft import PeftModel  # PEFT loads only where an adapter does (baseline never)

    return PeftModel.from_pretrained(model, folder, is_trainable=False)


def load_full_model(params: Params, tokenizer, folder: Path):
    """A fully fine-tuned classifier, loaded like a pretrained one from its folder."""
    return load_classifier(params.model.model_copy(update={"name": str(folder)}), tokenizer, params.train.seed)


# --- export -------------------------------------------------------------------------------------


def merge(model):
    """The trained model with LoRA folded into its weights and PEFT's wrappers gone; its trained
    head (PEFT's modules_to_save copy) takes the place of the base head."""
    return merged(model)


def save_merged(model, tokenizer, folder: Path, max_length: int, threshold: float) -> None:
    """The merged classifier as AutoModelForSequenceClassification loads it, labels named; it has
    no calibration to return (its head gives P(similar) itself)."""
    model.config.id2label = dict(LABELS)
    model.config.label2id = {label: index for index, label in LABELS.items()}
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tokenizer, folder)
    return None


# --- scoring ------------------------------------------------------------------------------------


@torch.inference_mode()
def _pair_proba(model, tokenizer, question_1, question_2, max_length: int, batch_size: int | str) -> np.ndarray:
    encoded = encode_pairs(tokenizer, question_1, question_2, max_length)
    probs = np.empty(len(encoded["input_ids"]), dtype=np.float64)
    for index in length_sorted_batches(encoded, batch_size):
        batch = tokenizer.pad({key: [encoded[key][i] for i in index] for key in encoded.keys()}, return_tensors="pt")
        logits = model(**batch.to(model.device)).logits.float()
        probs[index] = torch.softmax(logits, dim=-1)[:, 1].double().cpu().numpy()
    return probs


def cross_encoder_proba(model, tokenizer, question_1, question_2, max_length: int, batch_size: int | str,
                        both_orders: bool = False) -> np.ndarray:
    """P(similar) for each pair. both_orders: the mean over (q1, q2) and (q2, q1), since
    similarity is symmetric but a cross-encoder's input is not."""
    probs = _pair_proba(model, tokenizer, question_1, question_2, max_length, batch_size)
    if both_orders:
        probs = (probs + _pair_proba(model, tokenizer, question_2, question_1, max_length, batch_size)) / 2
    return probs


def score_pairs(model, tokenizer, question_1, question_2, params: Params) -> np.ndarray:
    """P(similar) for each pair, in one or both question orders (eval.average_orders)."""
    return cross_encoder_proba(model, tokenizer, question_1, question_2, params.model.max_length,
                               params.eval.batch_size, params.eval.average_orders)


# --- model card ---------------------------------------------------------------------------------


def head_description(model: ModelParams) -> str:
    return "both questions in one input, a 2-class classification head trained with LoRA"


def head_loading(folder: Path) -> list[str]:
    """The card's lines that load a fully fine-tuned model's head: none, it is in the model."""
    return []


def adapter_loading(params: Params, folder: Path) -> list[str]:
    return ["from peft import AutoPeftModelForSequenceClassification",
            f'model = AutoPeftModelForSequenceClassification.from_pretrained("{folder}")  # base model + adapter + head',
            "# then tokenize (question_1, question_2) with the base model's tokenizer; softmax(logits)[1] = P(similar)"]


def question_1_input(sep_token: str | None) -> str:
    """question_1 as the pipeline feeds it: tokenizers without a separator token get one appended."""
    return "question_1" if sep_token is not None else f"question_1 + {PAIR_SEPARATOR!r}"


def merged_usage(params: Params, folder: Path, sep_token: str | None, calibration: None) -> tuple[list[str], str]:
    """The lines that load the merged model and set p_similar for one pair, and what follows them."""
    lines = ["from transformers import pipeline",
             f'classify = pipeline("text-classification", model="{folder}", top_k=None)',
             'p_similar = {s["label"]: s["score"] for s in classify({"text": '
             f'{question_1_input(sep_token)}, "text_pair": question_2}})}}["similar"]']
    orders = ("The evaluation averaged P(similar) over both question orders (`eval.average_orders`); "
              "do the same for its exact figures.\n" if params.eval.average_orders else "")
    return lines, orders
