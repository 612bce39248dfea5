"""mqp.params: params.yaml's types and ranges. The values live in params.yaml alone (no defaults in
code); every bad value stops with one message naming the key."""

import pytest

from helpers import REPO, data_params, repo_params, repo_params_raw
from mqp.errors import PipelineError
from mqp.params import DataParams, LoraParams, ModelParams, Params, load_params, parse_params
from mqp.paths import PARAMS_FILE


def error_of(raw) -> str:
    with pytest.raises(PipelineError) as error:
        parse_params(raw)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_repo_params_are_valid():
    load_params(REPO / PARAMS_FILE)  # the workspace's, which an experiment may have changed
    params = repo_params()  # the committed ones
    assert params.model.name == "sentence-transformers/all-MiniLM-L6-v2"  # the offline default (test_models.py)
    assert params.data.split == "kfold" and params.data.fold < params.data.folds


def test_repo_params_overrides_take_dotted_keys():
    params = repo_params({"lora.r": 4, "model.architecture": "bi-encoder"})
    assert params.lora.r == 4 and params.model.architecture == "bi-encoder"
    assert params.lora.alpha == repo_params().lora.alpha  # the rest from params.yaml
    assert data_params(split="grouped", seed=7).model_dump() == {
        **repo_params().data.model_dump(), "split": "grouped", "seed": 7, "sha256": None}
    with pytest.raises(KeyError):
        repo_params({"lora.rank": 4})  # a typo in a test fails loudly


@pytest.mark.parametrize("group", [DataParams, ModelParams, LoraParams, Params])
def test_no_field_has_a_default(group):
    """Every value comes from params.yaml: a key left out is an error, not a silent default."""
    assert all(field.is_required() for field in group.model_fields.values())


@pytest.mark.parametrize("key", ["lora.r", "model.architecture", "data.folds", "train.head_learning_rate"])
def test_missing_key_is_named(key):
    raw = repo_params_raw()
    group, name = key.split(".")
    del raw[group][name]
    assert f"missing key '{key}'" in error_of(raw)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("lora.r", 0, "'lora.r': Input should be greater than or equal to 1 (got 0)"),
        ("lora.r", "eight", "'lora.r': Input should be a valid integer"),
        ("lora.dropout", 1.0, "'lora.dropout': Input should be less than 1"),
        ("lora.dropout", -0.1, "'lora.dropout': Input should be greater than or equal to 0"),
        ("lora.target_modules", [], "'lora.target_modules'"),
        ("data.split", "stratified", "'data.split': Input should be 'kfold', 'grouped' or 'random'"),
        ("data.folds", 1, "'data.folds': Input should be greater than or equal to 2"),
        ("data.fold", -1, "'data.fold': Input should be greater than or equal to 0"),
        ("data.sha256", "abc", "'data.sha256': String should match pattern"),
        ("model.architecture", "dual-encoder", "'model.architecture': Input should be 'cross-encoder' or 'bi-encoder'"),
        ("model.pooling", "cls", "'model.pooling': Input should be 'mean' or 'last'"),
        ("train.learning_rate", -1, "'train.learning_rate': Input should be greater than 0"),
        ("train.head_learning_rate", 0, "'train.head_learning_rate': Input should be greater than 0"),
        ("train.precision", "fp8", "'train.precision': Input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
        ("logging.wandb", "yes", "'logging.wandb': Input should be 'disabled', 'offline' or 'online'"),
        ("eval.batch_size", 0, "'eval.batch_size': must be auto or a whole number of at least 1 (got 0)"),
        ("eval.batch_size", "big", "'eval.batch_size': must be auto or a whole number of at least 1 (got 'big')"),
    ],
)
def test_bad_value_names_key_and_allowed(key, value, expected):
    assert expected in error_of(repo_params_raw({key: value}))


@pytest.mark.parametrize("fold, folds", [(5, 5), (7, 3)])
def test_fold_must_be_below_folds(fold, folds):
    message = error_of(repo_params_raw({"data.fold": fold, "data.folds": folds}))
    assert message == (f"invalid params.yaml: 'data': data.fold must be below data.folds "
                       f"(got fold {fold} of {folds})")


def test_ranking_weight_needs_the_bi_encoder():
    assert error_of(repo_params_raw({"model.architecture": "cross-encoder", "train.ranking_weight": 0.5})) == (
        "invalid params.yaml: params: train.ranking_weight scores sentence embeddings: it needs "
        "model.architecture=bi-encoder (got cross-encoder); set it to 0")
    parse_params(repo_params_raw({"model.architecture": "bi-encoder", "train.ranking_weight": 0.5}))


def test_the_anchor_needs_lora():
    assert error_of(repo_params_raw({"train.method": "full", "train.anchor_weight": 1})) == (
        "invalid params.yaml: params: train.anchor_weight compares with the base model, LoRA's adapter turned off: "
        "it needs train.method=lora (got full); set it to 0")
    parse_params(repo_params_raw({"train.anchor_weight": 1}))


@pytest.mark.parametrize("change, got", [({"model.architecture": "cross-encoder"}, "lora, cross-encoder"),
                                         ({"train.method": "full"}, "full, bi-encoder")])
def test_a_soup_needs_lora_bi_encoders(change, got):
    assert error_of(repo_params_raw({"train.members": 3, **change})) == (
        "invalid params.yaml: params: train.members=3 averages LoRA bi-encoders: it needs train.method=lora and "
        f"model.architecture=bi-encoder (got {got}); set train.members to 1")
    parse_params(repo_params_raw({"train.members": 3}))


def test_held_out_shares_must_leave_training_data():
    # kfold holds out 1/folds for test: 0.5 + 1/2 leaves nothing.
    assert "validation and test take 1 of the data, leaving nothing to train on" in error_of(
        repo_params_raw({"data.validation_size": 0.5, "data.folds": 2}))
    # grouped and random hold out test_size instead.
    assert "leaving nothing to train on" in error_of(
        repo_params_raw({"data.split": "grouped", "data.validation_size": 0.6, "data.test_size": 0.4}))
    parse_params(repo_params_raw({"data.split": "kfold", "data.validation_size": 0.6, "data.test_size": 0.4}))


def test_train_size_is_gone():
    """Train is the rest; the old key is now an unknown one."""
    raw = repo_params_raw()
    raw["data"]["train_size"] = 0.8
    assert "unknown key 'data.train_size'" in error_of(raw)


def test_unknown_key_suggests_the_right_one():
    raw = repo_params_raw()
    raw["lora"]["rank"] = 4
    assert "unknown key 'lora.rank' (did you mean 'lora.r'?); allowed here: r, alpha, dropout, target_modules" in error_of(raw)


def test_unknown_group_suggests_the_right_one():
    raw = repo_params_raw()
    raw["trian"] = raw.pop("train")
    message = error_of(raw)
    assert "unknown key 'trian' (did you mean 'train'?)" in message and "missing key 'train'" in message


def test_several_problems_reported_together():
    message = error_of(repo_params_raw({"lora.r": 0, "train.epochs": -1}))
    assert "'lora.r'" in message and "'train.epochs'" in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(PipelineError, match="not found: run the stages from the repository root"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("- a list\n")
    with pytest.raises(PipelineError, match="must be a mapping of groups"):
        load_params(tmp_path / "params.yaml")
