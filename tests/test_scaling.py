"""Beyond one process: finetune under torchrun (2 CPU processes, gloo), and a queued DVC sweep."""

import csv
import io
import sys
import time

from conftest import dvc, make_project, read_json, run


def test_finetune_runs_unchanged_under_torchrun(tmp_path, tiny_bert):
    project = make_project(tmp_path / "project", tiny_bert)
    run([sys.executable, "-m", "stages.prepare"], cwd=project)
    result = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                  "-m", "stages.finetune"], cwd=project, env={"OMP_NUM_THREADS": "1"})
    # Rank 0 alone writes the outputs and the summary line.
    assert result.stdout.count("finetune: ") == 1
    assert (project / "models" / "adapter" / "adapter_model.safetensors").exists()
    summary = read_json(project / "metrics" / "train.json")
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    assert not list((project / ".tmp").glob("checkpoints-*"))
    run([sys.executable, "-m", "stages.evaluate"], cwd=project)
    assert read_json(project / "metrics" / "lora.json")["test"]["n"] > 0


def test_queued_rank_sweep_runs_two_at_a_time(tmp_path, tiny_bert):
    project = make_project(tmp_path / "project", tiny_bert, train__epochs=1)
    dvc("repro", cwd=project)
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "baseline run"], cwd=project)
    dvc("exp", "run", "--queue", "-S", "lora.r=2,4", cwd=project)
    run([sys.executable, "-m", "dvc", "queue", "start", "-j", "2"], cwd=project, env={"OMP_NUM_THREADS": "1"})
    # The queue runs in background workers: poll until both runs have landed.
    deadline = time.time() + 600
    while time.time() < deadline:
        status = dvc("queue", "status", cwd=project).stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(5)
    assert "Failed" not in status and "Running" not in status, status
    rows = list(csv.DictReader(io.StringIO(dvc("exp", "show", "--csv", cwd=project).stdout)))
    ranks = sorted(row["lora.r"] for row in rows if row["typ"] != "baseline")
    assert ranks == ["2", "4"]
    assert all(row["metrics/lora.json:test.accuracy"] not in ("", "!") for row in rows)
