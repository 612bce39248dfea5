"""What exporting either architecture shares (mqp.architectures: merge, save_merged): LoRA folded
into the base weights, and the tokenizer saved the same on every machine, so that loading the
export needs neither PEFT nor this project."""

from __future__ import annotations

from pathlib import Path


def merged(model):
    """model with LoRA folded into its weights and PEFT's wrappers gone; a fully fine-tuned model
    (train.method full) has no LoRA to fold and comes back as it is."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def save_tokenizer(tokenizer, folder: Path) -> None:
    """The tokenizer without `local_files_only`, which records how this machine loaded it (true
    under HF_HUB_OFFLINE) and would make the same model's files differ from machine to machine."""
    tokenizer.init_kwargs.pop("local_files_only", None)
    tokenizer.save_pretrained(folder)
