"""LoRA with PEFT: which layers it adapts, wrapping a model, and saving and reloading adapters."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from mqp.biencoder import BiEncoder
from mqp.errors import PipelineError
from mqp.models import base_model, device, load_classifier, load_encoder
from mqp.params import LoraParams, Params
from mqp.paths import ADAPTER_CONFIG

# BERT-like encoders: LoRA on every attention and dense projection of the encoder layers
# (a regex, so the pooler and a RoBERTa classifier's own `dense` stay out).
ENCODER_TARGETS = r".*encoder\.layer\.\d+\..*\.(query|key|value|dense)"
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie", "data2vec-text"}
# A whole model's config (train.method full), where an adapter has ADAPTER_CONFIG.
FULL_MODEL_CONFIG = "config.json"
# The bi-encoder's scale and bias, saved beside the adapter.
HEAD_FILE = "similarity_head.safetensors"
TASK_TYPES = {"cross-encoder": TaskType.SEQ_CLS, "bi-encoder": TaskType.FEATURE_EXTRACTION}


def _linear_names(model: nn.Module) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))})


def lora_config(model: nn.Module, lora: LoraParams, task_type: TaskType = TaskType.SEQ_CLS) -> LoraConfig:
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
        task_type=task_type,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,
    )


def add_lora(model: nn.Module, lora: LoraParams, task_type: TaskType = TaskType.SEQ_CLS):
    config = lora_config(model, lora, task_type)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise PipelineError(
            f"LoRA could not be applied ({str(exc).splitlines()[0][:200]}); set lora.target_modules "
            f"to a list of this model's layers: {', '.join(_linear_names(model))}"
        ) from None


def with_lora(model: nn.Module, params: Params):
    """The model with LoRA on its encoder; the heads stay trainable (PEFT's modules_to_save for
    the classifier, plain parameters for the bi-encoder)."""
    if isinstance(model, BiEncoder):
        model.encoder = add_lora(model.encoder, params.lora, TaskType.FEATURE_EXTRACTION)
        model.encoder.peft_config["default"].base_model_name_or_path = params.model.name
        return model
    model = add_lora(model, params.lora)
    # Record the model id, not this machine's path to it.
    model.peft_config["default"].base_model_name_or_path = params.model.name
    return model


def for_training(model: nn.Module, params: Params):
    """The model finetune trains: with LoRA (train.method lora), or as it is, every weight
    trainable (full fine-tuning)."""
    return with_lora(model, params) if params.train.method == "lora" else model


def adapted_layers(model: nn.Module) -> list[str]:
    """The names of the layers LoRA adapted (e.g. query, key, value, dense), for the model card."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)})


def save_trained(model: nn.Module, folder: Path) -> None:
    if isinstance(model, BiEncoder):
        model.encoder.save_pretrained(folder)
        save_file(model.head_state(), folder / HEAD_FILE)
    else:
        model.save_pretrained(folder)


def soup(params: Params, tokenizer, folders: list[Path]) -> BiEncoder:
    """One bi-encoder from several trained ones (train.members): its LoRA update is the exact mean
    of theirs, B·A = mean of B_i·A_i, their A and B side by side (PEFT's add_weighted_adapter, 'cat':
    rank members × r), and its head is the mean of their heads."""
    model = base_model(params, tokenizer)
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


def load_trained(params: Params, tokenizer, adapter_dir: Path):
    """The base model plus the saved adapter (and head), or the fully fine-tuned model, fresh from
    disk, on the device."""
    if is_full_model(adapter_dir):
        return load_full_model(params, tokenizer, adapter_dir).to(device()).eval()
    # safetensors only: an adapter saved as adapter_model.bin is never loaded.
    if not all((adapter_dir / name).exists() for name in (ADAPTER_CONFIG, "adapter_model.safetensors")):
        raise PipelineError(f"no trained adapter in {adapter_dir}: run `dvc repro` first")
    saved_task = json.loads((adapter_dir / ADAPTER_CONFIG).read_text()).get("task_type")
    architecture = params.model.architecture
    if saved_task != TASK_TYPES[architecture]:
        raise PipelineError(f"the adapter in {adapter_dir} is not a {architecture}'s (task type {saved_task}); "
                            "run `dvc repro` to train one for the current params")
    model = base_model(params, tokenizer)
    if isinstance(model, BiEncoder):
        model.encoder = PeftModel.from_pretrained(model.encoder, adapter_dir, is_trainable=False)
        model.load_head_state(load_file(adapter_dir / HEAD_FILE))
    else:
        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    return model.to(device()).eval()


def is_full_model(folder: Path) -> bool:
    """Whether finetune saved a whole model there (train.method full) rather than an adapter."""
    return (folder / FULL_MODEL_CONFIG).exists() and not (folder / ADAPTER_CONFIG).exists()


def load_full_model(params: Params, tokenizer, folder: Path):
    """A fully fine-tuned model, loaded like a pretrained one from its folder; the bi-encoder's head beside it."""
    saved = params.model.model_copy(update={"name": str(folder)})
    has_head = (folder / HEAD_FILE).exists()
    if has_head != (params.model.architecture == "bi-encoder"):
        raise PipelineError(f"the model in {folder} is not a {params.model.architecture}'s; "
                            "run `dvc repro` to train one for the current params")
    if not has_head:
        return load_classifier(saved, tokenizer, params.train.seed)
    model = BiEncoder(load_encoder(saved), params.model.pooling)
    model.load_head_state(load_file(folder / HEAD_FILE))
    return model
