"""Benchmark: the reference recipe against this pipeline's finetune, same model and split; and the
other benchmarks in this folder, each in its own process.

    python benchmarks/benchmark.py                 # both recipes, plus the GPT-2 step time
    python benchmarks/benchmark.py --only gpt2     # one part: reference | pipeline | gpt2 | ...
    python benchmarks/benchmark.py --epochs 1      # both recipes for 1 epoch (throughput only)
    python benchmarks/benchmark.py --only startup  # each stage's start-up beside torch+transformers+peft
    python benchmarks/benchmark.py --only profile  # where a training step's time goes (torch.profiler)
    python benchmarks/benchmark.py --only precision  # fp32 against bf16 autocast, step by step
    python benchmarks/benchmark.py --only grouping   # a question_1 embedded once per batch, or per pair
    python benchmarks/benchmark.py --only overhead   # the finetune path against a bare loop, tiny model

Each part is a file of its own (benchmarks/<part>.py, runnable alone with `python -m
benchmarks.<part>`). Run from the repository root after `dvc repro prepare`. Results are printed
and appended, with the date and machine, to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import gpt2_step, grouping, overhead, precision, recipes, startup, step_profile  # noqa: E402
from benchmarks.common import REPO, append_results, child, heading  # noqa: E402

# --only's names: the module that measures each, and the arguments it takes.
PARTS = {"reference": recipes, "pipeline": recipes, "gpt2": gpt2_step, "startup": startup,
         "profile": step_profile, "precision": precision, "grouping": grouping, "overhead": overhead}


def arguments(part: str, epochs: int | None) -> list[str]:
    if PARTS[part] is not recipes:
        return []
    return ["--recipe", part] + (["--epochs", str(epochs)] if epochs is not None else [])


def report(parts: list[str], results: list[dict]) -> str:
    lines = heading(" ".join(["python benchmarks/benchmark.py", *sys.argv[1:]]))
    trained = [result for part, result in zip(parts, results) if PARTS[part] is recipes]
    if trained:
        lines += ["", *recipes.table(trained)]
    by_name = {result["benchmark"]: result for result in trained}
    if {"reference", "pipeline"} <= set(by_name):
        ratio = by_name["pipeline"]["samples_per_second"] / by_name["reference"]["samples_per_second"]
        lines += ["", f"Throughput ratio pipeline / reference: {ratio:.2f}x samples/s"]
    for part, result in zip(parts, results):
        if PARTS[part] is not recipes:
            lines += ["", *PARTS[part].report(result)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(PARTS), action="append")
    parser.add_argument("--epochs", type=int, help="override both recipes' epochs (default: theirs, 3)")
    args = parser.parse_args()
    from mqp.paths import PREPARED_DIR, split_csv

    parts = args.only or ["reference", "pipeline", "gpt2"]
    if not (REPO / split_csv("train")).exists() and set(parts) - {"startup", "overhead"}:
        sys.exit(f"benchmark: {PREPARED_DIR} not found: run `dvc repro prepare` first")
    results = []
    for part in parts:
        print(f"benchmark: running {part} ...", flush=True)
        results.append(child(f"benchmarks.{PARTS[part].__name__.rsplit('.', 1)[-1]}", "--json", *arguments(part, args.epochs)))
    text = report(parts, results)
    print(text)
    append_results(text)


if __name__ == "__main__":
    main()
