"""predict: score question pairs with the trained adapter.

    python -m mqp predict "question one" "question two"
    python -m mqp predict --csv pairs.csv --out scored.csv   # columns question_1, question_2

The output CSV has the input's columns plus prob_similar (P(similar), 4 decimals) and label (1 where
prob_similar >= eval.threshold). Which model scored them goes to stderr: the adapter's folder, its
base model, architecture and rank, and the git commit or DVC experiment that trained it.
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
from mqp.inference import score_pairs
from mqp.lora import load_trained
from mqp.metrics import predicted_labels
from mqp.models import load_tokenizer
from mqp.paths import ADAPTER_CONFIG, ADAPTER_DIR, TRAIN_REPORT
from mqp.runs import adapter_origin
from mqp.train_records import read_train_summary

PAIR = ["question_1", "question_2"]
CSV_FLOATS = "%.4f"  # prob_similar as written: 4 decimals, 0.9930 not 0.993
CHUNK_PAIRS = 10_000  # pairs read, scored and written at a time: a CSV of any size in bounded memory


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mqp predict", description=__doc__.splitlines()[0])
    parser.add_argument("question_1", nargs="?")
    parser.add_argument("question_2", nargs="?")
    parser.add_argument("--csv", help="input CSV with columns question_1, question_2")
    parser.add_argument("--out", help="output CSV (default: print to stdout)")
    args = parser.parse_args(argv)
    if (args.csv is None) == (args.question_1 is None or args.question_2 is None):
        parser.error("give two questions, or --csv FILE")
    return args


def pair_chunks(path: str, chunk_pairs: int):
    """The CSV's pairs, chunk_pairs rows at a time, each chunk checked: the header names question_1
    and question_2, no question is empty (the rows named)."""
    missing = sorted(set(PAIR) - set(csv_header(path)))
    if missing:
        raise PipelineError(f"{path} lacks column(s) {', '.join(missing)}; its header must name question_1 and question_2")
    for first_row, chunk in csv_chunks(path, chunk_pairs):
        blank = blank_rows(chunk, PAIR, first_row)
        if blank:
            raise PipelineError(f"{path}: {rows_text(blank)} (after the header) have an empty question; fill or remove them")
        yield chunk


def check_pairs_csv(path: str, chunk_pairs: int = CHUNK_PAIRS) -> int:
    """Read the whole CSV once, chunk by chunk, before any pair is scored: a bad row in its last
    line stops the run in seconds, not after hours of scoring. The number of pairs."""
    pairs = sum(len(chunk) for chunk in pair_chunks(path, chunk_pairs))
    if pairs == 0:
        raise PipelineError(f"{path} has no pairs below its header")
    return pairs


def scored(table: pd.DataFrame, model, tokenizer, params) -> pd.DataFrame:
    """The pairs with prob_similar and label."""
    probs = score_pairs(model, tokenizer, table["question_1"], table["question_2"], params)
    return table.assign(prob_similar=probs, label=predicted_labels(probs, params.eval.threshold))


def write_scored_csv(path: str, out, model, tokenizer, params, chunk_pairs: int = CHUNK_PAIRS) -> tuple[int, int]:
    """Score the CSV chunk by chunk into `out` (an open text file); (pairs, similar)."""
    pairs = similar = 0
    for chunk in pair_chunks(path, chunk_pairs):
        table = scored(chunk, model, tokenizer, params)
        out.write(table.to_csv(index=False, header=pairs == 0, float_format=CSV_FLOATS))
        pairs, similar = pairs + len(table), similar + int(table["label"].sum())
    return pairs, similar


def model_line(params) -> str:
    """e.g. `predict: model models/adapter: LoRA r=8 on sentence-transformers/all-MiniLM-L6-v2
    (bi-encoder), from git 9cacd04`."""
    return (f"predict: model {ADAPTER_DIR}: {adapter_kind()} {params.model.name} "
            f"({params.model.architecture}), from {adapter_origin()}")


def adapter_kind() -> str:
    """`LoRA r=8 on`, with the rank as the adapter's own config has it; `a soup of 2 LoRA r=8
    adapters on` where finetune's train.json lists the soup's members (the config gives the soup's
    rank, 2 x 8); `full fine-tuning of` where train.method full saved the whole model."""
    config = ADAPTER_DIR / ADAPTER_CONFIG
    if not config.exists():
        return "full fine-tuning of"
    rank = json.loads(config.read_text())["r"]
    members = len(read_train_summary(TRAIN_REPORT).members) if TRAIN_REPORT.exists() else 1
    return f"a soup of {members} LoRA r={rank // members} adapters on" if members > 1 else f"LoRA r={rank} on"


@stage("predict")
def main(params, argv=None) -> None:
    args = parse_args(argv)
    if args.csv:
        check_pairs_csv(args.csv)
    elif not (args.question_1.strip() and args.question_2.strip()):
        raise PipelineError("a question is empty: give two questions to compare")
    tokenizer = load_tokenizer(params.model)
    model = load_trained(params, tokenizer, ADAPTER_DIR)
    print(model_line(params), file=sys.stderr)
    if args.csv is None:
        table = scored(pd.DataFrame({"question_1": [args.question_1], "question_2": [args.question_2]}), model, tokenizer, params)
        verdict = "similar" if table["label"][0] else "different"
        print(f"{verdict} (label {table['label'][0]}, P(similar) = {table['prob_similar'][0]:.4f})")
    elif args.out:
        with atomic_file(args.out) as out:  # a failed run leaves an earlier --out file as it was
            pairs, similar = write_scored_csv(args.csv, out, model, tokenizer, params)
        print(f"predict: {pairs} pairs scored, {similar} similar -> {args.out}")
    else:
        write_scored_csv(args.csv, sys.stdout, model, tokenizer, params)


if __name__ == "__main__":
    main()
