"""Question retrieval: a bank of questions embedded once, searched by one matrix product per batch of
queries; the bank and its index on disk; the MQP test fold as a ranking task; BM25 as the lexical
baseline.

Search needs only numpy and the exported sentence-transformers model (no PEFT, no training code);
the ranking statistics live in mqp.stats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mqp.errors import PipelineError
from mqp.files import write_json
from mqp.models import inference_batch_size
from mqp.paths import CALIBRATION_JSON, INDEX_BANK, INDEX_EMBEDDINGS, INDEX_HNSW, INDEX_META, PREPARED_DIR, SPLITS

# Scores held at once while searching: queries x bank floats (128 MB), so a large batch of
# queries against a 1M bank runs in chunks instead of one matrix of queries x 1M.
SCORE_BLOCK = 1 << 25
# BM25 (bm25s): its defaults (Lucene's BM25, k1 1.5, b 0.75) on lowercase words, English stopwords out.
BM25_STOPWORDS = "en"


@dataclass(frozen=True)
class Index:
    """A question bank and its embeddings: row i of `embeddings` (unit length) is `texts[i]`."""

    embeddings: np.ndarray
    texts: list[str]
    ids: list[str]

    def __post_init__(self):
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.texts) or len(self.texts) != len(self.ids):
            raise ValueError(f"an index needs one embedding row, text and id per question; got embeddings "
                             f"{self.embeddings.shape}, {len(self.texts)} texts, {len(self.ids)} ids")
        if len(self.texts) == 0:
            raise ValueError("an index needs at least one question")


# --- exact search -------------------------------------------------------------------------------


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


# --- the index on disk --------------------------------------------------------------------------


def save_index(index: Index, folder: Path, meta: dict, hnsw=None) -> None:
    """embeddings.npy, bank.csv (id, question), index.json (meta), and hnsw.faiss when given."""
    np.save(folder / INDEX_EMBEDDINGS, np.ascontiguousarray(index.embeddings, dtype=np.float32))
    pd.DataFrame({"id": index.ids, "question": index.texts}).to_csv(folder / INDEX_BANK, index=False)
    write_json(folder / INDEX_META, {**meta, "size": len(index.texts), "dimension": int(index.embeddings.shape[1])})
    if hnsw is not None:
        import faiss

        faiss.write_index(hnsw, str(folder / INDEX_HNSW))


def read_index_meta(folder: Path) -> dict:
    path = folder / INDEX_META
    if not path.exists():
        raise PipelineError(f"no index in {folder}: run `dvc repro index`")
    return json.loads(path.read_text())


def load_index(folder: Path) -> Index:
    read_index_meta(folder)
    bank = pd.read_csv(folder / INDEX_BANK, dtype=str, keep_default_na=False)
    embeddings = np.load(folder / INDEX_EMBEDDINGS)
    return Index(embeddings, bank["question"].tolist(), bank["id"].tolist())


def load_hnsw(folder: Path):
    import faiss

    path = folder / INDEX_HNSW
    if not path.exists():
        raise PipelineError(f"{folder} has no HNSW graph: run `dvc repro index` with retrieval.search: hnsw")
    return faiss.read_index(str(path))


# --- question banks -----------------------------------------------------------------------------


def is_mqp_bank(bank: str) -> bool:
    """retrieval.bank names prepare's output folder: the MQP questions."""
    return Path(bank) == PREPARED_DIR


def mqp_bank(prepared: Path = PREPARED_DIR) -> pd.DataFrame:
    """Every distinct question of the prepared splits (question_1s and question_2s), sorted, with
    ids 1..n in that order."""
    questions = set()
    for split in SPLITS:
        path = prepared / f"{split}.csv"
        if not path.exists():
            raise PipelineError(f"{path} not found: run `dvc repro prepare` first")
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        questions.update(table["question_1"]), questions.update(table["question_2"])
    texts = sorted(q for q in questions if q.strip())
    return pd.DataFrame({"id": [str(i) for i in range(1, len(texts) + 1)], "question": texts})


def read_bank_csv(path: Path, column: str) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """A user's bank: the CSV's `column`, one question per row. Returns the kept questions (id: the
    row number, 1 = the first row after the header) and the dropped rows' numbers by reason
    (empty question; a repeat of an earlier row's question, compared after trimming spaces)."""
    if not path.is_file():
        raise PipelineError(f"retrieval.bank: {path} not found; set it to a CSV file with a '{column}' column, "
                            f"or to {PREPARED_DIR} for the MQP questions")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PipelineError(f"{path} is not a valid CSV ({str(exc).splitlines()[0]}); it needs a header "
                            f"row naming a '{column}' column") from None
    if column not in table.columns:
        raise PipelineError(f"{path} has no column '{column}' (its columns: {', '.join(map(str, table.columns))}); "
                            "set retrieval.bank_column to the one holding the questions")
    questions = table[column].str.strip()
    rows = pd.Series(range(1, len(table) + 1))
    empty = questions.eq("")
    repeated = questions.duplicated(keep="first") & ~empty
    drops = {reason: rows[mask.to_numpy()].tolist() for reason, mask in
             (("empty question", empty), ("repeats an earlier row's question", repeated)) if mask.any()}
    kept = ~(empty | repeated).to_numpy()
    if not kept.any():
        raise PipelineError(f"{path} has no questions in its '{column}' column")
    return pd.DataFrame({"id": rows[kept].astype(str).tolist(), "question": questions[kept].tolist()}), drops


def drop_lines(path: Path, drops: dict[str, list[int]], shown: int = 10) -> list[str]:
    """One line per reason rows were dropped, naming the rows (the first `shown` of them)."""
    lines = []
    for reason, rows in drops.items():
        listed = ", ".join(map(str, rows[:shown])) + (f" and {len(rows) - shown} more" if len(rows) > shown else "")
        lines.append(f"{path}: dropped {len(rows)} row{'s' if len(rows) > 1 else ''} ({reason}): row{'s' if len(rows) > 1 else ''} "
                     f"{listed}; row 1 is the first after the header")
    return lines


# --- the exported model -------------------------------------------------------------------------

BI_ENCODER_NEEDED = ("retrieval needs the bi-encoder: {folder} holds a cross-encoder, which scores a pair in one "
                     "input and embeds no question alone; run `dvc exp run -S model.architecture=bi-encoder` "
                     "(or set it in params.yaml and `dvc repro`)")


def is_bi_encoder(folder: Path) -> bool:
    """export saves the bi-encoder with its calibration, the cross-encoder without."""
    return (folder / CALIBRATION_JSON).exists()


def load_exported(folder: Path):
    """The exported bi-encoder as sentence-transformers loads it (no PEFT, no project code), and
    its calibration (scale, bias, threshold)."""
    if not folder.is_dir():
        raise PipelineError(f"no exported model in {folder}: run `dvc repro export`")
    if not is_bi_encoder(folder):
        raise PipelineError(BI_ENCODER_NEEDED.format(folder=folder))
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), local_files_only=True)
    return model, json.loads((folder / CALIBRATION_JSON).read_text())


def encode(model, texts, batch_size: int | str) -> np.ndarray:
    """Unit-length float32 embeddings of texts (the exported model normalises them itself);
    batch_size may be auto (eval.batch_size)."""
    return model.encode(list(texts), batch_size=inference_batch_size(batch_size), convert_to_numpy=True,
                        show_progress_bar=False)


def probability(cosine, calibration: dict) -> np.ndarray:
    """P(similar) = sigmoid(scale * cosine + bias), the bi-encoder's calibrated head."""
    return 1 / (1 + np.exp(-(calibration["scale"] * np.asarray(cosine, dtype=np.float64) + calibration["bias"])))


# --- the test fold as a ranking task ------------------------------------------------------------


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


def bm25_scores(bank: list[str], queries: list[str]) -> np.ndarray:
    """BM25 score of every bank question for each query (queries x bank), from bm25s. A query of
    stopwords only matches nothing: all its scores are 0."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(bank, stopwords=BM25_STOPWORDS, show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(queries, stopwords=BM25_STOPWORDS, return_ids=False, show_progress=False)
    return np.stack([retriever.get_scores(query) if query else np.zeros(len(bank)) for query in tokens]).astype(np.float64)
