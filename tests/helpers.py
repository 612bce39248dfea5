"""Helpers shared by the test files: params from the repo's params.yaml, small CSVs, scratch DVC
projects, running commands. Imported as `from helpers import ...` (pytest.ini puts tests/ on the
path); tests/conftest.py holds the fixtures only."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqp import paths
from mqp.params import DataParams, Params, parse_params

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MQP_SHARED", REPO.parent / "shared"))
SHARED_CSV = SHARED / "data" / "mqp.csv"
GPT2_TOKENIZER = SHARED / "gpt2-tokenizer"
MQP_SHA256 = "94ecd609a9ca9350e1cff2438aa55a034762f01c1a68732aaae3e4be7b03cf57"

# Nothing in the suite may reach the network or pay for analytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DVC_STUDIO_OFFLINE", "true")  # `dvc artifacts get` asks Studio first otherwise

# The discard port on loopback: a connection is refused at once.
UNREACHABLE_URL = "http://127.0.0.1:9/mqp.csv"
STAGES = ("prepare", "baseline", "zeroshot", "finetune", "evaluate", "export")

# The session's trained projects (fixtures in conftest.py), by model.architecture.
PROJECT_OF = {"cross-encoder": "cross_encoder_project", "bi-encoder": "biencoder_project"}

# What a scratch project changes in params.yaml: small and quick, still the pipeline's code paths.
PROJECT_OVERRIDES = {
    "data.sha256": None,  # its own small CSV
    "model.max_length": 48,
    "train.epochs": 3,
    "train.batch_size": 8,
    "train.learning_rate": 1e-2,  # enough for LoRA to beat the base model significantly
}


# --- params: the repo's params.yaml plus overrides ----------------------------------------------


def repo_params_raw(overrides: dict[str, Any] | None = None) -> dict:
    """params.yaml of this repo as committed (HEAD), with dotted-key overrides ({"lora.r": 4}).
    Committed, not the workspace's: `dvc exp run -S lora.r=4` leaves r=4 there, and the suite must
    pass in such a used workspace."""
    return with_overrides(yaml.safe_load(committed_params_text()), overrides or {})


def committed_params_text() -> str:
    """HEAD's params.yaml; the file itself outside a git checkout (an unpacked archive)."""
    shown = subprocess.run(["git", "show", f"HEAD:{paths.PARAMS_FILE}"], cwd=REPO, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else (REPO / paths.PARAMS_FILE).read_text(encoding="utf-8")


def with_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        group, name = key.split(".")
        if group not in raw or name not in raw[group]:
            raise KeyError(f"{key} is not a key of params.yaml")  # a typo in a test must not pass silently
        raw[group][name] = str(value) if isinstance(value, Path) else value
    return raw


def repo_params(overrides: dict[str, Any] | None = None) -> Params:
    """Validated Params: this repo's params.yaml with dotted-key overrides."""
    return parse_params(repo_params_raw(overrides))


# The committed params.yaml's architecture: trained_project's.
DEFAULT_ARCHITECTURE = repo_params_raw()["model"]["architecture"]


def tiny_params(model_dir: Path, overrides: dict[str, Any] | None = None) -> Params:
    """The params a scratch project on a tiny model runs with (PROJECT_OVERRIDES)."""
    return repo_params({**PROJECT_OVERRIDES, "model.name": str(model_dir), **(overrides or {})})


def data_params(**changes) -> DataParams:
    """params.yaml's data group with changes; no checksum unless given."""
    return repo_params({"data.sha256": None, **{f"data.{key}": value for key, value in changes.items()}}).data


# Pairs for in-process model tests.
QUESTIONS_1 = ["Can I drink on antibiotics?", "Is a rash after penicillin an allergy?", "How long does flu last?"]
QUESTIONS_2 = ["Is alcohol safe with azithromycin?", "What does a sunburn look like?", "When is flu over?"]


# --- data ---------------------------------------------------------------------------------------

TOPICS = ["headache", "fever", "rash", "cough", "back pain", "insomnia", "nausea", "allergy",
          "asthma", "diabetes", "acne", "migraine", "flu", "anxiety", "sunburn", "earache"]


def pair_rows(n_questions: int = 48) -> list[list]:
    """MQP-shaped rows: each question_1 once with a similar and once with a dissimilar rewrite."""
    rows = []
    for i in range(n_questions):
        topic, other = TOPICS[i % len(TOPICS)], TOPICS[(i + 5) % len(TOPICS)]
        q1 = f"What should I take for my {topic}, case {i}?"
        rows.append([i % 3, q1, f"Which medicine helps with {topic} (case {i})?", 1])
        rows.append([i % 3, q1, f"Is {other} contagious, asked in case {i}?", 0])
    return rows


def write_pairs_csv(path: Path, n_questions: int = 48, rows: list[list] | None = None) -> Path:
    """A small MQP-shaped CSV without header (pair_rows unless rows are given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(pair_rows(n_questions) if rows is None else rows)
    return path


def good_rows(n_questions: int = 6) -> list[list]:
    """Valid rows for hand-made bad files: two rewrites of each question."""
    rows = []
    for i in range(n_questions):
        rows.append([i, f"What helps with cough number {i}?", f"Which syrup eases cough {i}?", 1])
        rows.append([i, f"What helps with cough number {i}?", f"Is rash {i} contagious?", 0])
    return rows


def csv_bytes(rows: list[list]) -> bytes:
    """Rows as CSV bytes, \n line ends."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# --- tokenizers ---------------------------------------------------------------------------------


def committed_json(project: Path, rev: str, path: Path) -> dict:
    """A JSON file as git committed it in `rev` (a commit or an experiment's)."""
    return json.loads(run(["git", "show", f"{rev}:{path}"], cwd=project).stdout)


def gpt2_tokenizer():
    """The real GPT-2 BPE tokenizer from shared/gpt2-tokenizer (skips the test without it)."""
    from transformers import GPT2Tokenizer

    if not (GPT2_TOKENIZER / "encoder.json").exists():
        pytest.skip(f"GPT-2 tokenizer files not found in {GPT2_TOKENIZER}")
    vocab = json.loads((GPT2_TOKENIZER / "encoder.json").read_text(encoding="utf-8"))
    lines = (GPT2_TOKENIZER / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(line.split()) for line in lines if line]
    return GPT2Tokenizer(vocab=vocab, merges=merges)


# --- commands -----------------------------------------------------------------------------------


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                            stdin=subprocess.DEVNULL, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check, env=env)


def gto(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """GTO's CLI (installed with DVC; it has no `python -m gto`), from this Python's bin folder."""
    return run([str(Path(sys.executable).parent / "gto"), *args], cwd=cwd)


def git_clone(origin: Path, path: Path) -> Path:
    """`git clone origin path`, with a git user (DVC's experiments commit)."""
    run(["git", "clone", "-q", str(origin), str(path)], cwd=path.parent)
    run(["git", "config", "user.email", "test@example.com"], cwd=path)
    run(["git", "config", "user.name", "test"], cwd=path)
    return path


def run_queue(project: Path, jobs: int = 1, timeout: float = 600) -> str:
    """`dvc queue start -j jobs` (one thread each), then poll until nothing is queued or running;
    returns the last `dvc queue status`, which must show no failed or unfinished run."""
    run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], cwd=project, env={"OMP_NUM_THREADS": "1"})
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = dvc("queue", "status", cwd=project).stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(5)
    assert "Failed" not in status and "Running" not in status and "Queued" not in status, status
    return status


def stage(name: str, cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m stages.<name> ARGS` in a project."""
    return run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, check=check, env=env)


def command(name: str, cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m mqp <name> ARGS` (a user command: predict, search, check, ...) in a project."""
    return run([sys.executable, "-m", "mqp", name, *args], cwd=cwd, check=check, env=env)


def one_error_line(result: subprocess.CompletedProcess, name: str) -> str:
    """A failed stage's stderr: exit 1, exactly one line `name: error: ...`, no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{name}: error: "), lines[0]
    return lines[0]


@dataclass
class WandbRun:
    project: Path
    output: str  # stdout and stderr of `dvc repro`
    home: Path  # $HOME during the run
    secret: str  # WANDB_API_KEY during the run
    isolated: bool  # run without a network (unshare -n)


def no_network_prefix() -> list[str]:
    """`unshare -n` runs a command with no network interface but loopback (root only); [] where
    that is not possible here."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", message], cwd=project)


# --- scratch projects ---------------------------------------------------------------------------


def write_params(project: Path, raw: dict) -> None:
    (project / paths.PARAMS_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))


def set_params(project: Path, overrides: dict[str, Any]) -> None:
    """Change a project's params.yaml (dotted keys)."""
    raw = yaml.safe_load((project / paths.PARAMS_FILE).read_text())
    write_params(project, with_overrides(raw, overrides))


def project_params(project: Path) -> Params:
    return parse_params(yaml.safe_load((project / paths.PARAMS_FILE).read_text()))


def make_workdir(path: Path, model_dir: Path | None = None, csv: Path | None = None,
                 overrides: dict[str, Any] | None = None, n_questions: int = 48) -> Path:
    """What the stages read from their working directory: params.yaml (this repo's with
    PROJECT_OVERRIDES, the model and overrides) and a small CSV at RAW_CSV. Enough to run the
    stages' main() in this process, or `python -m stages.X` with PYTHONPATH=REPO."""
    path.mkdir(parents=True, exist_ok=True)
    model = {} if model_dir is None else {"model.name": str(model_dir)}
    write_params(path, repo_params_raw({**PROJECT_OVERRIDES, **model, **(overrides or {})}))
    if csv is None:
        write_pairs_csv(path / paths.RAW_CSV, n_questions)
    else:
        (path / paths.RAW_CSV).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(csv, path / paths.RAW_CSV)
    return path


def make_project(path: Path, model_dir: Path | None = None, csv: Path | None = None,
                 overrides: dict[str, Any] | None = None, n_questions: int = 48) -> Path:
    """A scratch git+DVC repo holding this pipeline (dvc.yaml, stages/, mqp/, plots/) and what
    make_workdir writes, committed."""
    make_workdir(path, model_dir, csv, overrides, n_questions)
    for name in ("dvc.yaml", "stages", "mqp", "plots"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, path / name)
    shutil.copy(REPO / ".gitignore", path / ".gitignore")
    run(["git", "init", "-q"], cwd=path)
    run(["git", "config", "user.email", "test@example.com"], cwd=path)
    run(["git", "config", "user.name", "test"], cwd=path)
    dvc("init", "-q", cwd=path)
    dvc("config", "core.analytics", "false", cwd=path)
    dvc("config", "core.check_update", "false", cwd=path)
    dvc("config", "plots.html_template", "../plots/offline_template.html", cwd=path)
    commit(path, "init")
    return path


def repro_project(path: Path, model_dir: Path, overrides: dict[str, Any] | None = None) -> tuple[Path, str]:
    """make_project, then `dvc repro` from scratch, committed as users do before experimenting;
    and the output (stdout and stderr) of that run."""
    project = make_project(path, model_dir, overrides=overrides)
    result = dvc("repro", cwd=project)
    commit(project, "first run")
    return project, result.stdout + result.stderr


# Environment variables the stages set in their own process (mqp.cli, mqp.tracking).
STAGE_ENV = ("WANDB_MODE", "WANDB_PROJECT", "WANDB_SILENT", "TOKENIZERS_PARALLELISM", "TRANSFORMERS_VERBOSITY",
             "HF_HUB_DISABLE_PROGRESS_BARS")


def in_process_project(path: Path, model_dir: Path, overrides: dict[str, Any] | None = None,
                       network_attempts: list | None = None) -> tuple[Path, str]:
    """make_workdir, then every stage's main() in this process (no new Python per stage), with the
    working directory and the environment variables the stages set put back afterwards; and the
    stages' stdout. With a network_attempts list, behind guard_network, which fills it."""
    from stages import baseline, evaluate, export, finetune, prepare, zeroshot

    project = make_workdir(path, model_dir, overrides=overrides)
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(output):
        for key in STAGE_ENV:
            patch.setenv(key, os.environ.get(key, ""))  # recorded, so restored (or removed) afterwards
            if key not in os.environ:
                patch.delenv(key)
        patch.chdir(project)
        if network_attempts is not None:
            guard_network(patch, network_attempts)
        for stage in (prepare, baseline, zeroshot, finetune, evaluate, export):
            stage.main()
    return project, output.getvalue()


def _loopback(host) -> bool:
    if host in (None, "", "localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host, "ascii") if isinstance(host, bytes) else host.split("%")[0]).is_loopback
    except ValueError:
        return False


def guard_network(patch, attempts: list | None = None) -> list:
    """Make any connection or name lookup beyond loopback fail, and record it in `attempts` (a new
    list unless given), which is returned. patch: a pytest MonkeyPatch, which undoes it all."""
    attempts = [] if attempts is None else attempts
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo, real_create_connection = socket.getaddrinfo, socket.create_connection

    def check(address):
        if isinstance(address, tuple) and not _loopback(address[0]):  # AF_UNIX paths are local
            attempts.append(address)
            raise OSError(f"tests: network call to {address} blocked")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            attempts.append(host)
            raise socket.gaierror(f"tests: lookup of {host} blocked")
        return real_getaddrinfo(host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        check(address)
        return real_create_connection(address, *args, **kwargs)

    patch.setattr(socket.socket, "connect", connect)
    patch.setattr(socket.socket, "connect_ex", connect_ex)
    patch.setattr(socket, "getaddrinfo", getaddrinfo)
    patch.setattr(socket, "create_connection", create_connection)
    return attempts


# This process's pytest-xdist worker id ("gw0", ...), or None without pytest-xdist.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def shared_dir(tmp_path_factory) -> Path:
    """A scratch folder that every pytest-xdist worker of this run sees (basetemp without workers)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if XDIST_WORKER else base


def copy_project(source: Path, path: Path) -> Path:
    """A copy of a project (git, DVC cache and outputs included) to change without touching the
    shared one; DVC's state database is left behind (it is keyed by inode)."""
    shutil.copytree(source, path, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if n in ("tmp",) and Path(folder).name == ".dvc"])
    return path


def output_files(project: Path, *relative: Path) -> dict[str, bytes]:
    """The bytes of files (or every file under folders) of a project, by relative path."""
    found = {}
    for rel in relative:
        target = project / rel
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        found.update({str(p.relative_to(project)): p.read_bytes() for p in files if p.exists()})
    return found
