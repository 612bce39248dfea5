"""search: has a question been answered, and where? The verdict, then the closest bank questions,
from the index that `dvc repro` built.

    python -m mqp search "Can I drink alcohol after antibiotics?" [--k 5] [--json]
    python -m mqp search --csv queries.csv --out found.csv     # a column `question`; --out - for stdout

The verdict is `already answered: "<question>" (id 123, P = 0.93)` or `no match (best P = 0.41,
threshold 0.62)`: P is the calibrated probability that the top hit answers the question, and the
threshold was chosen on the validation split for retrieval.false_match_cost (docs/retrieval.md).
Each hit comes with its score (retrieval.method's: fusion's cos(zero-shot) + w x cos(LoRA) by
default) and its P. Only sentence-transformers models and the index are loaded (mqp.search): no PEFT,
no training code.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from mqp.cli import stage
from mqp.csv_input import blank_rows, csv_chunks, csv_header, rows_text
from mqp.errors import PipelineError
from mqp.files import atomic_file
from mqp.paths import INDEX_DIR
from mqp.search import Searcher, verdict_table

QUERY_COLUMN = "question"
CHUNK_QUERIES = 10_000  # queries read, searched and written at a time: a CSV of any size in bounded memory


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mqp search", description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", help="the question to look up")
    parser.add_argument("--k", type=int, help="how many bank questions to return (default: retrieval.k)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--csv", help=f"batch mode: a CSV of queries with a '{QUERY_COLUMN}' column")
    parser.add_argument("--out", help="with --csv: the output CSV (default: stdout)")
    args = parser.parse_args(argv)
    if (args.csv is None) == (args.question is None):
        parser.error("give one question, or --csv FILE")
    if args.k is not None and args.k < 1:
        parser.error(f"--k must be at least 1, got {args.k}")
    return args


def query_chunks(path: str, chunk_queries: int):
    """The queries of a CSV's question column, chunk_queries at a time (stripped); any empty one
    stops with the rows named."""
    columns = csv_header(path)
    if QUERY_COLUMN not in columns:
        raise PipelineError(f"{path} has no column '{QUERY_COLUMN}' (its columns: {', '.join(map(str, columns))}); "
                            f"name the column of questions '{QUERY_COLUMN}'")
    for first_row, chunk in csv_chunks(path, chunk_queries):
        empty = blank_rows(chunk, [QUERY_COLUMN], first_row)
        if empty:
            raise PipelineError(f"{path}: {rows_text(empty)} have an empty question; fill or remove them")
        yield chunk[QUERY_COLUMN].str.strip().tolist()


def check_queries_csv(path: str, chunk_queries: int = CHUNK_QUERIES) -> int:
    """Read the whole CSV once before any query is searched, so that a bad row in its last line
    stops the run at once; the number of queries."""
    queries = sum(len(chunk) for chunk in query_chunks(path, chunk_queries))
    if queries == 0:
        raise PipelineError(f"{path} has no questions")
    return queries


def write_found_csv(searcher: Searcher, path: str, out, k: int, chunk_queries: int = CHUNK_QUERIES) -> tuple[int, int]:
    """Search the CSV's queries chunk by chunk into `out` (an open text file): each query's verdict
    and its top k hits. (queries, already answered)."""
    queries = answered = 0
    for chunk in query_chunks(path, chunk_queries):
        hits, verdicts = searcher.search(chunk, k)
        out.write(with_verdicts(hits, verdicts).to_csv(index=False, header=queries == 0, float_format="%.4f"))
        queries, answered = queries + len(verdicts), answered + sum(v.answered for v in verdicts)
    return queries, answered


def with_verdicts(hits: pd.DataFrame, verdicts) -> pd.DataFrame:
    """The hits with their query's verdict, matched id and P on every row (batch output)."""
    table = verdict_table(verdicts).drop(columns=["match_question"]).rename(columns={"p_answered": "verdict_p"})
    return table.merge(hits, on="query", how="right")[["query", "verdict", "match_id", "verdict_p", "threshold",
                                                        *hits.columns.drop("query")]]


def table_text(hits: pd.DataFrame) -> str:
    lines = ["rank  P(answered)  score  question (id)"]
    for hit in hits.itertuples():
        lines.append(f"{hit.rank:>4}  {hit.p_answered:.4f}  {hit.score:+.3f}  {hit.question} (id {hit.id})")
    return "\n".join(lines)


@stage("search")
def main(params, argv=None) -> None:
    args = parse_args(argv)
    k = args.k or params.retrieval.k
    if args.question is not None and not args.question.strip():
        raise PipelineError("the question is empty: give the question to look up")
    if args.csv:
        check_queries_csv(args.csv)
    searcher = Searcher.load(INDEX_DIR, params.eval.batch_size, params.retrieval.hnsw_ef_search)
    if args.csv and args.out and args.out != "-":
        with atomic_file(args.out) as out:  # a failed run leaves an earlier --out file as it was
            queries, answered = write_found_csv(searcher, args.csv, out, k)
        print(f"search: {queries} queries, {answered} already answered, {queries - answered} no match; "
              f"top {k} each -> {args.out}")
        return
    if args.csv:
        write_found_csv(searcher, args.csv, sys.stdout, k)
        return
    question = args.question.strip()
    hits, (verdict,) = searcher.search([question], k)
    if args.json:
        print(json.dumps({"query": question, "verdict": "already answered" if verdict.answered else "no match",
                          "match_id": verdict.match_id, "match_question": verdict.match_question,
                          "p_answered": verdict.p_answered, "threshold": verdict.threshold,
                          "hits": hits.drop(columns="query").to_dict(orient="records")}, indent=2))
    else:
        print(verdict.text())
        print(table_text(hits))


if __name__ == "__main__":
    main()
