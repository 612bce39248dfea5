"""mqp.inference and mqp.encoding: tokenising pairs, P(similar) from a cross-encoder (one or both
question orders) or a bi-encoder, sentence embeddings and their cosine, in length-sorted batches."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import QUESTIONS_1, QUESTIONS_2, tiny_params
from mqp import encoding
from mqp.architectures import base_model
from mqp.architectures.cross_encoder import cross_encoder_proba
from mqp.encoding import cosine, embed, encode_pairs
from mqp.inference import score_pairs, score_splits
from mqp.models import load_encoder, load_tokenizer


@pytest.fixture(scope="module")
def cross_encoder(tiny_bert):
    params = tiny_params(tiny_bert, {"model.architecture": "cross-encoder"})
    tokenizer = load_tokenizer(params.model)
    return params, tokenizer, base_model(params, tokenizer).eval()


def test_gpt2_pairs_get_a_newline_between_the_questions(tiny_gpt2):
    tokenizer = load_tokenizer(tiny_params(tiny_gpt2).model)
    ids = encode_pairs(tokenizer, ["Hello world"], ["Hello world"], 32)["input_ids"][0]
    assert ids == [15496, 995, 198, 15496, 995]  # "\n" (198) between the questions


def test_long_pairs_are_truncated_from_the_longer_question(tiny_bert):
    tokenizer = load_tokenizer(tiny_params(tiny_bert).model)
    encoded = encode_pairs(tokenizer, ["short one"], [" ".join(["word"] * 100)], 16)
    assert len(encoded["input_ids"][0]) == 16
    assert tokenizer.decode(encoded["input_ids"][0]).startswith("[CLS] short one [SEP]")


def test_both_orders_average_is_symmetric(cross_encoder):
    params, tokenizer, model = cross_encoder
    forward = cross_encoder_proba(model, tokenizer, QUESTIONS_1, QUESTIONS_2, 32, 2)
    backward = cross_encoder_proba(model, tokenizer, QUESTIONS_2, QUESTIONS_1, 32, 2)
    assert not forward == pytest.approx(backward)  # a cross-encoder is not symmetric by itself
    both = cross_encoder_proba(model, tokenizer, QUESTIONS_1, QUESTIONS_2, 32, 2, both_orders=True)
    assert both == pytest.approx((forward + backward) / 2)
    assert both == pytest.approx(cross_encoder_proba(model, tokenizer, QUESTIONS_2, QUESTIONS_1, 32, 2, both_orders=True))


def test_batching_does_not_change_the_scores(cross_encoder):
    params, tokenizer, model = cross_encoder
    questions_1, questions_2 = QUESTIONS_1 * 3, QUESTIONS_2[::-1] * 3
    one_by_one = cross_encoder_proba(model, tokenizer, questions_1, questions_2, 32, 1)
    assert cross_encoder_proba(model, tokenizer, questions_1, questions_2, 32, 4) == pytest.approx(one_by_one, abs=1e-6)


def test_score_pairs_follows_eval_params(cross_encoder):
    params, tokenizer, model = cross_encoder
    for average in (True, False):
        chosen = params.model_copy(update={"eval": params.eval.model_copy(update={"average_orders": average})})
        expected = cross_encoder_proba(model, tokenizer, QUESTIONS_1, QUESTIONS_2, params.model.max_length,
                                       params.eval.batch_size, both_orders=average)
        assert score_pairs(model, tokenizer, QUESTIONS_1, QUESTIONS_2, chosen) == pytest.approx(expected)


def test_score_splits_scores_validation_and_test(cross_encoder):
    params, tokenizer, model = cross_encoder
    splits = {name: pd.DataFrame({"question_1": QUESTIONS_1[: n], "question_2": QUESTIONS_2[: n]})
              for name, n in (("train", 1), ("validation", 2), ("test", 3))}
    probs = score_splits(model, tokenizer, splits, params)
    assert list(probs) == ["validation", "test"] and [len(p) for p in probs.values()] == [2, 3]
    assert probs["test"] == pytest.approx(score_pairs(model, tokenizer, QUESTIONS_1, QUESTIONS_2, params))
    assert ((probs["test"] > 0) & (probs["test"] < 1)).all()


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_embeddings_are_unit_vectors_and_cosine_is_their_dot(tiny_bert, pooling):
    params = tiny_params(tiny_bert)
    tokenizer = load_tokenizer(params.model)
    encoder = load_encoder(params.model).eval()
    vectors = embed(encoder, tokenizer, QUESTIONS_1 + QUESTIONS_2, 32, 2, pooling)
    assert vectors.shape == (6, 32)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(6), abs=1e-5)
    similarity = cosine(encoder, tokenizer, QUESTIONS_1, QUESTIONS_2, 32, 2, pooling)
    assert similarity == pytest.approx((vectors[:3] * vectors[3:]).sum(axis=1), abs=1e-5)
    assert cosine(encoder, tokenizer, QUESTIONS_1, QUESTIONS_1, 32, 2, pooling) == pytest.approx(np.ones(3), abs=1e-5)


def test_embedding_a_chunk_at_a_time_gives_the_vectors_of_one_chunk(tiny_bert):
    """A large split is tokenised a chunk of texts at a time (memory): the same vectors, in order."""
    params = tiny_params(tiny_bert)
    tokenizer = load_tokenizer(params.model)
    encoder = load_encoder(params.model).eval()
    texts = QUESTIONS_1 + QUESTIONS_2 + [question + " and more, for longer" for question in QUESTIONS_1]
    whole = embed(encoder, tokenizer, texts, 32, 2, "mean")
    assert embed(encoder, tokenizer, texts, 32, 2, "mean", chunk=len(texts)).tobytes() == whole.tobytes()
    assert embed(encoder, tokenizer, texts, 32, 2, "mean", chunk=4) == pytest.approx(whole, abs=1e-6)


def test_cosine_embeds_each_distinct_question_once(tiny_bert, monkeypatch):
    """As in MQP, each question_1 comes in two pairs; the scores are those of embedding every pair."""
    params = tiny_params(tiny_bert)
    tokenizer = load_tokenizer(params.model)
    encoder = load_encoder(params.model).eval()
    question_1 = [QUESTIONS_1[0], QUESTIONS_1[0], QUESTIONS_1[1], QUESTIONS_1[1]]
    question_2 = [QUESTIONS_2[0], QUESTIONS_2[1], QUESTIONS_2[2], QUESTIONS_1[0]]
    first = embed(encoder, tokenizer, question_1, 32, 2, "mean")
    second = embed(encoder, tokenizer, question_2, 32, 2, "mean")
    embedded = []
    real_embed = encoding.embed
    monkeypatch.setattr(encoding, "embed", lambda encoder, tokenizer, texts, *args: embedded.extend(texts)
                        or real_embed(encoder, tokenizer, texts, *args))
    similarity = cosine(encoder, tokenizer, question_1, question_2, 32, 2, "mean")
    assert sorted(embedded) == sorted({*question_1, *question_2}) and len(embedded) == 5
    assert similarity == pytest.approx((first * second).sum(axis=1), abs=1e-5)


class DeviceSpy(torch.nn.Module):
    """A model that claims to live on `device` and records the device of every input it gets;
    its outputs are CPU zeros, so scoring can finish on a machine without that device."""

    def __init__(self, device: str):
        super().__init__()
        self.claimed = torch.device(device)
        self.seen = set()

    @property
    def device(self):
        return self.claimed

    def forward(self, **inputs):
        self.seen |= {value.device for value in inputs.values()}
        n = inputs["input_ids"].shape[0]
        return SimpleNamespace(logits=torch.zeros(n, 2), last_hidden_state=torch.zeros(n, 3, 4))


def test_inference_moves_every_batch_to_the_models_device(tiny_bert, monkeypatch):
    """Batches go where the model is (a GPU on a GPU machine); `meta` stands in for one here."""
    tokenizer = load_tokenizer(tiny_params(tiny_bert).model)
    spy = DeviceSpy("meta")
    assert len(cross_encoder_proba(spy, tokenizer, QUESTIONS_1, QUESTIONS_2, 48, 2, both_orders=True)) == 3
    assert spy.seen == {torch.device("meta")}
    spy.seen.clear()
    # pool() gets the model's hidden states (CPU zeros) and the batch's mask (on meta): CPU zeros out.
    monkeypatch.setattr(encoding, "pool", lambda hidden, mask, pooling: torch.zeros(hidden.shape[0], 4))
    assert embed(spy, tokenizer, QUESTIONS_1, 48, 2).shape == (3, 4)
    assert spy.seen == {torch.device("meta")}
