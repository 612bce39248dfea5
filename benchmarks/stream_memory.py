"""Batch predict and batch search on a large CSV in bounded memory: `python -m mqp predict --csv big.csv
--out ...` over ROWS pairs (or `python -m mqp search --csv` over ROWS queries, --command search), with a
tiny BERT bi-encoder trained for one epoch on 64 synthetic questions (memory, not speed or accuracy, is
the point). Prints the peak RSS and wall time of the command, and of the same command on a CSV ten times
smaller: bounded memory is the two peaks alike.

    python benchmarks/stream_memory.py --rows 1000000
    python benchmarks/stream_memory.py --rows 1000000 --code ../old-checkout   # another version's code
    python benchmarks/stream_memory.py --rows 1000000 --command search         # search, the tiny model's index
"""

from __future__ import annotations

import argparse
import csv
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/stream_memory.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, machine, pair_rows, peak_run, stage_env, tiny_model, tiny_workdir


def write_pairs(path: Path, rows: int) -> None:
    """`rows` pairs with predict's header: pair_rows' varied questions, each made unique by its row
    number (questions repeated across a file would be embedded once, flattering a one-shot run)."""
    source = itertools.cycle([row[1:3] for row in pair_rows(500)])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question_1", "question_2"])
        writer.writerows([f"{q1} (row {i})", f"{q2} (row {i})"] for i, (q1, q2) in enumerate(itertools.islice(source, rows)))


def write_queries(path: Path, rows: int) -> None:
    """`rows` queries with search's header, each unique, as write_pairs' questions."""
    source = itertools.cycle([row[1] for row in pair_rows(500)])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question"])
        writer.writerows([f"{question} (row {i})"] for i, question in enumerate(itertools.islice(source, rows)))


# The stages each command needs first: predict the adapter; search the index, built from the whole pipeline.
SETUP = {"predict": ("prepare", "finetune"),
         "search": ("prepare", "baseline", "zeroshot", "finetune", "evaluate", "export", "retrieval", "index")}
WRITE_INPUT = {"predict": write_pairs, "search": write_queries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--command", choices=sorted(SETUP), default="predict")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose stages and predict run (default: this one)")
    args = parser.parse_args()
    env = stage_env(args.code.resolve())
    with tempfile.TemporaryDirectory() as scratch:
        project = tiny_workdir(Path(scratch) / "project", tiny_model(Path(scratch) / "tiny"), overrides={"train.epochs": 1})
        for stage in SETUP[args.command]:
            subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, env=env, check=True,
                           capture_output=True)
        print(f"machine: {machine()}; code: {args.code}")
        for rows in (args.rows // 10, args.rows):
            data = project / f"{args.command}-{rows}.csv"
            WRITE_INPUT[args.command](data, rows)
            wall, peak = peak_run([sys.executable, "-m", "mqp", args.command, "--csv", str(data), "--out", "out.csv"],
                                  project, env)
            size = data.stat().st_size / 2**20
            print(f"{args.command} --csv: {rows:,} rows ({size:.0f} MiB): {wall:.0f} s, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
