"""The two architectures model.architecture names, each a module with the same interface, and the
one place that picks between them: everything else asks architecture_for(params).

Each architecture module (cross_encoder, bi_encoder) has:
- NAME; TASK_TYPE, its PEFT adapter's task type; PIPELINE_TAG, LIBRARY and FULL_MODEL_CLASS for the
  model cards; SAVES_HEAD_FILE, whether a trained model's folder has paths.HEAD_FILE beside it;
  EMBEDS_QUESTIONS, whether its export embeds a question alone (retrieval, index, search).
- base_model(params, tokenizer): the untrained model, seeded by train.seed.
- training_sets(train, validation, tokenizer, params), collator(params, tokenizer, **padding) and
  optimizer(model, params) (None: the Trainer's default): what mqp.training feeds the Trainer.
- lora_module(model) and with_lora_module(model, module): the module LoRA wraps, and the model with
  that module replaced (wrapped by LoRA, or merged back).
- save_trained(model, folder), load_adapter(model, folder), load_full_model(params, tokenizer, folder).
- merge(model) and save_merged(model, tokenizer, folder, max_length, threshold) for export (the
  calibration it saved, or None).
- score_pairs(model, tokenizer, question_1, question_2, params): P(similar) of each pair.
- head_description(model params), head_loading(folder), adapter_loading(params, folder) and
  merged_usage(params, folder, sep_token, calibration): the model cards' words and code.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from mqp.architectures import bi_encoder, cross_encoder
from mqp.params import Params

ARCHITECTURES = {architecture.NAME: architecture for architecture in (cross_encoder, bi_encoder)}


def architecture_for(params: Params) -> ModuleType:
    """The module of model.architecture."""
    return ARCHITECTURES[params.model.architecture]


def base_model(params: Params, tokenizer):
    """The untrained model of model.architecture: the classifier with its seeded fresh head, or
    the bi-encoder with its initial similarity head."""
    return architecture_for(params).base_model(params, tokenizer)


def exported_architecture(folder: Path) -> ModuleType:
    """The architecture of the model export saved in folder, by its files."""
    return bi_encoder if bi_encoder.is_exported(folder) else cross_encoder


def embeds_questions(name: str | None) -> bool:
    """Whether the architecture of that name (an index's, say) embeds questions alone."""
    return name in ARCHITECTURES and ARCHITECTURES[name].EMBEDS_QUESTIONS
