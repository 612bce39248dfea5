"""params.yaml validation: every bad value stops with one message naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from stages.errors import PipelineError
from stages.params import load_params, parse_params

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((REPO / "params.yaml").read_text())


def with_value(path: str, value):
    raw = copy.deepcopy(DEFAULTS)
    group, key = path.split(".")
    raw[group][key] = value
    return raw


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.lora.r == 8 and params.lora.alpha == 32 and params.lora.dropout == 0.0
    assert params.model.dropout == 0.0 and params.train.swap_questions and params.eval.average_orders
    assert params.data.split == "grouped"
    assert params.model.name == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("lora.r", 0, "'lora.r': Input should be greater than or equal to 1 (got 0)"),
        ("lora.r", "eight", "'lora.r': Input should be a valid integer"),
        ("lora.dropout", 1.0, "'lora.dropout': Input should be less than 1"),
        ("lora.dropout", -0.1, "'lora.dropout': Input should be greater than or equal to 0"),
        ("lora.target_modules", [], "'lora.target_modules'"),
        ("data.split", "stratified", "'data.split': Input should be 'grouped' or 'random'"),
        ("data.sha256", "abc", "'data.sha256': String should match pattern"),
        ("train.learning_rate", -1, "'train.learning_rate': Input should be greater than 0"),
        ("train.precision", "fp16", "'train.precision': Input should be 'fp32' or 'bf16'"),
        ("logging.wandb", "yes", "'logging.wandb': Input should be 'disabled', 'offline' or 'online'"),
    ],
)
def test_bad_value_names_key_and_allowed(path, value, expected):
    with pytest.raises(PipelineError) as error:
        parse_params(with_value(path, value))
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_split_ratios_must_sum_to_one():
    raw = with_value("data.train_size", 0.7)
    with pytest.raises(PipelineError, match=r"must sum to 1 \(got 0.9\)"):
        parse_params(raw)


def test_unknown_key_suggests_the_right_one():
    raw = copy.deepcopy(DEFAULTS)
    raw["lora"]["rank"] = 4
    with pytest.raises(PipelineError, match=r"unknown key 'lora.rank' \(did you mean 'lora.r'\?\)"):
        parse_params(raw)


def test_unknown_group_suggests_the_right_one():
    raw = copy.deepcopy(DEFAULTS)
    raw["trian"] = raw.pop("train")
    with pytest.raises(PipelineError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        parse_params(raw)


def test_several_problems_reported_together():
    raw = with_value("lora.r", 0)
    raw["train"]["epochs"] = -1
    message = str(pytest.raises(PipelineError, parse_params, raw).value)
    assert "'lora.r'" in message and "'train.epochs'" in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
