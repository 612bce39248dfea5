"""Beyond one process: finetune under torchrun (2 CPU processes, gloo), and a queued DVC sweep run
two at a time up to evaluate, the kept run then applied and exported, both on copies of the trained
tiny-BERT project."""

import csv
import io
import json
import shutil
import sys

import pytest

from helpers import committed_json, copy_project, dvc, project_params, read_json, run, run_queue
from mqp.paths import ADAPTER_DIR, LORA_METRICS, LORA_REPORT, RAW_CSV, TMP_DIR, TRAIN_REPORT

pytestmark = pytest.mark.slow


def test_finetune_runs_unchanged_under_torchrun(trained_project, tmp_path, in_project):
    project = copy_project(trained_project[0], tmp_path / "project")
    shutil.rmtree(project / ADAPTER_DIR)
    (project / TRAIN_REPORT).unlink()
    result = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                  "-m", "stages.finetune"], cwd=project, env={"OMP_NUM_THREADS": "1"})
    # Rank 0 alone writes the outputs and the summary line.
    assert result.stdout.count("finetune: ") == 1
    assert (project / ADAPTER_DIR / "adapter_model.safetensors").exists()
    summary = read_json(project / TRAIN_REPORT)
    epochs = project_params(project).train.epochs
    assert summary["epochs"] == epochs and 1 <= summary["best_epoch"] <= epochs
    assert not list((project / TMP_DIR).glob("checkpoints-*"))
    from stages import evaluate

    in_project(project)
    evaluate.main()  # the adapter loads and scores (in this process: quicker than a new one)
    assert read_json(project / LORA_REPORT)["test"]["n"] > 0


def test_queued_rank_sweep_runs_two_at_a_time(trained_project, tmp_path):
    project = copy_project(trained_project[0], tmp_path / "project")
    dvc("exp", "run", "--queue", "-S", "lora.r=2,4", "-S", "train.epochs=1", "-C", str(RAW_CSV.parent), "evaluate",
        cwd=project)  # as the README: the queue's copy holds what git and DVC track, and -C brings the data
    run_queue(project, jobs=2)
    rows = list(csv.DictReader(io.StringIO(dvc("exp", "show", "--csv", cwd=project).stdout)))
    runs = {row["lora.r"]: row for row in rows if row["typ"] != "baseline"}
    assert sorted(runs) == ["2", "4"]
    trainable = {rank: committed_json(project, row["rev"], TRAIN_REPORT)["trainable_params"] for rank, row in runs.items()}
    assert trainable["2"] < trainable["4"]  # the rank reached the adapter
    assert all(row[f"{LORA_METRICS}:acc"] not in ("", "!") for row in rows)
    for row in runs.values():  # the target: up to evaluate, no merged model exported
        log = dvc("queue", "logs", row["Experiment"], cwd=project).stdout
        assert "Running stage 'evaluate'" in log and "Running stage 'export'" not in log
    # The one kept: `dvc exp apply`, then `dvc repro` runs what the sweep left out (export, the
    # retrieval metrics, the index of the exported model) and re-runs nothing else.
    dvc("exp", "apply", runs["4"]["Experiment"], cwd=project)
    out = dvc("repro", cwd=project).stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"export", "retrieval", "index"}, out
    assert read_json(project / ADAPTER_DIR / "adapter_config.json")["r"] == 4
    assert json.loads(dvc("status", "--json", cwd=project).stdout) == {}
