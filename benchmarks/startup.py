"""Start-up: each stage's whole run (`python -m stages.X`) on a tiny model and ~130 pairs, where
its work takes well under a second, against a Python that only imports torch, transformers and peft
(the import floor). Interleaved, so a busy machine slows them all alike; medians.

    python -m benchmarks.startup [--repeats 5]
    python -m benchmarks.startup --compare ../other-checkout   # its stages too, interleaved
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, run_cli, stage_env, summary, tiny_model, tiny_workdir

STAGES = ("prepare", "baseline", "zeroshot", "finetune", "evaluate", "export")
FLOOR = "import torch, transformers, peft"


def run_stage(name: str, workdir: Path, code: Path = REPO) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=workdir, env=stage_env(code),
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"startup: stage {name} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def run_floor() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR], cwd=REPO, check=True)
    return time.perf_counter() - start


def startup_times(repeats: int = 5, compare: Path | None = None) -> dict:
    """Seconds of each stage's run and of the import floor, interleaved, `repeats` times (after
    one untimed round that writes every stage's inputs and warms the disk cache); with compare,
    each stage also run from that checkout's code, right after this one's."""
    with tempfile.TemporaryDirectory() as scratch:
        model = tiny_model(Path(scratch) / "tiny-bert")
        # eval.batch_size 16: auto's value on the CPU, and one that older checkouts (--compare) accept.
        overrides = {"train.epochs": 1, "model.max_length": 48, "eval.batch_size": 16}
        workdir = tiny_workdir(Path(scratch) / "project", model, overrides=overrides)
        for name in STAGES:
            run_stage(name, workdir)
        codes = {"": REPO, **({f" ({compare})": compare} if compare else {})}
        times: dict[str, list[float]] = {"floor": [], **{name + label: [] for name in STAGES for label in codes}}
        for _ in range(repeats):
            times["floor"].append(run_floor())
            for name in STAGES:
                for label, code in codes.items():
                    times[name + label].append(run_stage(name, workdir, code))
    return {"benchmark": "startup", "floor": FLOOR, "seconds": {name: summary(values) for name, values in times.items()}}


def report(result: dict) -> list[str]:
    seconds = result["seconds"]
    floor = seconds["floor"]["median"]
    lines = [
        f"Start-up: each stage's whole run on a tiny model (2 layers, hidden 64, ~130 pairs) against `{result['floor']}`, "
        f"interleaved, median of {seconds['floor']['n']} (quartiles)", "",
        "| process | median s | quartiles s | over the floor s |", "| --- | --- | --- | --- |"]
    for name, stats in seconds.items():
        over = "" if name == "floor" else f"{stats['median'] - floor:+.2f}"
        lines.append(f"| {'import floor' if name == 'floor' else name} | {stats['median']:.2f} | "
                     f"{stats['q1']:.2f}-{stats['q3']:.2f} | {over} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout whose stages to time beside these")
    run_cli(parser, startup_times, report)


if __name__ == "__main__":
    main()
