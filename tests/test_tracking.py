"""mqp.tracking: DVCLive curves on every run; W&B offline without a network (the training run and
the evaluation run), its key never written to a file, online never prompting for a missing key;
one summary line per stage."""

import pandas as pd
import pytest

from helpers import STAGES, make_workdir, project_params
from mqp.paths import DVCLIVE_PLOTS


@pytest.mark.slow
def test_wandb_offline_writes_local_runs_without_network(wandb_project):
    if not wandb_project.isolated:
        pytest.skip("cannot create a network namespace here (unshare -n)")
    runs = sorted((wandb_project.project / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # the training run and the evaluation run with the bar chart
    assert all(list(run.glob("run-*.wandb")) for run in runs)


@pytest.mark.slow
def test_wandb_key_never_written(wandb_project):
    project, home, secret = wandb_project.project, wandb_project.home, wandb_project.secret
    assert len(list((project / "wandb").glob("offline-run-*"))) == 2  # W&B really ran: training and evaluation
    assert secret not in wandb_project.output
    needle = secret.encode()
    leaks = [str(path) for root in (project, home) for path in root.rglob("*")
             if path.is_file() and not path.is_symlink() and needle in path.read_bytes()]
    assert not leaks, f"WANDB_API_KEY written to {leaks}"


@pytest.mark.slow
def test_dvclive_logs_curves_per_epoch(trained_project):
    project, _ = trained_project
    f1 = pd.read_csv(project / DVCLIVE_PLOTS / "metrics" / "eval" / "f1.tsv", sep="\t")
    assert len(f1) == project_params(project).train.epochs and list(f1.columns) == ["step", "f1"]  # one row per epoch
    loss = pd.read_csv(project / DVCLIVE_PLOTS / "metrics" / "loss.tsv", sep="\t")
    assert len(loss) >= 1 and loss["loss"].gt(0).all()


@pytest.mark.slow
def test_stage_summaries_are_one_line_each(trained_project, wandb_project):
    _, output = trained_project
    for name in STAGES:
        assert sum(line.startswith(f"{name}: ") for line in output.splitlines()) == 1, name
    for name in ("finetune", "evaluate"):  # with W&B on too
        assert sum(line.startswith(f"{name}: ") for line in wandb_project.output.splitlines()) == 1, name
    for text in (output, wandb_project.output):
        assert "Warning" not in text and "Traceback" not in text


def test_wandb_online_without_key_fails_fast(tmp_path, tiny_bert, in_project, monkeypatch, capsys):
    from stages import finetune, prepare

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    in_project(make_workdir(tmp_path / "project", tiny_bert, overrides={"logging.wandb": "online"}))
    prepare.main()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        finetune.main()  # stdin is pytest's, which fails on read: a prompt would error out
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        "finetune: error: logging.wandb is online but WANDB_API_KEY is not set; export it, or use "
        "logging.wandb=offline (sync later with `wandb sync wandb/offline-run-*`)\n")
