"""gpu_check: one command that says how the pipeline runs on this machine's GPU (issue 19).

    python -m benchmarks.gpu_check            # on a GPU machine with the requirements: <= 6 min
    python -m benchmarks.gpu_check --tiny     # a tiny model on synthetic pairs, on any CPU: ~1-2 min

It builds a scratch DVC project (this repository's dvc.yaml, params.yaml, stages and mqp; the real
MQP CSV from data/raw/ or shared/data/, fold 0) and reports:
- each stage's wall time in a `dvc repro` of fold 0 (stage by stage, `dvc repro -s`), and the
  device its summary line names;
- a synchronised profile of training steps, and fp32 against bf16 autocast (benchmarks/
  step_profile.py, benchmarks/precision.py);
- the finetune path against a bare loop on a tiny model (benchmarks/overhead.py);
- GPT-2 124M built from its config (random weights, timing only): 3 epochs of `stages.finetune`;
- inference pairs/s of the trained adapter, at eval.batch_size 16 and auto.
It writes gpu_check.json and gpu_check.md into --out (default .tmp/gpu_check).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, SHARED, clock, heading, machine, stage_env, tiny_model, tiny_workdir

STAGES = ("prepare", "baseline", "zeroshot", "finetune", "evaluate", "export")
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "mqp", "plots", ".gitignore")
DEVICE_IN_SUMMARY = re.compile(r"\((?:n=\d+, )?(cuda|mps|cpu)\)")
# --tiny: quick, still every code path. The full run keeps params.yaml as it is (fold 0).
TINY_PARAMS = {"train.epochs": 1, "model.max_length": 48}
GPT2_TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2}


def run(command: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=stage_env(**extra_env),
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"gpu_check: {' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result


def raw_csv() -> Path | None:
    from mqp.paths import RAW_CSV

    return next((path for path in (REPO / RAW_CSV, SHARED / "data" / "mqp.csv") if path.exists()), None)


def make_project(folder: Path, tiny: bool) -> Path:
    """A git + DVC repository holding this pipeline, committed: the tiny model on synthetic pairs,
    or params.yaml as it is on the real CSV."""
    import yaml

    from mqp.paths import PARAMS_FILE, RAW_CSV

    project = folder / "project"
    if tiny:
        tiny_workdir(project, tiny_model(folder / "tiny-bert"), overrides=TINY_PARAMS)
    else:
        project.mkdir(parents=True)
        source = raw_csv()
        if source is not None:  # else prepare downloads it from data.url
            (project / RAW_CSV).parent.mkdir(parents=True)
            shutil.copy(source, project / RAW_CSV)
    for name in PROJECT_FILES:
        if (project / name).exists():
            continue
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, project / name)
    if not tiny:  # fold 0, whatever this checkout's params.yaml says
        raw = yaml.safe_load((project / PARAMS_FILE).read_text(encoding="utf-8"))
        raw["data"]["fold"] = 0
        (project / PARAMS_FILE).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "gpu-check@example.com"],
                    ["git", "config", "user.name", "gpu-check"], [sys.executable, "-m", "dvc", "init", "-q"],
                    [sys.executable, "-m", "dvc", "config", "core.analytics", "false"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "gpu_check"]):
        run(command, project)
    return project


def pipeline(project: Path) -> dict:
    """Each stage's wall seconds in `dvc repro -s STAGE`, in order, and the device it names."""
    stages = {}
    for name in STAGES:
        started = time.perf_counter()
        result = run([sys.executable, "-m", "dvc", "repro", "-s", name], project)
        found = DEVICE_IN_SUMMARY.findall(result.stdout + result.stderr)
        stages[name] = {"seconds": round(time.perf_counter() - started, 1), "device": found[-1] if found else "-"}
    return {"stages": stages, "total_seconds": round(sum(stage["seconds"] for stage in stages.values()), 1)}


def gpt2_finetune(project: Path, folder: Path, tiny: bool) -> dict:
    """3 epochs (--tiny: 1) of stages.finetune on GPT-2 124M (--tiny: 2 layers) built from its
    config with random weights, as a bi-encoder pooling the last token; timing only. The default
    model's WordPiece tokenizer stands in for GPT-2's BPE (ids fit GPT-2's vocabulary), so that
    no file beyond the requirements is needed."""
    import transformers
    import yaml
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    from mqp.models import DEFAULT_MODEL, resolve_model
    from mqp.paths import PARAMS_FILE, TRAIN_REPORT

    model_dir = folder / "gpt2"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    transformers.set_seed(0)
    GPT2Model(GPT2Config(pad_token_id=tokenizer.pad_token_id, **(GPT2_TINY if tiny else {}))).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    raw = yaml.safe_load((project / PARAMS_FILE).read_text(encoding="utf-8"))
    raw["model"].update({"name": str(model_dir), "architecture": "bi-encoder", "pooling": "last"})
    raw["train"]["epochs"] = 1 if tiny else 3
    (project / PARAMS_FILE).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    started = time.perf_counter()
    result = run([sys.executable, "-m", "stages.finetune"], project)
    summary = json.loads((project / TRAIN_REPORT).read_text())
    found = DEVICE_IN_SUMMARY.findall(result.stdout)
    return {"model": "gpt2 (2 layers, hidden 64)" if tiny else "gpt2 124M", "epochs": summary["epochs"],
            "total_params": summary["total_params"], "train_seconds": summary["train_seconds"],
            "pairs_per_second": summary["train_samples_per_second"], "wall_seconds": round(time.perf_counter() - started, 1),
            "device": found[-1] if found else "-"}


def inference_speed(project: Path) -> dict:
    """Pairs scored per second by the trained adapter (validation and test), at eval.batch_size
    16 and auto, each after an untimed pass."""
    from mqp.lora import load_trained
    from mqp.models import device, inference_batch_size, load_tokenizer
    from mqp.params import load_params
    from mqp.paths import ADAPTER_DIR
    from mqp.splits import load_splits
    from mqp.inference import score_splits

    with contextlib.chdir(project):
        params, splits = load_params(), load_splits()
        tokenizer = load_tokenizer(params.model)
        model = load_trained(params, tokenizer, ADAPTER_DIR)
        pairs = len(splits["validation"]) + len(splits["test"])
        speeds = {}
        for size in (16, "auto"):
            sized = params.model_copy(update={"eval": params.eval.model_copy(update={"batch_size": size})})
            score_splits(model, tokenizer, splits, sized)  # warm-up: every shape once
            start = clock(device())
            score_splits(model, tokenizer, splits, sized)
            speeds[str(inference_batch_size(size))] = round(pairs / (clock(device()) - start), 1)
    return {"pairs": pairs, "pairs_per_second_by_batch": speeds, "device": device().type}


def measure(tiny: bool, folder: Path) -> dict:
    from benchmarks.overhead import overhead_steps
    from benchmarks.precision import precision_steps
    from benchmarks.step_profile import profile_steps
    from mqp.cli import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    project = make_project(folder, tiny)
    result = {"mode": "tiny" if tiny else "full", "machine": machine(), "pipeline": pipeline(project)}
    result["inference"] = inference_speed(project)
    with contextlib.chdir(project):
        result["profile"] = profile_steps(steps=4 if tiny else 8)
        result["precision"] = precision_steps(steps=4 if tiny else 30)
    with contextlib.chdir(folder):
        result["overhead"] = overhead_steps(rounds=2, questions=100 if tiny else 400)
    result["gpt2"] = gpt2_finetune(project, folder, tiny)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def markdown(result: dict) -> str:
    from benchmarks import overhead, precision, step_profile

    pipeline, gpt2, inference = result["pipeline"], result["gpt2"], result["inference"]
    lines = heading(f"python -m benchmarks.gpu_check{' --tiny' if result['mode'] == 'tiny' else ''}") + [
        "", f"{result['mode']} mode, {result['seconds']} s in all.", "",
        "| stage (`dvc repro -s`, fold 0) | wall s | device |", "| --- | --- | --- |"]
    lines += [f"| {name} | {stage['seconds']} | {stage['device']} |" for name, stage in pipeline["stages"].items()]
    lines += [f"| **all six** | **{pipeline['total_seconds']}** | |", ""]
    lines += [*step_profile.report(result["profile"]), "", *precision.report(result["precision"]), "",
              *overhead.report(result["overhead"]), ""]
    lines.append(f"{gpt2['model']} from its config (random weights), {gpt2['epochs']} epochs of `stages.finetune` on "
                 f"{gpt2['device']}: {gpt2['train_seconds']} s of training ({gpt2['pairs_per_second']} pairs/s), "
                 f"{gpt2['wall_seconds']} s wall, {gpt2['total_params']:,} params")
    speeds = ", ".join(f"{rate} pairs/s at batch {size}" for size, rate in inference["pairs_per_second_by_batch"].items())
    lines += ["", f"Inference ({inference['device']}, the trained adapter on {inference['pairs']} pairs): {speeds}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    from mqp.paths import TMP_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model on synthetic pairs (any CPU, ~1-2 min)")
    parser.add_argument("--out", type=Path, default=REPO / TMP_DIR / "gpu_check", help="where the JSON and Markdown go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.out / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        result = measure(args.tiny, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(result)
    (args.out / "gpu_check.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"gpu_check: wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")


if __name__ == "__main__":
    main()
