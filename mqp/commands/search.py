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

import pandas as pd

from mqp.cli import stage
from mqp.errors import PipelineError
from mqp.paths import INDEX_DIR
from mqp.search import Searcher, verdict_table

QUERY_COLUMN = "question"


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


def read_queries(path: str) -> list[str]:
    """The queries of a CSV's question column; any empty one stops with the rows named."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if QUERY_COLUMN not in table.columns:
        raise PipelineError(f"{path} has no column '{QUERY_COLUMN}' (its columns: {', '.join(map(str, table.columns))}); "
                            f"name the column of questions '{QUERY_COLUMN}'")
    queries = table[QUERY_COLUMN].str.strip()
    empty = [i + 1 for i in range(len(queries)) if not queries[i]]
    if empty or queries.empty:
        raise PipelineError(f"{path} has no questions" if queries.empty else
                            f"{path}: row(s) {', '.join(map(str, empty[:10]))} have an empty question; fill or remove them")
    return queries.tolist()


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
    searcher = Searcher.load(INDEX_DIR, params.eval.batch_size, params.retrieval.hnsw_ef_search)
    if args.csv:
        hits, verdicts = searcher.search(read_queries(args.csv), k)
        table = with_verdicts(hits, verdicts)
        if args.out and args.out != "-":
            table.to_csv(args.out, index=False, float_format="%.4f")
            answered = sum(v.answered for v in verdicts)
            print(f"search: {len(verdicts)} queries, {answered} already answered, {len(verdicts) - answered} no match; "
                  f"top {k} each -> {args.out}")
        else:
            print(table.to_csv(index=False, float_format="%.4f"), end="")
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
