"""CSV files a user hands a command (predict's pairs, search's queries), read a chunk of rows at a
time: memory stays bounded whatever the file's size, and a bad row, even in the last line of a
large file, gets one line that names it."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from mqp.errors import PipelineError


def csv_header(path: str) -> list[str]:
    """The CSV's column names."""
    return list(read_or_fail(lambda: pd.read_csv(path, dtype=str, nrows=0), path).columns)


def csv_chunks(path: str, chunk_rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """(number of the chunk's first row after the header, counted from 1; the chunk), every value a
    string, empty cells ''."""
    chunks = read_or_fail(lambda: pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_rows), path)
    first_row = 1
    while True:
        chunk = read_or_fail(lambda: next(chunks, None), path)
        if chunk is None:
            return
        yield first_row, chunk.reset_index(drop=True)
        first_row += len(chunk)


def read_or_fail(read, path: str):
    try:
        return read()
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def blank_rows(chunk: pd.DataFrame, columns: list[str], first_row: int) -> list[int]:
    """Numbers of the rows (after the header) where any of these columns is empty or whitespace."""
    blank = chunk[columns].apply(lambda column: column.str.strip().eq("")).any(axis=1).to_numpy()
    return [first_row + int(i) for i in blank.nonzero()[0]]


def rows_text(rows: list[int]) -> str:
    """e.g. 'row(s) 2, 3' (the first 10, then '...')."""
    return f"row(s) {', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''}"
