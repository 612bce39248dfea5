"""LoRA with PEFT: which layers it adapts, wrapping a model, and saving and reloading adapters (or
fully fine-tuned models), each architecture as mqp.architectures says."""

from __future__ import annotations

import json
from pathlib import Path

from peft import LoraConfig, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from mqp.architectures import architecture_for, base_model
from mqp.errors import PipelineError
from mqp.models import device
from mqp.params import LoraParams, Params
from mqp.paths import ADAPTER_CONFIG, HEAD_FILE

# BERT-like encoders: LoRA on every attention and dense projection of the encoder layers
# (a regex, so the pooler and a RoBERTa classifier's own `dense` stay out).
ENCODER_TARGETS = r".*encoder\.layer\.\d+\..*\.(query|key|value|dense)"
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie", "data2vec-text"}
# A whole model's config (train.method full), where an adapter has ADAPTER_CONFIG.
FULL_MODEL_CONFIG = "config.json"


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
    """The model with LoRA on its architecture's lora_module; the heads stay trainable (PEFT's
    modules_to_save for the classifier, plain parameters for the bi-encoder)."""
    architecture = architecture_for(params)
    adapted = add_lora(architecture.lora_module(model), params.lora, TaskType(architecture.TASK_TYPE))
    # Record the model id, not this machine's path to it.
    adapted.peft_config["default"].base_model_name_or_path = params.model.name
    return architecture.with_lora_module(model, adapted)


def for_training(model: nn.Module, params: Params):
    """The model finetune trains: with LoRA (train.method lora), or as it is, every weight
    trainable (full fine-tuning)."""
    return with_lora(model, params) if params.train.method == "lora" else model


def adapted_layers(model: nn.Module) -> list[str]:
    """The names of the layers LoRA adapted (e.g. query, key, value, dense), for the model card."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)})


def save_trained(model: nn.Module, params: Params, folder: Path) -> None:
    """The adapter (or the fully fine-tuned model) and any head file into folder."""
    architecture_for(params).save_trained(model, folder)


def load_trained(params: Params, tokenizer, adapter_dir: Path):
    """The base model plus the saved adapter (and head), or the fully fine-tuned model, fresh from
    disk, on the device."""
    if is_full_model(adapter_dir):
        return load_full_model(params, tokenizer, adapter_dir).to(device()).eval()
    # safetensors only: an adapter saved as adapter_model.bin is never loaded.
    if not all((adapter_dir / name).exists() for name in (ADAPTER_CONFIG, "adapter_model.safetensors")):
        raise PipelineError(f"no trained adapter in {adapter_dir}: run `dvc repro` first")
    saved_task = json.loads((adapter_dir / ADAPTER_CONFIG).read_text()).get("task_type")
    architecture = architecture_for(params)
    if saved_task != architecture.TASK_TYPE:
        raise PipelineError(f"the adapter in {adapter_dir} is not a {architecture.NAME}'s (task type {saved_task}); "
                            "run `dvc repro` to train one for the current params")
    return architecture.load_adapter(base_model(params, tokenizer), adapter_dir).to(device()).eval()


def is_full_model(folder: Path) -> bool:
    """Whether finetune saved a whole model there (train.method full) rather than an adapter."""
    return (folder / FULL_MODEL_CONFIG).exists() and not (folder / ADAPTER_CONFIG).exists()


def load_full_model(params: Params, tokenizer, folder: Path):
    """A fully fine-tuned model, loaded like a pretrained one from its folder (the bi-encoder's head beside it)."""
    architecture = architecture_for(params)
    if (folder / HEAD_FILE).exists() != architecture.SAVES_HEAD_FILE:
        raise PipelineError(f"the model in {folder} is not a {architecture.NAME}'s; "
                            "run `dvc repro` to train one for the current params")
    return architecture.load_full_model(params, tokenizer, folder)
