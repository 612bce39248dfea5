"""A split of MQP pairs as a ranking task: each question_1 a query, every distinct question of the
split the bank, its similar rewrite the answer and its dissimilar one a hard negative; BM25 as the
lexical baseline. The ranking statistics live in mqp.stats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mqp.errors import PipelineError
from mqp.nearest import query_blocks, ranks_of

# BM25 (bm25s): its defaults (Lucene's BM25, k1 1.5, b 0.75) on lowercase words, English stopwords out.
BM25_STOPWORDS = "en"


@dataclass(frozen=True)
class RankingTask:
    """Each query (a question_1 with one similar and one dissimilar rewrite) against a bank of every
    distinct question of the split; positions index `bank`."""

    bank: list[str]
    queries: np.ndarray
    relevant: np.ndarray  # the similar rewrite of each query
    negative: np.ndarray  # its dissimilar rewrite: a hard negative
    skipped: int  # question_1s without exactly one rewrite of each label

    def ranks(self, scores: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(relevant ranks, hard-negative ranks) of the queries from `start` on, from their rows of
        the (queries x bank) scores, each query's own question left out of its bank."""
        scores = np.array(scores, dtype=np.float64)
        stop = start + len(scores)
        scores[np.arange(len(scores)), self.queries[start:stop]] = -np.inf
        return ranks_of(scores, self.relevant[start:stop]), ranks_of(scores, self.negative[start:stop])

    def ranks_by(self, score_rows) -> tuple[np.ndarray, np.ndarray]:
        """ranks() a block of queries at a time: score_rows(start, stop) gives their score rows."""
        parts = [self.ranks(score_rows(start, stop), start) for start, stop in query_blocks(len(self.queries), len(self.bank))]
        return tuple(np.concatenate(part) for part in zip(*parts))


def ranking_task(pairs: pd.DataFrame) -> RankingTask:
    """The ranking task of a split of pairs (question_1, question_2, label)."""
    bank = sorted(set(pairs["question_1"]) | set(pairs["question_2"]))
    position = {text: i for i, text in enumerate(bank)}
    queries, relevant, negative, skipped = [], [], [], 0
    for question, rows in pairs.groupby("question_1", sort=True):
        similar = rows.loc[rows["label"] == 1, "question_2"].tolist()
        dissimilar = rows.loc[rows["label"] == 0, "question_2"].tolist()
        if len(similar) != 1 or len(dissimilar) != 1 or question in (similar[0], dissimilar[0]):
            skipped += 1
            continue
        queries.append(position[question])
        relevant.append(position[similar[0]])
        negative.append(position[dissimilar[0]])
    if len(queries) < 2:
        raise PipelineError(f"only {len(queries)} test question_1s have one similar and one dissimilar rewrite; "
                            "retrieval metrics need at least 2")
    return RankingTask(bank, np.array(queries), np.array(relevant), np.array(negative), skipped)


def bm25_scorer(bank: list[str]):
    """A BM25 index of the bank (bm25s), as a function: queries -> their scores against every bank
    question (queries x bank), for one block of queries at a time. A query of stopwords only matches
    nothing: all its scores are 0."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(bank, stopwords=BM25_STOPWORDS, show_progress=False), show_progress=False)

    def scores(queries: list[str]) -> np.ndarray:
        tokens = bm25s.tokenize(queries, stopwords=BM25_STOPWORDS, return_ids=False, show_progress=False)
        return np.stack([retriever.get_scores(query) if query else np.zeros(len(bank)) for query in tokens]).astype(np.float64)

    return scores
