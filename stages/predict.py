"""predict: score question pairs with the trained adapter.

    python -m stages.predict "question one" "question two"
    python -m stages.predict --csv pairs.csv --out scored.csv   # columns question_1, question_2
"""

from __future__ import annotations

import argparse

import pandas as pd

from mqp.cli import stage
from mqp.errors import PipelineError
from mqp.inference import score_pairs
from mqp.lora import load_trained
from mqp.metrics import predicted_labels
from mqp.models import load_tokenizer
from mqp.paths import ADAPTER_DIR


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__.splitlines()[0])
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
    missing = {"question_1", "question_2"} - set(table.columns)
    if missing:
        raise PipelineError(f"{path} lacks column(s) {', '.join(sorted(missing))}; its header must name question_1 and question_2")
    return table


@stage("predict")
def main(params, argv=None) -> None:
    args = parse_args(argv)
    if args.csv:
        table = read_pairs_csv(args.csv)
    else:
        table = pd.DataFrame({"question_1": [args.question_1], "question_2": [args.question_2]})
    tokenizer = load_tokenizer(params.model)
    model = load_trained(params, tokenizer, ADAPTER_DIR)
    probs = score_pairs(model, tokenizer, table["question_1"], table["question_2"], params)
    table["prob_similar"] = probs.round(4)
    table["label"] = predicted_labels(probs, params.eval.threshold)
    if args.csv is None:
        verdict = "similar" if table["label"][0] else "different"
        print(f"{verdict} (label {table['label'][0]}, P(similar) = {probs[0]:.4f})")
    elif args.out:
        table.to_csv(args.out, index=False)
        print(f"predict: {len(table)} pairs scored, {int(table['label'].sum())} similar -> {args.out}")
    else:
        print(table.to_csv(index=False), end="")


if __name__ == "__main__":
    main()
