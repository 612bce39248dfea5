"""Tokenising and embedding texts in length-sorted batches: the helpers that scoring, training and
the zero-shot baseline share, whichever the architecture."""

from __future__ import annotations

import numpy as np
import torch

from mqp.biencoder import pool
from mqp.models import inference_batch_size

# Tokenizers without a separator token (GPT-2, Llama) would glue the two questions together.
PAIR_SEPARATOR = "\n"
# The tokenizer outputs a model takes (token_type_ids where the tokenizer makes them).
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def encode_pairs(tokenizer, question_1, question_2, max_length: int) -> dict:
    """Tokenise question pairs once; truncation takes from the longer question first."""
    if tokenizer.sep_token is None:
        question_1 = [q + PAIR_SEPARATOR for q in question_1]
    return tokenizer(list(question_1), list(question_2), truncation="longest_first", max_length=max_length)


def length_sorted_batches(encoded: dict, batch_size: int | str):
    """Index batches of similar length, so padding stays small (batch_size may be auto)."""
    batch_size = inference_batch_size(batch_size)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


# Texts tokenised at a time by embed(): a tokenised text holds ~7.5 KB (the fast tokenizer's
# encodings), so a large split is tokenised a chunk at a time, not whole.
EMBED_CHUNK = 20_000


def embed(encoder, tokenizer, texts, max_length: int, batch_size: int | str, pooling: str = "mean",
          chunk: int = EMBED_CHUNK) -> np.ndarray:
    """L2-normalised sentence embeddings (see biencoder.pool), `chunk` texts at a time; each
    chunk's batches are sorted by length."""
    texts = list(texts)
    parts = [embed_chunk(encoder, tokenizer, texts[start : start + chunk], max_length, batch_size, pooling)
             for start in range(0, max(len(texts), 1), chunk)]  # no texts: one empty chunk, as before
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


@torch.inference_mode()
def embed_chunk(encoder, tokenizer, texts: list, max_length: int, batch_size: int | str, pooling: str) -> np.ndarray:
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    out = None
    for index in length_sorted_batches(encoded, batch_size):
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
