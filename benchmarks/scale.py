"""How each stage's time and memory grow with the pairs: the whole pipeline on MQP-shaped data of 3k,
30k and 100k pairs, made from MQP itself (cost, not accuracy, is the point: the copies are edits of
MQP's questions, so their text and length look like MQP's, and their accuracy means nothing).

    python -m benchmarks.scale                 # 3k, 30k and 100k pairs, the default model (hours on 2 cores)
    python -m benchmarks.scale --quick         # 3k and 30k
    python -m benchmarks.scale --model tiny --quick --steps 20 --out /tmp/scale   # the suite's run (minutes)

Each stage runs as `dvc repro` runs it (`python -m stages.X` in a scratch project with params.yaml's
values, train.epochs 1, data.sha256 null), then batch predict on the test pairs and batch search on
the test question_1s. GNU time gives each command's peak RSS. Training stops after --steps optimizer
steps (train.max_steps), and its epoch time is computed from the measured time per step: the capped
run's wall time plus the epoch's remaining steps at that rate. The growth exponent of a
stage between two sizes is log(t2 / t1) / log(n2 / n1): 1 is linear in the pairs.

Writes OUT/scale.json and OUT/scale.png (time and memory against pairs, log-log, one line per stage;
rendered offline by vl-convert).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/scale.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, SHARED, machine, peak_run, stage_env, tiny_model, tiny_workdir

SIZES = (3_000, 30_000, 100_000)
QUICK_SIZES = SIZES[:2]
STAGES = ("prepare", "baseline", "zeroshot", "finetune", "evaluate", "export", "retrieval", "index")
BATCH = ("predict", "search")  # the commands, in batch mode on the test split
MQP_CSV = SHARED / "data" / "mqp.csv"
# Word-level edits: a filler word is what a patient adds, and makes any question new.
FILLERS = ("really", "also", "please", "now", "still", "currently", "actually", "maybe", "just", "lately")
EDITS_PER_QUESTION = 2


# --- the data -----------------------------------------------------------------------------------


def edited(question: str, rng: random.Random, edits: int = EDITS_PER_QUESTION) -> str:
    """The question after `edits` word-level edits: swap two neighbours, drop a word (only from a
    question of five words or more), repeat a word, or insert a filler word."""
    words = question.split()
    for _ in range(edits):
        kind, at = rng.randrange(4), rng.randrange(len(words))
        if kind == 0 and at + 1 < len(words):
            words[at], words[at + 1] = words[at + 1], words[at]
        elif kind == 1 and len(words) >= 5:
            del words[at]
        elif kind == 2:
            words.insert(at, words[at])
        else:
            words.insert(at, rng.choice(FILLERS))
    return " ".join(words)


def new_question(question: str, rng: random.Random, seen: set) -> str:
    """An edit of the question that no row has used yet: edited again until it is new."""
    text = edited(question, rng)
    while text in seen:
        text = edited(text, rng, edits=1)
    seen.add(text)
    return text


def scaled_rows(rows: list[list], pairs: int, seed: int = 0) -> list[list]:
    """`pairs` rows (whole question_1 groups; fewer only if the last group would overshoot) in MQP's
    format: MQP's own rows first, then copies of its groups whose questions are word-level edits,
    each group keeping its dr_id and labels. The same rows and seed give the same copies."""
    groups: dict[str, list[list]] = {}
    for row in rows:
        groups.setdefault(row[1], []).append(row)
    seen = {row[1] for row in rows} | {row[2] for row in rows}
    out: list[list] = []
    for copy in itertools.count():
        for number, (question_1, group) in enumerate(groups.items()):
            if len(out) + len(group) > pairs:
                return out
            if copy == 0:
                out.extend(group)
                continue
            rng = random.Random(f"{seed}/{copy}/{number}")
            new_1 = new_question(question_1, rng, seen)
            out.extend([dr_id, new_1, new_question(question_2, rng, seen), label] for dr_id, _, question_2, label in group)
    raise AssertionError("unreachable")


def read_rows(path: Path) -> list[list]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write_rows(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


# --- the runs -----------------------------------------------------------------------------------


def batch_inputs(project: Path) -> dict[str, list[str]]:
    """The batch commands' arguments: predict scores the test pairs, search looks up each test
    question_1 (a CSV with a `question` column)."""
    import pandas as pd

    test = project / "data" / "prepared" / "test.csv"
    queries = project / "queries.csv"
    pd.DataFrame({"question": pd.read_csv(test)["question_1"].drop_duplicates()}).to_csv(queries, index=False)
    return {"predict": ["--csv", str(test), "--out", str(project / "scored.csv")],
            "search": ["--csv", str(queries), "--out", str(project / "found.csv")]}


def finetune_epoch_seconds(project: Path, wall: float, steps_cap: int) -> dict:
    """The time per optimizer step, and the time of one whole epoch it implies: the capped run's
    wall time plus the epoch's remaining steps at that rate. The Trainer's train time includes the
    validation pass at the end, so DVCLive's record of that pass is taken off first."""
    train_seconds = json.loads((project / "metrics" / "detail" / "train.json").read_text())["train_seconds"]
    validation_seconds = json.loads((project / "dvclive" / "metrics.json").read_text())["eval"]["runtime"]
    train_rows = len(read_rows(project / "data" / "prepared" / "train.csv")) - 1  # less the header
    epoch_steps = math.ceil(train_rows / project_params(project)["train"]["batch_size"])
    steps = min(steps_cap, epoch_steps)
    per_step = (train_seconds - validation_seconds) / steps
    return {"steps_run": steps, "epoch_steps": epoch_steps, "seconds_per_step": round(per_step, 4),
            "validation_seconds": round(validation_seconds, 1),
            "epoch_seconds": round(wall + per_step * (epoch_steps - steps), 1)}


def run_size(pairs: int, rows: list[list], model: str, steps: int, folder: Path, log) -> dict:
    """Every stage and batch command on `pairs` generated pairs: seconds and peak RSS (MiB) of each;
    finetune's seconds are one whole epoch's."""
    data = folder / "mqp-scaled.csv"
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(data, scaled_rows(rows, pairs))
    project = tiny_workdir(folder / "project", model, overrides={"train.epochs": 1, "train.max_steps": steps},
                           raw_csv=data)
    env = stage_env()
    commands = {name: [sys.executable, "-m", f"stages.{name}"] for name in STAGES}
    results = {}
    for name in (*STAGES, *BATCH):
        if name == BATCH[0]:  # the test split exists now
            commands.update({command: [sys.executable, "-m", "mqp", command, *arguments]
                             for command, arguments in batch_inputs(project).items()})
        seconds, peak = peak_run(commands[name], project, env)
        results[name] = {"seconds": round(seconds, 1), "peak_mib": round(peak)}
        if name == "finetune":
            results[name].update(finetune_epoch_seconds(project, seconds, steps), capped_run_seconds=round(seconds, 1))
            results[name]["seconds"] = results[name]["epoch_seconds"]
        log(f"{pairs:>7,} pairs  {name:<9} {results[name]['seconds']:>8.1f} s  {results[name]['peak_mib']:>6,} MiB")
    return results


def project_params(project: Path) -> dict:
    import yaml

    return yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def exponents(sizes: list[int], results: dict, key: str) -> dict:
    """Each stage's growth exponent of `key` between consecutive sizes: {stage: {"3000-30000": e}}."""
    out = {}
    for name in results[str(sizes[0])]:
        out[name] = {f"{a}-{b}": round(math.log(results[str(b)][name][key] / results[str(a)][name][key]) / math.log(b / a), 3)
                     for a, b in itertools.pairwise(sizes)}
    return out


# --- the report ---------------------------------------------------------------------------------


def plot(result: dict, path: Path) -> None:
    """Time and peak memory against pairs, log-log, one line per stage: a Vega-Lite spec rendered by
    vl-convert (offline)."""
    import vl_convert as vlc

    rows = [{"stage": name, "pairs": int(size), "seconds": figures["seconds"], "peak MiB": figures["peak_mib"]}
            for size, stages in result["results"].items() for name, figures in stages.items()]

    def panel(field: str) -> dict:
        return {"mark": {"type": "line", "point": True}, "width": 320, "height": 260,
                "encoding": {"x": {"field": "pairs", "type": "quantitative", "scale": {"type": "log"}},
                             "y": {"field": field, "type": "quantitative", "scale": {"type": "log"}},
                             "color": {"field": "stage", "type": "nominal", "sort": [*STAGES, *BATCH]}}}

    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "data": {"values": rows},
            "title": f"Cost per stage against pairs ({result['model']}; {result['machine']})",
            "hconcat": [panel("seconds"), panel("peak MiB")]}
    path.write_bytes(vlc.vegalite_to_png(spec, vl_version="5.21", scale=2))


def short(pairs: int) -> str:
    return f"{pairs // 1000:,}k" if pairs % 1000 == 0 else f"{pairs:,}"


def projected_seconds(result: dict, pairs: int) -> dict:
    """Each stage's time at `pairs`, from its largest size measured and its last exponent."""
    sizes = result["sizes"]
    largest, span = sizes[-1], f"{sizes[-2]}-{sizes[-1]}"
    return {name: round(figures["seconds"] * (pairs / largest) ** result["time_exponents"][name][span])
            for name, figures in result["results"][str(largest)].items()}


def table(result: dict) -> list[str]:
    """The Markdown table: each stage's seconds and peak MiB at every size, and its time exponents."""
    sizes = result["sizes"]
    spans = list(itertools.pairwise(sizes))
    lines = ["| stage | " + " | ".join(f"{short(size)} pairs: s, MiB" for size in sizes) + " | "
             + " | ".join(f"exponent {short(a)}→{short(b)}" for a, b in spans) + " |",
             "| --- " * (1 + len(sizes) + len(spans)) + "|"]
    for name in (*STAGES, *BATCH):
        cells = [f"{result['results'][str(size)][name]['seconds']:,.1f}, {result['results'][str(size)][name]['peak_mib']:,}"
                 for size in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " | "
                     + " | ".join(f"{result['time_exponents'][name][f'{a}-{b}']:.2f}" for a, b in spans) + " |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_SIZES}")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"pairs per run (default {SIZES})")
    parser.add_argument("--model", default=None, help="a model name or folder; 'tiny' for a 2-layer BERT of random "
                        "weights (default: params.yaml's model.name)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps each finetune runs (train.max_steps)")
    parser.add_argument("--source", type=Path, default=MQP_CSV, help="the MQP CSV the data are made from")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="where scale.json and scale.png go")
    parser.add_argument("--keep", type=Path, help="keep the scratch projects in this folder")
    parser.add_argument("--render", type=Path, help="run nothing: write OUT's report again from this scale.json")
    args = parser.parse_args(argv)
    if args.render:
        kept = json.loads(args.render.read_text(encoding="utf-8"))
        args.out.mkdir(parents=True, exist_ok=True)
        result = report(kept["results"], kept["model"], kept["steps"], kept["total_seconds"], args.out, kept["machine"])
        print("\n".join(table(result)))
        return
    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    if not args.source.is_file():
        sys.exit(f"scale: {args.source} is not there; set MQP_SHARED or pass --source PATH to MQP's CSV")
    rows = read_rows(args.source)
    model = args.model or project_params(REPO)["model"]["name"]
    log(f"scale: {machine()}; model {model}; sizes {sizes}; the data are edits of MQP: cost, not accuracy")
    args.out.mkdir(parents=True, exist_ok=True)
    started, results = time.perf_counter(), {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        model_dir = str(tiny_model(folder / "tiny-model")) if model == "tiny" else model
        for size in sizes:  # the report is written after each size: a long run's first sizes are kept
            results[str(size)] = run_size(size, rows, model_dir, args.steps, folder / str(size), log)
            result = report(results, model, args.steps, round(time.perf_counter() - started), args.out)
    print("\n".join(table(result)))
    print(f"scale: {args.out / 'scale.json'} and {args.out / 'scale.png'} written")


def report(results: dict, model: str, steps: int, seconds: int, out: Path, machine_name: str | None = None) -> dict:
    """scale.json and scale.png of the sizes run so far."""
    sizes = [int(size) for size in results]
    result = {"machine": machine_name or machine(), "model": model, "sizes": sizes, "steps": steps,
              "note": "MQP-shaped data made by word-level edits of MQP: the times and memory are real, accuracy means nothing",
              "results": results, "time_exponents": exponents(sizes, results, "seconds"),
              "memory_exponents": exponents(sizes, results, "peak_mib"), "total_seconds": seconds}
    if len(sizes) > 1:
        result["projected_1m_seconds"] = projected_seconds(result, 1_000_000)
    (out / "scale.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    plot(result, out / "scale.png")
    return result

if __name__ == "__main__":
    main()
