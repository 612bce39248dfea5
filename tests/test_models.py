"""mqp.models: resolving and loading pretrained models offline: the tokenizer (GPT-2 padding), the
classifier with its seeded fresh head, the bare encoder, dropout, and base_model per architecture."""

import hashlib
from pathlib import Path

import pytest
import torch

from helpers import QUESTIONS_1, QUESTIONS_2, tiny_params
from mqp.biencoder import INITIAL_BIAS, INITIAL_SCALE, BiEncoder
from mqp.errors import PipelineError
from mqp.architectures import base_model
from mqp.models import (ACCELERATOR_BATCH_SIZE, DEFAULT_MODEL, device, inference_batch_size, load_classifier,
                        load_encoder, load_tokenizer, resolve_model)


def test_default_model_resolves_to_offline_copy():
    path = resolve_model(DEFAULT_MODEL)
    assert path != DEFAULT_MODEL and path.endswith("model")
    digest = hashlib.sha256((Path(path) / "model.safetensors").read_bytes()).hexdigest()
    assert digest == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_local_directory_and_hub_ids_pass_through(tiny_bert):
    assert resolve_model(str(tiny_bert)) == str(tiny_bert)
    assert resolve_model("some-org/some-model") == "some-org/some-model"


def test_gpt2_tokenizer_pads_with_eos_on_the_right(tiny_gpt2):
    model = tiny_params(tiny_gpt2).model
    tokenizer = load_tokenizer(model)
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    classifier = load_classifier(model, tokenizer, seed=0)
    assert classifier.config.pad_token_id == tokenizer.eos_token_id


def test_unknown_model_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_params(Path("no-such-org/no-such-model")).model
    with pytest.raises(PipelineError, match=r"^cannot load model 'no-such-org/no-such-model'.*local directory.*all-MiniLM-L6-v2$"):
        load_tokenizer(model)
    with pytest.raises(PipelineError, match=r"^cannot load model 'no-such-org/no-such-model'"):
        load_encoder(model)


def test_seeded_head_is_reproducible(tiny_bert):
    model = tiny_params(tiny_bert).model
    tokenizer = load_tokenizer(model)
    first = load_classifier(model, tokenizer, seed=3).classifier.weight
    again = load_classifier(model, tokenizer, seed=3).classifier.weight
    other = load_classifier(model, tokenizer, seed=4).classifier.weight
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_model_dropout_param_sets_every_dropout_layer(tiny_bert):
    params = tiny_params(tiny_bert, {"model.dropout": 0.0})
    tokenizer = load_tokenizer(params.model)
    model = load_classifier(params.model, tokenizer, seed=0).train()
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    batch = tokenizer(QUESTIONS_1, QUESTIONS_2, padding=True, return_tensors="pt")
    with torch.no_grad():  # no dropout left: training mode is deterministic
        assert torch.equal(model(**batch).logits, model(**batch).logits)
    kept = tiny_params(tiny_bert, {"model.dropout": None}).model
    assert {m.p for m in load_classifier(kept, tokenizer, seed=0).modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    assert {m.p for m in load_encoder(kept).modules() if isinstance(m, torch.nn.Dropout)} == {0.1}  # the config's
    assert {m.p for m in load_encoder(params.model).modules() if isinstance(m, torch.nn.Dropout)} == {0.0}


def test_base_model_follows_the_architecture(tiny_bert):
    cross = tiny_params(tiny_bert, {"model.architecture": "cross-encoder"})
    tokenizer = load_tokenizer(cross.model)
    classifier = base_model(cross, tokenizer)
    expected = load_classifier(cross.model, tokenizer, cross.train.seed)  # train.seed seeds the head
    assert torch.equal(classifier.classifier.weight, expected.classifier.weight)

    bi = tiny_params(tiny_bert, {"model.architecture": "bi-encoder", "model.pooling": "last"})
    model = base_model(bi, tokenizer)
    assert isinstance(model, BiEncoder) and model.pooling == "last"
    assert (model.scale.item(), model.bias.item()) == (INITIAL_SCALE, INITIAL_BIAS)
    assert not hasattr(model.encoder, "classifier")  # the bare encoder, no classification head


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda value: matmul.append(value))
    matmul = []
    assert device() == torch.device(expected)
    assert matmul == (["high"] if cuda else [])  # TF32 matmuls on CUDA only


@pytest.mark.parametrize("cuda, expected", [(False, 16), (True, ACCELERATOR_BATCH_SIZE)])
def test_auto_inference_batch_is_sized_for_the_device(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda value: None)
    assert inference_batch_size("auto") == expected
    assert inference_batch_size(7) == 7  # a number is taken as it is
