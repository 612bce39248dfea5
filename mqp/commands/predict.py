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
from mqp.errors import PipelineError
from mqp.inference import score_pairs
from mqp.lora import load_trained
from mqp.metrics import predicted_labels
from mqp.models import load_tokenizer
from mqp.paths import ADAPTER_CONFIG, ADAPTER_DIR, TRAIN_REPORT
from mqp.runs import adapter_origin
from mqp.train_records import read_train_summary

PAIR = ["question_1", "question_2"]
CSV_FLOATS = "%.4f"  # prob_similar as written: 4 decimals, 0.9930 not 0.993


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


def read_pairs_csv(path: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = set(PAIR) - set(table.columns)
    if missing:
        raise PipelineError(f"{path} lacks column(s) {', '.join(sorted(missing))}; its header must name question_1 and question_2")
    if table.empty:
        raise PipelineError(f"{path} has no pairs below its header")
    blank = table[PAIR].apply(lambda column: column.str.strip().eq("")).any(axis=1).to_numpy()
    if blank.any():
        rows = [str(i + 1) for i in blank.nonzero()[0]]
        raise PipelineError(f"{path}: row(s) {', '.join(rows[:10])}{' ...' if len(rows) > 10 else ''} (after the header) "
                            "have an empty question; fill or remove them")
    return table


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
        table = read_pairs_csv(args.csv)
    elif not (args.question_1.strip() and args.question_2.strip()):
        raise PipelineError("a question is empty: give two questions to compare")
    else:
        table = pd.DataFrame({"question_1": [args.question_1], "question_2": [args.question_2]})
    tokenizer = load_tokenizer(params.model)
    model = load_trained(params, tokenizer, ADAPTER_DIR)
    print(model_line(params), file=sys.stderr)
    probs = score_pairs(model, tokenizer, table["question_1"], table["question_2"], params)
    table["prob_similar"] = probs
    table["label"] = predicted_labels(probs, params.eval.threshold)
    if args.csv is None:
        verdict = "similar" if table["label"][0] else "different"
        print(f"{verdict} (label {table['label'][0]}, P(similar) = {probs[0]:.4f})")
    elif args.out:
        table.to_csv(args.out, index=False, float_format=CSV_FLOATS)
        print(f"predict: {len(table)} pairs scored, {int(table['label'].sum())} similar -> {args.out}")
    else:
        print(table.to_csv(index=False, float_format=CSV_FLOATS), end="")


if __name__ == "__main__":
    main()
