"""Nearest neighbours of unit vectors, by inner product (cosine): exact top_k, one matrix product
per block of queries; approximate top_k through a faiss HNSW graph for large banks; and how much of
the exact top-k the approximate search finds. Only numpy (and faiss for HNSW)."""

from __future__ import annotations

import numpy as np

# Scores held at once while searching: queries x bank floats (128 MB), so a large batch of
# queries against a 1M bank runs in chunks instead of one matrix of queries x 1M.
SCORE_BLOCK = 1 << 25


def query_blocks(queries: int, bank: int):
    """(start, stop) of blocks of queries whose scores against the bank fit SCORE_BLOCK floats:
    a large batch of queries is scored a block at a time, never as one queries x bank matrix."""
    block = max(1, SCORE_BLOCK // max(bank, 1))
    return [(start, min(start + block, queries)) for start in range(0, queries, block)]


def top_k(bank: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k bank rows most similar (inner product; cosine for unit rows) to each query row, best
    first: (scores, positions), each of shape (queries, min(k, bank size)). Ties go to the lower
    position. Exact: one matrix product per block of queries."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    queries = np.atleast_2d(queries)
    k = min(k, len(bank))
    scores, positions = [], []
    for start, stop in query_blocks(len(queries), len(bank)):
        block_scores = queries[start:stop] @ bank.T
        # argpartition finds the k best in linear time; only those k are then sorted.
        best = np.argpartition(-block_scores, k - 1, axis=1)[:, :k] if k < len(bank) else \
            np.broadcast_to(np.arange(len(bank)), block_scores.shape)
        best_scores = np.take_along_axis(block_scores, best, axis=1)
        order = np.lexsort((best, -best_scores), axis=1)  # by score, then by position
        positions.append(np.take_along_axis(best, order, axis=1))
        scores.append(np.take_along_axis(best_scores, order, axis=1))
    return np.concatenate(scores), np.concatenate(positions)


def ranks_of(scores: np.ndarray, targets) -> np.ndarray:
    """1-based rank of item targets[i] in row i of a (queries x bank) score matrix. An item tied
    on score with others takes the lowest of their ranks (ties count against it): rank = the
    number of items scoring at least as high, itself included. Exclude an item (the query
    itself) by giving it the score -inf."""
    targets = np.asarray(targets)
    target_scores = scores[np.arange(len(targets)), targets]
    return (scores >= target_scores[:, None]).sum(axis=1)


# --- approximate search (faiss HNSW), for banks where exact search is too slow -----------------


def build_hnsw(embeddings: np.ndarray, m: int, ef_construction: int):
    """A faiss HNSW graph over the unit embeddings, by inner product (cosine)."""
    import faiss

    index = faiss.IndexHNSWFlat(embeddings.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def hnsw_top_k(index, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray]:
    """top_k through the HNSW graph: (scores, positions), approximately the k best."""
    import faiss

    k = min(k, index.ntotal)
    parameters = faiss.SearchParametersHNSW(efSearch=max(ef_search, k))
    scores, positions = index.search(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), k,
                                     params=parameters)
    return scores, positions


def recall_at_k(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k positions that the approximate search found (rows: queries)."""
    found = sum(len(set(a) & set(e)) for a, e in zip(approximate.tolist(), exact.tolist()))
    return found / exact.size
