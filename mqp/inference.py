"""Scoring question pairs: P(similar) from a cross-encoder or a bi-encoder, in length-sorted batches."""

from __future__ import annotations

import numpy as np
import torch

from mqp.biencoder import BiEncoder, pool
from mqp.models import inference_batch_size
from mqp.params import Params

# Tokenizers without a separator token (GPT-2, Llama) would glue the two questions together.
PAIR_SEPARATOR = "\n"


def encode_pairs(tokenizer, question_1, question_2, max_length: int) -> dict:
    """Tokenise question pairs once; truncation takes from the longer question first."""
    if tokenizer.sep_token is None:
        question_1 = [q + PAIR_SEPARATOR for q in question_1]
    return tokenizer(list(question_1), list(question_2), truncation="longest_first", max_length=max_length)


def _length_sorted_batches(encoded: dict, batch_size: int | str):
    """Index batches of similar length, so padding stays small (batch_size may be auto)."""
    batch_size = inference_batch_size(batch_size)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.inference_mode()
def _cross_encoder_proba(model, tokenizer, question_1, question_2, max_length: int, batch_size: int | str) -> np.ndarray:
    encoded = encode_pairs(tokenizer, question_1, question_2, max_length)
    probs = np.empty(len(encoded["input_ids"]), dtype=np.float64)
    for index in _length_sorted_batches(encoded, batch_size):
        batch = tokenizer.pad({key: [encoded[key][i] for i in index] for key in encoded.keys()}, return_tensors="pt")
        logits = model(**batch.to(model.device)).logits.float()
        probs[index] = torch.softmax(logits, dim=-1)[:, 1].double().cpu().numpy()
    return probs


def cross_encoder_proba(model, tokenizer, question_1, question_2, max_length: int, batch_size: int | str,
                        both_orders: bool = False) -> np.ndarray:
    """P(similar) for each pair. both_orders: the mean over (q1, q2) and (q2, q1), since
    similarity is symmetric but a cross-encoder's input is not."""
    probs = _cross_encoder_proba(model, tokenizer, question_1, question_2, max_length, batch_size)
    if both_orders:
        probs = (probs + _cross_encoder_proba(model, tokenizer, question_2, question_1, max_length, batch_size)) / 2
    return probs


@torch.inference_mode()
def embed(encoder, tokenizer, texts, max_length: int, batch_size: int | str, pooling: str = "mean") -> np.ndarray:
    """L2-normalised sentence embeddings (see biencoder.pool)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    out = None
    for index in _length_sorted_batches(encoded, batch_size):
        batch = tokenizer.pad({key: [encoded[key][i] for i in index] for key in encoded.keys()},
                              return_tensors="pt").to(encoder.device)
        pooled = pool(encoder(**batch).last_hidden_state, batch["attention_mask"], pooling)
        if out is None:
            out = np.empty((len(encoded["input_ids"]), pooled.shape[-1]), dtype=np.float32)
        out[index] = pooled.float().cpu().numpy()
    return out


def cosine(encoder, tokenizer, question_1, question_2, max_length: int, batch_size: int | str, pooling: str) -> np.ndarray:
    """Cosine similarity of each pair's two sentence embeddings. Each distinct question is
    embedded once: in MQP every question_1 is in two pairs, so that is a quarter fewer texts."""
    texts, where = np.unique(np.array([*question_1, *question_2], dtype=object), return_inverse=True)
    vectors = embed(encoder, tokenizer, texts, max_length, batch_size, pooling)
    first, second = vectors[where[: len(where) // 2]], vectors[where[len(where) // 2 :]]
    return (first * second).sum(axis=1).astype(np.float64)


@torch.inference_mode()
def score_pairs(model, tokenizer, question_1, question_2, params: Params) -> np.ndarray:
    """P(similar) for each pair, from either architecture, as params.model and params.eval say."""
    if isinstance(model, BiEncoder):
        similarity = cosine(model.encoder, tokenizer, question_1, question_2, params.model.max_length,
                            params.eval.batch_size, model.pooling)
        logit = model.logit(torch.as_tensor(similarity, device=model.scale.device, dtype=model.scale.dtype))
        return torch.sigmoid(logit).double().cpu().numpy()
    return cross_encoder_proba(model, tokenizer, question_1, question_2, params.model.max_length,
                               params.eval.batch_size, params.eval.average_orders)


def score_splits(model, tokenizer, splits: dict, params: Params, names=("validation", "test")) -> dict[str, np.ndarray]:
    """P(similar) for the pairs of each named split."""
    return {name: score_pairs(model, tokenizer, splits[name]["question_1"], splits[name]["question_2"], params)
            for name in names}
