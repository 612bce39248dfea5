"""search: the bank questions closest to a question, from the index that `dvc repro` built.

    python -m stages.search "Can I drink alcohol after antibiotics?" [--k 5] [--json]
    python -m stages.search --csv queries.csv --out found.csv     # a column `question`; --out - for stdout

Each hit comes with its cosine and the bi-encoder's calibrated P(similar) = sigmoid(scale * cosine +
bias); hits at or above its threshold are marked similar. Only the exported model (models/merged,
through sentence-transformers) and the index (models/index) are loaded: no PEFT, no training code.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from mqp.cli import stage
from mqp.errors import PipelineError
from mqp.paths import INDEX_DIR, MERGED_DIR
from mqp.retrieval import encode, hnsw_top_k, load_exported, load_hnsw, load_index, probability, read_index_meta, top_k

QUERY_COLUMN = "question"
COLUMNS = ["query", "rank", "id", "question", "cosine", "prob_similar", "similar"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.search", description=__doc__.splitlines()[0])
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


def search(queries: list[str], k: int, retrieval, batch_size: int | str) -> pd.DataFrame:
    """The top k bank questions of each query, one row per hit (COLUMNS)."""
    model, calibration = load_exported(MERGED_DIR)
    meta = read_index_meta(INDEX_DIR)
    if meta.get("architecture") != "bi-encoder":
        raise PipelineError(f"the index in {INDEX_DIR} was built for a cross-encoder: run `dvc repro index`")
    index = load_index(INDEX_DIR)
    vectors = encode(model, queries, batch_size)
    if vectors.shape[1] != index.embeddings.shape[1]:
        raise PipelineError(f"{INDEX_DIR} holds {index.embeddings.shape[1]}-dimensional embeddings, {MERGED_DIR} "
                            f"makes {vectors.shape[1]}: run `dvc repro index`")
    if retrieval.search == "hnsw":
        scores, positions = hnsw_top_k(load_hnsw(INDEX_DIR), vectors, k, retrieval.hnsw_ef_search)
    else:
        scores, positions = top_k(index.embeddings, vectors, k)
    probs = probability(scores, calibration)
    rows = [(query, rank + 1, index.ids[position], index.texts[position], round(float(score), 4),
             round(float(prob), 4), bool(prob >= calibration["threshold"]))
            for query, hit_scores, hit_positions, hit_probs in zip(queries, scores, positions, probs)
            for rank, (score, position, prob) in enumerate(zip(hit_scores, hit_positions, hit_probs))]
    return pd.DataFrame(rows, columns=COLUMNS)


def table_text(hits: pd.DataFrame) -> str:
    lines = ["rank  P(similar)  cosine  question (id)"]
    for hit in hits.itertuples():
        mark = "similar  " if hit.similar else "         "
        lines.append(f"{hit.rank:>4}  {hit.prob_similar:.4f} {mark}{hit.cosine:+.3f}  {hit.question} (id {hit.id})")
    return "\n".join(lines)


@stage("search")
def main(params, argv=None) -> None:
    args = parse_args(argv)
    k = args.k or params.retrieval.k
    if args.csv:
        hits = search(read_queries(args.csv), k, params.retrieval, params.eval.batch_size)
        if args.out and args.out != "-":
            hits.to_csv(args.out, index=False)
            print(f"search: {hits['query'].nunique()} queries, top {k} each, {int(hits['similar'].sum())} hits "
                  f"marked similar -> {args.out}")
        else:
            print(hits.to_csv(index=False), end="")
        return
    if not args.question.strip():
        raise PipelineError("the question is empty: give the question to look up")
    hits = search([args.question.strip()], k, params.retrieval, params.eval.batch_size)
    if args.json:
        print(json.dumps({"query": args.question.strip(),
                          "hits": hits.drop(columns="query").to_dict(orient="records")}, indent=2))
    else:
        print(table_text(hits))


if __name__ == "__main__":
    main()
