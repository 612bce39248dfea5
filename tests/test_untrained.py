"""The untrained run, `dvc exp run -n base-model -S train.epochs=0` on the committed trained run,
as the README has users run it: only what the param reaches re-runs, `dvc exp show` lists it, its
LoRA metrics are exactly the base model's (either architecture), `dvc metrics diff` compares it
with the trained run, and `mqp check` fails it. Its tests share one file, so that one pytest-xdist
worker (`--dist loadfile`) runs that experiment once."""

import csv
import io
import json
import re

import pandas as pd
import pytest

from helpers import command, DEFAULT_ARCHITECTURE, PROJECT_OF, copy_project, dvc, project_params, read_json, run, set_params
from mqp import paths
from mqp.reports import read_predictions

pytestmark = pytest.mark.slow


def test_exp_run_reruns_only_what_the_param_reaches(untrained_project, trained_project):
    """`dvc exp run -n base-model -S train.epochs=0` on the committed run: prepare, baseline and
    zeroshot stay cached; `dvc exp show` lists the run with its params and metrics. (The queued rank
    sweep in test_scaling.py runs `-S lora.r=...`.)"""
    project, out = untrained_project
    for name in ("prepare", "baseline", "zeroshot"):
        assert f"Stage '{name}' didn't change, skipping" in out
    assert all(f"Running stage '{name}'" in out for name in ("finetune", "evaluate", "export"))
    lora = read_json(project / paths.LORA_REPORT)
    assert lora["test"]["loss"] != read_json(trained_project[0] / paths.LORA_REPORT)["test"]["loss"]
    rows = list(csv.DictReader(io.StringIO(dvc("exp", "show", "--csv", cwd=project).stdout)))
    by_name = {row["Experiment"] or row["rev"]: row for row in rows}
    assert by_name["base-model"]["train.epochs"] == "0" and by_name["workspace"]["train.epochs"] == "0"
    (committed,) = [row for row in rows if row["typ"] == "baseline" and row["rev"] != "workspace"]  # HEAD
    assert committed["train.epochs"] == str(project_params(trained_project[0]).train.epochs)
    assert float(by_name["base-model"][f"{paths.LORA_METRICS}:auc"]) == round(lora["test"]["roc_auc"], 4)
    base_accuracy = read_json(project / paths.BASE_REPORT)["test"]["accuracy"]
    assert float(by_name["base-model"][f"{paths.BASE_METRICS}:acc"]) == round(base_accuracy, 4)


@pytest.mark.parametrize("architecture", sorted(PROJECT_OF))
def test_untrained_adapter_is_the_base_model(request, architecture, tmp_path, in_project):
    """train.epochs=0 saves LoRA at zero with the initial head (the cross-encoder's seeded like
    baseline's): lora.json's metrics are exactly base.json's, the README's `dvc metrics diff` idiom.
    params.yaml's architecture: `dvc exp run -S train.epochs=0` (untrained_project); the other: a
    copy of its project with finetune and evaluate run in this process."""
    if architecture == DEFAULT_ARCHITECTURE:
        project, _ = request.getfixturevalue("untrained_project")
    else:
        from stages import evaluate, finetune

        project = in_project(copy_project(request.getfixturevalue(PROJECT_OF[architecture])[0], tmp_path / "project"))
        set_params(project, {"train.epochs": 0})
        finetune.main()
        evaluate.main()
    assert project_params(project).model.architecture == architecture
    assert read_json(project / paths.TRAIN_REPORT)["epochs"] == 0
    base, untrained = read_json(project / paths.BASE_REPORT), read_json(project / paths.LORA_REPORT)
    assert untrained["test"] == base["test"] and untrained["validation"] == base["validation"]
    assert (untrained["vs_base"]["this_only"], untrained["vs_base"]["other_only"]) == (0, 0)
    pd.testing.assert_frame_equal(read_predictions(project / paths.LORA_RESULTS),
                                  read_predictions(project / paths.BASE_RESULTS))


def test_metrics_diff_base_model_against_lora(untrained_project, trained_project):
    """`dvc exp run -n base-model -S train.epochs=0` against the trained run (HEAD)."""
    project, _ = untrained_project
    base = read_json(project / paths.BASE_REPORT)
    trained = read_json(trained_project[0] / paths.LORA_REPORT)
    target = str(paths.LORA_METRICS)
    diff = json.loads(dvc("metrics", "diff", "base-model", "HEAD", "--targets", target, "--all", "--json",
                          cwd=project).stdout)
    changes = diff[target]
    assert set(changes) == {"n", "acc", "acc_ci", "f1", "auc", "vs_base", "vs_zeroshot"}
    assert changes["auc"]["old"] == round(base["test"]["roc_auc"], 4)
    assert changes["auc"]["new"] == round(trained["test"]["roc_auc"], 4)
    assert changes["vs_base"]["old"] == "+0.0 p=1.000"  # untrained LoRA is the base model
    text = dvc("metrics", "diff", "base-model", "HEAD", "--targets", target, "--all", cwd=project).stdout
    assert max(len(line) for line in text.splitlines()) <= 120 and "Change" in text


def test_the_workspace_adapter_is_traced_to_its_experiment(untrained_project, monkeypatch):
    """After `dvc exp run -n base-model`, predict names that experiment as the adapter's origin."""
    from mqp.runs import adapter_origin

    project, _ = untrained_project
    monkeypatch.chdir(project)
    head = run(["git", "rev-parse", "--short=7", "HEAD"], cwd=project).stdout.strip()
    assert adapter_origin() == f"experiment base-model (on git {head})"


def test_untrained_lora_fails(untrained_project):
    """train.epochs=0: LoRA is the base model, so not significantly better than it."""
    result = command("check", untrained_project[0], check=False)
    assert result.returncode == 1
    assert result.stderr == "check: error: LoRA is not significantly better than base (p < 0.05 required)\n"
    # Tango's interval of a paired difference is not empty at zero discordant pairs.
    assert re.fullmatch(r"check: LoRA vs base: accuracy \+0\.0000 \[-0\.\d{4}, \+0\.\d{4}\], McNemar p 1 "
                        r"\(0 pairs only LoRA got right, 0 only base\): NOT significantly better",
                        result.stdout.splitlines()[0]), result.stdout
