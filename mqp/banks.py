"""Question banks and their index on disk: MQP's questions or a user's CSV (with the rows it drops,
and why), and the embedded bank (Index) saved and loaded with its meta and HNSW graph."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mqp.errors import PipelineError
from mqp.files import write_json
from mqp.paths import INDEX_BANK, INDEX_EMBEDDINGS, INDEX_HNSW, INDEX_META, PREPARED_DIR, SPLITS


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
