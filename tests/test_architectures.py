"""mqp.architectures: both architecture modules offer the same interface, the picker follows
model.architecture; mqp.train_records: train.json written and read through one TrainSummary."""

import inspect
import json

from helpers import tiny_params
from mqp.architectures import ARCHITECTURES, architecture_for, bi_encoder, cross_encoder, embeds_questions
from mqp.train_records import MemberRun, TrainSummary, read_train_summary

INTERFACE = ("NAME", "TASK_TYPE", "PIPELINE_TAG", "LIBRARY", "FULL_MODEL_CLASS", "SAVES_HEAD_FILE", "EMBEDS_QUESTIONS",
             "base_model", "training_sets", "collator", "optimizer", "lora_module", "with_lora_module", "save_trained",
             "load_adapter", "load_full_model", "merge", "save_merged", "score_pairs", "head_description",
             "head_loading", "adapter_loading", "merged_usage")


def test_both_architectures_have_the_same_interface():
    assert set(ARCHITECTURES) == {"cross-encoder", "bi-encoder"}
    for name in INTERFACE:
        members = [getattr(module, name) for module in (cross_encoder, bi_encoder)]
        if callable(members[0]):
            assert [list(inspect.signature(m).parameters) for m in members].count(
                list(inspect.signature(members[0]).parameters)) == 2, name
        else:
            assert type(members[0]) is type(members[1]), name


def test_the_picker_follows_model_architecture(tiny_bert):
    for name, module in ARCHITECTURES.items():
        assert architecture_for(tiny_params(tiny_bert, {"model.architecture": name})) is module
        assert module.NAME == name
    assert embeds_questions("bi-encoder") and not embeds_questions("cross-encoder") and not embeds_questions(None)


SINGLE = {"trainable_params": 10, "total_params": 100, "trainable_percent": 10.0, "epochs": 3, "best_epoch": 2,
          "train_loss": 0.5, "train_seconds": 1.0, "train_samples_per_second": 2.0, "train_tokens_per_second": 3.0,
          "wall_seconds": 4.0, "validation": {"accuracy": 0.75, "f1": 0.7}}
SOUP = {**SINGLE, "best_epoch": [2, 3], "members": [
    {"seed": 42, "best_epoch": 2, "train_loss": 0.5, "validation": {"f1": 0.7}},
    {"seed": 43, "best_epoch": 3, "train_loss": 0.4, "validation": {"f1": 0.8}}]}


def test_train_summary_writes_todays_json_and_reads_it_back(tmp_path):
    for record, members in ((SINGLE, 1), (SOUP, 2)):
        path = tmp_path / "train.json"
        path.write_text(json.dumps(record, indent=2))
        summary = read_train_summary(path)
        assert len(summary.members) == members and summary.is_soup == (members > 1)
        assert json.dumps(summary.to_json()) == json.dumps(record)  # same keys, same order, same types
    single = TrainSummary.from_json(SINGLE)
    assert single.members == [MemberRun(None, 2, 0.5, SINGLE["validation"])]
    assert single.kept_epochs() == "epoch 2 of 3"
    assert TrainSummary.from_json(SOUP).kept_epochs() == "epochs 2, 3 of 3, one per member of the soup"
