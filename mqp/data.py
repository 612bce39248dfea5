"""MQP data for fetch and prepare: the download, the checksum, row validation and splitting."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mqp.errors import PipelineError
from mqp.params import DataParams
from mqp.paths import RAW_CSV

COLUMNS = ["dr_id", "question_1", "question_2", "label"]
# Why a row is dropped, in the order the checks run (read_pairs).
DROP_REASONS = ("header row", "label not 0 or 1", "empty question", "conflicting labels", "duplicate pair")
# rejected.csv: where each dropped row was in the raw CSV, why, and the row as read.
REJECTED_COLUMNS = ["line", "reason", *COLUMNS]
# Where stage fetch downloads MQP when data/raw/mqp.csv is not there (its sha256 is params.yaml's data.sha256).
MQP_URL = "https://raw.githubusercontent.com/curai/medical-question-pair-dataset/master/mqp.csv"
OFFLINE_HINT = f"place the MQP CSV there yourself: mkdir -p {RAW_CSV.parent} && cp /path/to/mqp.csv {RAW_CSV}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, timeout: float = 30) -> None:
    """Download `url` to `dest` with a progress bar; `dest` appears only when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise PipelineError(f"could not download {url} ({reason}); offline? {OFFLINE_HINT}") from None
    os.replace(partial, dest)


def fetch_raw(raw_path: Path = RAW_CSV) -> bool:
    """Stage fetch: download MQP from MQP_URL unless the raw CSV is there (placed by hand, or
    downloaded before), which is kept as it is; whether it downloaded."""
    if raw_path.exists():
        return False
    download(MQP_URL, raw_path)
    return True


def checked_raw(params: DataParams, raw_path: Path = RAW_CSV) -> Path:
    """The raw CSV for prepare, its sha256 checked against data.sha256 (unless null)."""
    if not raw_path.exists():
        raise PipelineError(f"{raw_path} is not there: `dvc repro` downloads MQP to it (stage fetch); {OFFLINE_HINT}")
    if params.sha256 is not None:
        actual = sha256_of(raw_path)
        if actual != params.sha256:
            raise PipelineError(
                f"checksum mismatch for {raw_path}: sha256 {actual}, params.yaml data.sha256 expects "
                f"{params.sha256}; replace the file with the right one, or set data.sha256 to {actual} "
                "if you changed the data on purpose"
            )
    return raw_path


def read_pairs(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse and validate question pairs; returns the valid rows, and the rows dropped with their
    CSV line number and reason (REJECTED_COLUMNS).

    Structural problems (not UTF-8, broken CSV, wrong number of columns) are errors. Row-level
    problems (label not 0/1, empty question, conflicting labels, duplicate pair) drop the row. A
    pair is the same in either question order. A pair labelled both 0 and 1 loses all its rows:
    keeping the first would let row order pick the label. Of a pair repeated with one label, the
    first row stays.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PipelineError(
            f"{path} is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} on line {line}); "
            "re-save it as UTF-8"
        ) from None
    lines, rows = zip(*_parse_rows(path, text))
    table = pd.DataFrame(list(rows), columns=COLUMNS, index=pd.Index(lines, name="line"))
    for column in COLUMNS:
        table[column] = table[column].astype(str).str.strip()

    rejected: list[pd.DataFrame] = []

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal table
        if mask.any():
            rejected.append(table[mask].assign(reason=reason))
            table = table[~mask]

    drop(pd.Series(table.index == lines[0], index=table.index) & table["label"].eq("label"), "header row")
    drop(~table["label"].isin(["0", "1"]), "label not 0 or 1")
    drop(table["question_1"].eq("") | table["question_2"].eq(""), "empty question")
    pairs = unordered_pair(table).assign(label=table["label"])
    drop(pairs.groupby(["lower", "higher"])["label"].transform("nunique").gt(1), "conflicting labels")
    drop(unordered_pair(table).duplicated(keep="first"), "duplicate pair")
    rejected_rows = (pd.concat(rejected).sort_index().reset_index()[REJECTED_COLUMNS] if rejected
                     else pd.DataFrame(columns=REJECTED_COLUMNS))
    if table.empty:
        raise PipelineError(f"{path} has no valid rows (dropped: {format_drops(drop_counts(rejected_rows))})")
    table = table.assign(label=table["label"].astype(int)).reset_index(drop=True)
    return table, rejected_rows


def drop_counts(rejected: pd.DataFrame) -> dict[str, int]:
    """Rows dropped per reason, in the order the checks run."""
    counts = rejected["reason"].value_counts()
    return {reason: int(counts[reason]) for reason in DROP_REASONS if reason in counts}


def unordered_pair(table: pd.DataFrame) -> pd.DataFrame:
    """Each row's two questions in sorted order (columns lower, higher): similarity is symmetric,
    so (q2, q1) is the same pair as (q1, q2)."""
    q1, q2 = table["question_1"], table["question_2"]
    first_is_lower = q1 <= q2
    return pd.DataFrame({"lower": q1.where(first_is_lower, q2), "higher": q2.where(first_is_lower, q1)})


def _parse_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """(line it starts on, fields) of each CSV record of exactly len(COLUMNS) fields, blank lines
    skipped; any other shape is an error.

    The csv module rather than pandas: pandas pads a row with too few fields with empty strings,
    so a file cut off mid-row would pass as a row with a bad label.
    """
    shape = ", ".join(COLUMNS)
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1  # the line the record being read starts on
    try:
        for fields in reader:
            if len(fields) <= 1 and not "".join(fields).strip():
                start = reader.line_num + 1
                continue  # a blank line
            if len(fields) != len(COLUMNS):
                if not rows:
                    raise PipelineError(f"{path} has {len(fields)} columns, expected {len(COLUMNS)} without a header: {shape}")
                at_end = len(fields) < len(COLUMNS) and next(reader, None) is None and not text.endswith(("\n", "\r"))
                raise PipelineError(
                    f"{path} line {start} has {len(fields)} fields, expected {len(COLUMNS)} ({shape})"
                    + ("; the file ends mid-row, so it looks truncated: download or copy it again" if at_end else "")
                )
            rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            detail = f"line {start}: a quoted field is never closed; if the file was cut off, download or copy it again"
        else:
            detail = f"line {reader.line_num}: {exc}"
        raise PipelineError(f"{path} is not a valid CSV ({detail}); expected rows of {shape}") from None
    if not rows:
        raise PipelineError(f"{path} is empty")
    return rows


def format_drops(drops: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in drops.items()) or "none"


def split_pairs(table: pd.DataFrame, params: DataParams) -> dict[str, pd.DataFrame]:
    """Split into train/validation/test, as data.split says.

    kfold and grouped keep every question_1 in one split: MQP has two rewrites of each, so a
    row-wise split shows the model test questions during training. Both depend on the rows'
    content and the seed only, never on the CSV's row order. random is row-wise, as the
    reference recipe did.
    """
    if params.split == "random":
        splits = _random_split(table, params)
    else:
        groups = _shuffled_groups(table, params.seed)
        n_validation = round(params.validation_size * len(groups))
        if params.split == "kfold":
            test = groups[params.fold :: params.folds]  # every folds-th group: sizes differ by one at most
        else:
            test = groups[: round(params.test_size * len(groups))]
        in_test = set(test)
        rest = [group for group in groups if group not in in_test]
        members = {"train": rest[n_validation:], "validation": rest[:n_validation], "test": test}
        splits = {name: table[table["question_1"].isin(set(keys))] for name, keys in members.items()}
    for name, part in splits.items():
        if part.empty:
            raise PipelineError(f"the {name} split is empty: {len(table)} valid rows are too few for data.split={params.split}")
    return {name: part.reset_index(drop=True) for name, part in splits.items()}


def _shuffled_groups(table: pd.DataFrame, seed: int) -> list[str]:
    """The distinct question_1 values, sorted (so row order cannot matter), then seeded-shuffled."""
    groups = np.sort(table["question_1"].unique())
    return list(groups[np.random.default_rng(seed).permutation(len(groups))])


def _random_split(table: pd.DataFrame, params: DataParams) -> dict[str, pd.DataFrame]:
    from sklearn.model_selection import train_test_split  # here: sklearn's import is most of prepare's start-up

    held_out = params.validation_size + params.test_size
    try:
        train, rest = train_test_split(table, test_size=held_out, random_state=params.seed)
        validation, test = train_test_split(rest, test_size=params.test_size / held_out, random_state=params.seed)
    except ValueError:
        return {"train": table, "validation": table.iloc[:0], "test": table.iloc[:0]}
    return {"train": train, "validation": validation, "test": test}
