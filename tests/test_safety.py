"""Safety: no pickles, no remote code, safetensors only, no network calls (the W&B key never
written: test_tracking.py, with the W&B run).

Source scans of mqp/ and stages/ catch a regression before it runs; the runtime checks load a
model folder holding only a (booby-trapped) pytorch_model.bin, and run every stage in-process
behind a socket guard.
"""

from __future__ import annotations

import ast
import pickle
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO, guard_network, make_workdir, tiny_params
from mqp import paths
from mqp.errors import PipelineError
from mqp.lora import load_trained
from mqp.models import load_classifier, load_encoder, load_tokenizer

SOURCES = sorted([*(REPO / "mqp").rglob("*.py"), *(REPO / "stages").rglob("*.py")])  # subpackages too


# --- source scans -------------------------------------------------------------------------


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call):
            yield node


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return "?"


def keyword(call: ast.Call, name: str):
    """The keyword's value as a constant; None when absent; '<expr>' when not a constant."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return None


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


def test_sources_are_scanned():
    names = {str(p.relative_to(REPO)) for p in SOURCES}
    assert names >= {"mqp/data.py", "mqp/models.py", "mqp/lora.py", "mqp/inference.py", "stages/finetune.py",
                     "stages/evaluate.py", "mqp/commands/predict.py", "mqp/architectures/bi_encoder.py"}


def test_no_pickle_loading():
    pattern = re.compile(r"\b(c?pickle|cloudpickle|dill|joblib|shelve|marshal)\b|read_pickle|allow_pickle")
    found = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in SOURCES
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, "pickle-based loading:\n" + "\n".join(found)


def test_torch_load_only_with_weights_only():
    bad = [where(p, c) for p in SOURCES for c in calls(p)
           if dotted(c.func).endswith("torch.load") and keyword(c, "weights_only") is not True]
    assert not bad, f"torch.load without weights_only=True at {bad}"
    imports = [p.name for p in SOURCES if re.search(r"from torch import .*\bload\b", p.read_text(encoding="utf-8"))]
    assert not imports


def test_trust_remote_code_never_true():
    bad = [where(p, c) for p in SOURCES for c in calls(p)
           if keyword(c, "trust_remote_code") not in (None, False)]
    assert not bad, f"trust_remote_code not False at {bad}"
    assert not any("trust_remote_code=True" in p.read_text(encoding="utf-8") for p in SOURCES)


def test_models_load_with_use_safetensors():
    """Every transformers model class's from_pretrained passes use_safetensors=True."""
    model_loads = [(p, c) for p in SOURCES for c in calls(p)
                   if isinstance(c.func, ast.Attribute) and c.func.attr == "from_pretrained"
                   and re.fullmatch(r"AutoModel\w*|\w+Model|\w+For\w+", dotted(c.func.value))
                   and not dotted(c.func.value).startswith("Peft")]
    assert len(model_loads) >= 2  # the classifier and the bare encoder
    bad = [where(p, c) for p, c in model_loads if keyword(c, "use_safetensors") is not True]
    assert not bad, f"from_pretrained without use_safetensors=True at {bad}"


# --- a model folder holding only a pickle ---------------------------------------------------


class _Canary:
    """Unpickling this creates a file: proof that a pickle was run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def pickle_only_model(tmp_path_factory, tiny_bert):
    """The tiny BERT's config and tokenizer, with its weights as a booby-trapped pytorch_model.bin."""
    folder = tmp_path_factory.mktemp("pickle-only")
    marker = folder.parent / f"{folder.name}-UNPICKLED"
    for item in tiny_bert.iterdir():
        if item.suffix != ".safetensors":
            shutil.copy(item, folder / item.name)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"bert.embeddings": _Canary(marker)}, protocol=2))
    return folder, marker


def test_pickle_only_model_fails_with_one_line(pickle_only_model):
    folder, marker = pickle_only_model
    model = tiny_params(folder).model
    tokenizer = load_tokenizer(model)
    for load in (lambda: load_classifier(model, tokenizer, seed=0), lambda: load_encoder(model)):
        with pytest.raises(PipelineError) as error:
            load()
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith(f"cannot load model '{folder}' (OSError: Error no file named model.safetensors")
        assert "safetensors weights" in message
    assert not marker.exists(), "pytorch_model.bin was unpickled"


def test_pickle_only_model_through_finetune(tmp_path, pickle_only_model, in_project, capsys):
    from stages import finetune, prepare

    folder, marker = pickle_only_model
    in_project(make_workdir(tmp_path / "project", folder))
    prepare.main()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        finetune.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"finetune: error: cannot load model '{folder}' (OSError: Error no file named model.safetensors found in directory")
    assert not marker.exists()


def test_pickle_only_adapter_is_never_loaded(tmp_path, tiny_bert):
    """An adapter folder with only adapter_model.bin: refused before anything is unpickled."""
    marker = tmp_path / "UNPICKLED"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 2, "lora_alpha": 4, "target_modules": ["query"]}')
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps({"w": _Canary(marker)}, protocol=2))
    params = tiny_params(tiny_bert)
    with pytest.raises(PipelineError, match="no trained adapter"):
        load_trained(params, load_tokenizer(params.model), adapter)
    assert not marker.exists()


# --- no network with model and data local ----------------------------------------------------


@pytest.fixture
def network_guard(monkeypatch):
    """Any connection or name lookup beyond loopback is recorded and refused."""
    return guard_network(monkeypatch)


def test_network_guard_blocks_and_records(network_guard):
    with pytest.raises(OSError):
        urllib.request.urlopen("http://203.0.113.7/x.csv", timeout=1)  # TEST-NET-3, never routed
    with pytest.raises(OSError):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert ("203.0.113.7", 80) in network_guard and ("huggingface.co", 443) in network_guard
    with pytest.raises(ConnectionRefusedError):  # loopback stays allowed
        socket.create_connection(("127.0.0.1", 9), timeout=1)


@pytest.mark.slow
def test_pipeline_makes_no_network_call(gpt2_biencoder_project):
    """Every stage, in this process, behind the network guard (the GPT-2 bi-encoder run)."""
    project, _, attempts = gpt2_biencoder_project
    assert attempts == []
    outputs = (paths.DATA_REPORT, paths.BASE_REPORT, paths.ZEROSHOT_REPORT, paths.TRAIN_REPORT,
               paths.LORA_REPORT, paths.ADAPTER_DIR / "adapter_model.safetensors")
    for output in outputs:
        assert (project / output).exists(), output
