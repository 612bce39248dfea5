"""What the benchmarks share: timing that is right on a GPU, medians with a spread, the machine's
description, results.md, child processes, and a tiny model and project to measure overhead on."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/X.py` as well as `python -m benchmarks.X`
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results.md"
SHARED = Path(os.environ.get("MQP_SHARED", REPO.parent / "shared"))

# The tiny model: 2 layers, hidden 64, whose arithmetic is negligible, so what a step costs
# beyond it is overhead (issue 19).
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256}


# --- timing -------------------------------------------------------------------------------------


def synchronize(device) -> None:
    """Wait for the device's queued kernels. CUDA runs asynchronously: a clock read without this
    charges one step with the previous step's kernels (issue 19's bf16 figure on the H200)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device) -> float:
    """time.perf_counter() once the device has finished what it was given."""
    synchronize(device)
    return time.perf_counter()


def summary(seconds: list[float]) -> dict:
    """Median and spread (quartiles, min, max) of timed runs, in seconds."""
    q1, median, q3 = statistics.quantiles(seconds, n=4, method="inclusive") if len(seconds) > 1 else seconds * 3
    return {"n": len(seconds), "median": round(median, 6), "q1": round(q1, 6), "q3": round(q3, 6),
            "min": round(min(seconds), 6), "max": round(max(seconds), 6)}


def time_each(steps: dict, inputs: list, device) -> dict[str, list[float]]:
    """Seconds per call of each named step on each input, the steps interleaved input by input (a
    busy machine slows them alike). Each call is timed after an untimed one on the same input, so
    every shape is warmed up (CUDA's kernels and allocator, autocast's weight casts)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for item in inputs:
        for name, step in steps.items():
            step(item)
            start = clock(device)
            step(item)
            times[name].append(clock(device) - start)
    return times


def ms(value: float) -> str:
    return f"{1000 * value:.1f}"


# --- reporting ----------------------------------------------------------------------------------


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def heading(command: str) -> list[str]:
    return [f"## {dt.date.today().isoformat()}: {machine()}", "", f"`{command}`"]


def append_results(text: str, path: Path = RESULTS) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n" + text)


def child(module: str, *args: str, env: dict | None = None) -> dict:
    """Run `python -m module args` from the repository root; its last stdout line is its JSON."""
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        sys.exit(f"benchmark: {module} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- a tiny model and project -------------------------------------------------------------------


def tiny_model(path: Path, **config) -> Path:
    """A BERT of TINY's size (random weights, seeded) with the default model's tokenizer, saved
    as a local model directory that model.name can point at."""
    import transformers
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mqp.models import DEFAULT_MODEL, resolve_model

    if (path / "config.json").exists():
        return path
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    transformers.set_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **{**TINY, **config})).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def pair_rows(n_questions: int) -> list[list]:
    """MQP-shaped rows (dr_id, question_1, question_2, label): each question_1 once with a similar
    and once with a dissimilar rewrite, of varied lengths."""
    topics = ["headache", "fever", "rash", "cough", "back pain", "insomnia", "nausea", "allergy"]
    rows = []
    for i in range(n_questions):
        topic, other = topics[i % len(topics)], topics[(i + 3) % len(topics)]
        detail = " and it got worse after the weekend" * (i % 4)
        q1 = f"What should I take for my {topic}{detail}, case {i}?"
        rows.append([i % 3, q1, f"Which medicine helps with {topic} (case {i})?", 1])
        rows.append([i % 3, q1, f"Is {other} contagious, asked in case {i}?", 0])
    return rows


def tiny_workdir(path: Path, model_dir: Path, n_questions: int = 64, overrides: dict | None = None,
                 raw_csv: Path | None = None) -> Path:
    """What the stages read from their working directory: this repo's params.yaml with the tiny
    model, no checksum and `overrides` (dotted keys), and MQP-shaped pairs at RAW_CSV (raw_csv's
    rows, else n_questions synthetic questions)."""
    import shutil

    import yaml

    from mqp.paths import PARAMS_FILE, RAW_CSV

    raw = yaml.safe_load((REPO / PARAMS_FILE).read_text(encoding="utf-8"))
    for key, value in {"model.name": str(model_dir), "data.sha256": None, **(overrides or {})}.items():
        group, name = key.split(".")
        if name not in raw[group]:
            raise KeyError(f"{key} is not a key of params.yaml")
        raw[group][name] = value
    path.mkdir(parents=True, exist_ok=True)
    (path / PARAMS_FILE).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    (path / RAW_CSV).parent.mkdir(parents=True, exist_ok=True)
    if raw_csv is not None:
        shutil.copy(raw_csv, path / RAW_CSV)
    else:
        with open(path / RAW_CSV, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(pair_rows(n_questions))
    return path


def stage_env(code: Path = REPO, **extra: str) -> dict:
    """The environment for `python -m stages.X` run in a scratch folder: the code of `code` (this
    repository unless told) on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", **extra}


def peak_run(command: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a command, the RSS from GNU time."""
    begin = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - begin
    if result.returncode != 0:
        sys.exit(f"benchmark: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return wall, int(result.stderr.strip().splitlines()[-1]) / 1024


# --- the command line every benchmark file shares ------------------------------------------------


def run_cli(parser, measure, report) -> dict:
    """Parse the arguments, run measure(**them), print its JSON line and report; the report goes
    to results.md too unless --json (benchmark.py collects the JSON) or --no-append."""
    parser.add_argument("--json", action="store_true", help="print the result's JSON line only")
    parser.add_argument("--no-append", action="store_true", help="leave benchmarks/results.md alone")
    args = vars(parser.parse_args())
    only_json, no_append = args.pop("json"), args.pop("no_append")
    result = measure(**args)
    print(json.dumps(result), flush=True)
    if not only_json:
        module = Path(sys.argv[0]).stem
        text = "\n".join(heading(" ".join([f"python -m benchmarks.{module}", *sys.argv[1:]])) + ["", *report(result)]) + "\n"
        print(text)
        if not no_append:
            append_results(text)
    return result
