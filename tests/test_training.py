"""mqp.training: the tokenised datasets and collators of each architecture (question swap for the
cross-encoder, two padded sides for the bi-encoder), the Trainer's arguments from params, and the
bi-encoder's optimizer groups; leftover checkpoint folders of killed runs."""

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import tiny_params
from mqp.architectures import base_model
from mqp.architectures.bi_encoder import QuestionPairCollator
from mqp.architectures.cross_encoder import PairCollator, pair_dataset
from mqp.lora import with_lora
from mqp.models import load_tokenizer
from mqp.paths import checkpoints_dir
from mqp.train_records import process_alive, remove_stale_checkpoints
from mqp.training import (QuestionGroupedSampler, collator_for, fit, make_trainer, mixed_precision, optimizer_for,
                          training_arguments, training_sets, with_implied_pairs)

N = 200


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.DataFrame({"dr_id": 1, "question_1": [f"first question {i}" for i in range(N)],
                         "question_2": [f"second one {i} here" + " longer" * (i % 5) for i in range(N)],
                         "label": [i % 2 for i in range(N)]})


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return load_tokenizer(tiny_params(tiny_bert).model)


def test_pair_collator_shows_each_pair_in_a_seeded_random_order(tokenizer, table):
    dataset = pair_dataset(table, tokenizer, 48, swapped=True)
    features = [dataset[i] for i in range(N)]

    def firsts(seed):
        batch = PairCollator(tokenizer, seed)(features)
        assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
        assert batch["labels"].tolist() == [i % 2 for i in range(N)]
        return [tokenizer.decode(ids[1:3]) for ids in batch["input_ids"]]  # the first question's first words

    first = firsts(seed=1)
    assert 60 < first.count("second one") < 140 and first.count("second one") + first.count("first question") == N
    assert firsts(seed=1) == first and firsts(seed=2) != first
    # Without swapped columns (validation), the pairs pass through in their order.
    plain = PairCollator(tokenizer, 1)([{k: v for k, v in f.items() if not k.startswith("swapped_")} for f in features])
    assert all(tokenizer.decode(ids[1:3]) == "first question" for ids in plain["input_ids"])


def test_question_pair_collator_pads_each_side_on_its_own(tiny_bert, tokenizer, table):
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder"})
    train, _ = training_sets(params, tokenizer, {"train": table, "validation": table})
    collator = collator_for(params, tokenizer)
    assert isinstance(collator, QuestionPairCollator)
    batch = collator([train[i] for i in range(8)])
    assert batch["labels"].tolist() == [i % 2 for i in range(8)]
    for side, question in (("1", "question_1"), ("2", "question_2")):
        ids = batch[f"input_ids_{side}"]
        longest = max(len(tokenizer(table[question][i])["input_ids"]) for i in range(8))
        assert ids.shape == (8, longest) and batch[f"attention_mask_{side}"].shape == ids.shape
        assert tokenizer.decode(ids[0], skip_special_tokens=True) == table[question][0]


@pytest.mark.parametrize("architecture, swap", [("cross-encoder", True), ("cross-encoder", False), ("bi-encoder", True)])
def test_training_sets_follow_the_params(tiny_bert, tokenizer, table, architecture, swap):
    params = tiny_params(tiny_bert, {"model.architecture": architecture, "train.swap_questions": swap})
    train, validation = training_sets(params, tokenizer, {"train": table, "validation": table.iloc[:50]})
    assert len(train) == N and len(validation) == 50
    if architecture == "bi-encoder":
        assert {"input_ids_1", "input_ids_2", "labels", "length", "group"} <= set(train.column_names)
    else:
        assert list(validation["length"]) == sorted(validation["length"])  # less padding per evaluation batch
        assert ("swapped_input_ids" in train.column_names) is swap
        assert "swapped_input_ids" not in validation.column_names  # validation is scored in the given order
        assert isinstance(collator_for(params, tokenizer), PairCollator)


def test_pairs_of_a_question_1_share_a_group(tiny_bert, tokenizer):
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder"})
    table = pd.DataFrame({"question_1": ["a b", "c d", "a b", "e f", "c d"], "question_2": ["x", "y", "z", "w", "v"],
                          "label": [1, 1, 0, 1, 0]})
    train, _ = training_sets(params, tokenizer, {"train": table, "validation": table})
    assert list(train["group"]) == [0, 1, 0, 2, 1]


def test_implied_pairs_add_each_question_1s_two_rewrites_as_dissimilar(tiny_bert, tokenizer):
    table = pd.DataFrame({"dr_id": [1, 1, 2, 2, 3],
                          "question_1": ["a?", "a?", "b?", "b?", "c?"],
                          "question_2": ["a same", "a other", "b other", "b same", "c same"],
                          "label": [1, 0, 0, 1, 1]})
    implied = with_implied_pairs(table)
    assert implied.iloc[:5].equals(table)  # MQP's own pairs first, as they were
    assert implied.iloc[5:].to_dict("records") == [  # c? has no dissimilar rewrite: nothing implied
        {"dr_id": 1, "question_1": "a same", "question_2": "a other", "label": 0},
        {"dr_id": 2, "question_1": "b same", "question_2": "b other", "label": 0}]
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder", "train.implied_pairs": True})
    train, validation = training_sets(params, tokenizer, {"train": table, "validation": table})
    assert (len(train), len(validation)) == (7, 5)  # validation stays MQP's own pairs
    assert list(train["group"]) == [0, 0, 1, 1, 2, 3, 4]  # an implied pair is a question_1 group of its own


def grouped_batches(groups, lengths, batch_size, seed=0) -> list[list[int]]:
    order = list(QuestionGroupedSampler(groups, lengths, batch_size, torch.Generator().manual_seed(seed)))
    assert sorted(order) == list(range(len(groups)))  # every pair once
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def test_grouped_sampler_puts_both_pairs_of_a_question_1_in_one_batch():
    groups = [i // 2 for i in range(200)]  # MQP: two pairs per question_1
    lengths = [10 + (i // 2) % 37 for i in range(200)]
    batches = grouped_batches(groups, lengths, 16)
    assert all(sorted(groups[i] for i in batch) == sorted(2 * [groups[i] for i in batch[::2]]) for batch in batches)

    def spread(batches) -> float:  # the mean length range within a batch
        return np.mean([max(lengths[i] for i in batch) - min(lengths[i] for i in batch) for batch in batches])

    shuffled = np.random.default_rng(0).permutation(200).tolist()
    assert spread(batches) < spread([shuffled[i : i + 16] for i in range(0, 200, 16)]) / 2  # still length-grouped
    assert grouped_batches(groups, lengths, 16, seed=0) == grouped_batches(groups, lengths, 16, seed=0)
    assert grouped_batches(groups, lengths, 16, seed=0) != grouped_batches(groups, lengths, 16, seed=1)


def test_biencoder_trainer_samples_by_question_1_and_cross_encoder_by_pair(tiny_bert, tokenizer, table, tmp_path):
    for architecture, grouped in (("bi-encoder", True), ("cross-encoder", False)):
        params = tiny_params(tiny_bert, {"model.architecture": architecture})
        trainer = make_trainer(with_lora(base_model(params, tokenizer), params), params, tokenizer,
                               training_sets(params, tokenizer, {"train": table, "validation": table.iloc[:50]}),
                               training_arguments(params, tmp_path / architecture, report_to=[]),
                               collator_for(params, tokenizer), callbacks=[])
        samplers = trainer._get_train_sampler(), trainer._get_eval_sampler(trainer.eval_dataset)
        assert all(isinstance(sampler, QuestionGroupedSampler) is grouped for sampler in samplers)


def test_biencoder_head_trains_at_its_own_learning_rate(tiny_bert, tokenizer):
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder", "train.head_learning_rate": 0.05})
    model = with_lora(base_model(params, tokenizer), params)
    lora_group, head_group = optimizer_for(model, params).param_groups
    assert lora_group["lr"] == params.train.learning_rate and head_group["lr"] == 0.05
    assert head_group["params"] == [model.scale, model.bias] and head_group["weight_decay"] == 0.0
    assert all("lora_" in name for name, p in model.encoder.named_parameters()
               if any(p is q for q in lora_group["params"]))
    cross = tiny_params(tiny_bert, {"model.architecture": "cross-encoder"})
    assert optimizer_for(with_lora(base_model(cross, tokenizer), cross), cross) is None  # the Trainer's default


def test_training_arguments_come_from_params(tiny_bert, tmp_path):
    params = tiny_params(tiny_bert, {"train.epochs": 4, "train.batch_size": 3, "eval.batch_size": 5,
                                     "train.seed": 11, "train.warmup_ratio": 0.25})
    args = training_arguments(params, tmp_path, report_to=[])
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.per_device_eval_batch_size) == (4, 3, 5)
    assert (args.learning_rate, args.seed, args.data_seed) == (params.train.learning_rate, 11, 11)
    assert args.warmup_steps == 0.25 and args.metric_for_best_model == "f1" and args.load_best_model_at_end
    assert args.output_dir == str(tmp_path)


@pytest.mark.parametrize("precision, flags", [("auto", (False, False)), ("fp32", (False, False)),
                                              ("bf16", (True, False)), ("fp16", (False, True))])
def test_every_precision_trains_on_the_cpu(tiny_bert, tokenizer, table, tmp_path, precision, flags):
    """Each train.precision value sets the Trainer's autocast flags and trains without error on a
    machine with no accelerator (bf16 used to crash there); auto is fp32."""
    params = tiny_params(tiny_bert, {"train.precision": precision, "train.epochs": 1, "train.batch_size": 16})
    args = training_arguments(params, tmp_path / "checkpoints", report_to=[])
    assert (args.bf16, args.fp16) == flags and args.use_cpu and args.device.type == "cpu"
    model = with_lora(base_model(params, tokenizer), params)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    splits = {"train": table.iloc[:64], "validation": table.iloc[64:80]}
    trainer = make_trainer(model, params, tokenizer, training_sets(params, tokenizer, splits), args,
                           collator_for(params, tokenizer), callbacks=[])
    result = fit(trainer, params.train.epochs, tmp_path / "checkpoints")
    assert math.isfinite(result.training_loss)
    assert any(not torch.equal(before[name], p) for name, p in trainer.model.named_parameters() if name in before)


def test_max_steps_stops_training_mid_epoch_and_still_validates(tiny_bert, tokenizer, table, tmp_path):
    """train.max_steps (benchmarks/scale.py's cap) stops after that many optimizer steps, short of
    the epoch's, and the best-epoch logic still has its validation F1; null is the Trainer's no cap."""
    assert training_arguments(tiny_params(tiny_bert), tmp_path, report_to=[]).max_steps == -1
    params = tiny_params(tiny_bert, {"train.epochs": 1, "train.batch_size": 4, "train.max_steps": 3})
    args = training_arguments(params, tmp_path / "checkpoints", report_to=[])
    model = with_lora(base_model(params, tokenizer), params)
    splits = {"train": table.iloc[:64], "validation": table.iloc[64:80]}  # 16 steps an epoch
    trainer = make_trainer(model, params, tokenizer, training_sets(params, tokenizer, splits), args,
                           collator_for(params, tokenizer), callbacks=[])
    fit(trainer, params.train.epochs, tmp_path / "checkpoints")
    assert trainer.state.global_step == 3
    assert [entry for entry in trainer.state.log_history if "eval_f1" in entry]


def test_auto_precision_is_fp32():
    assert mixed_precision("auto") == "fp32"
    assert [mixed_precision(p) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)
    return child.pid


def test_stale_checkpoints_of_dead_runs_are_removed(tmp_path, monkeypatch):
    """`kill -9` leaves .tmp/checkpoints-<pid>; the next finetune removes it, and only it."""
    monkeypatch.chdir(tmp_path)
    dead = checkpoints_dir(str(dead_pid()))
    alive = checkpoints_dir(str(os.getpid()))
    torchrun = checkpoints_dir("none")  # TORCHELASTIC_RUN_ID's default: no pid to check
    for folder in (dead, alive, torchrun):
        (folder / "checkpoint-3").mkdir(parents=True)
        (folder / "checkpoint-3" / "adapter_model.safetensors").write_bytes(b"weights")
    other = dead.parent / "adapter.x1y2"  # atomic_dir's scratch folders are not checkpoints
    other.mkdir()
    assert remove_stale_checkpoints() == [dead]
    assert not dead.exists() and alive.is_dir() and torchrun.is_dir() and other.is_dir()
    assert remove_stale_checkpoints() == []


def test_no_scratch_folder_is_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert remove_stale_checkpoints() == []


def test_process_alive():
    assert process_alive(os.getpid()) and process_alive(1)  # ours, and init (another user's on some systems)
    assert not process_alive(dead_pid()) and not process_alive(2**40)
