"""What `dvc exp run` leaves in the workspace, and the README's ways around it, for real on the
committed tiny run (trained_project) and its experiment `base-model` (untrained_project,
`dvc exp run -n base-model -S train.epochs=0`): the run's params, dvc.lock and metrics stay in the
workspace; the README's commands return to the committed run without retraining; `--temp` runs an
experiment without touching the workspace; and the README's `dvc exp show` call fits 120 columns."""

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, copy_project, dvc, output_files, project_params, run
from mqp import paths

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text(encoding="utf-8")
# What a run writes: its params, DVC's record, the metrics files (in git), and the cached outputs.
RUN_FILES = (paths.PARAMS_FILE, "dvc.lock", paths.BASE_METRICS.parent, paths.DVCLIVE_PLOTS, paths.ADAPTER_DIR,
             paths.LORA_RESULTS)


def readme_commands(marker: str) -> list[str]:
    """The command lines of the README's code block after `<!-- marker: ... -->`, comments cut."""
    match = re.search(rf"<!-- {marker}:[^\n]*-->\n```[^\n]*\n(.*?)\n```", README, re.S)
    assert match, f"README has no code block after <!-- {marker}: ... -->"
    return [line.split("  #")[0].strip() for line in match.group(1).splitlines() if line.strip()]


def shell(command: str, cwd, columns: int = 120) -> subprocess.CompletedProcess:
    """A README command as a user types it (this Python's dvc first on PATH), in a terminal of `columns`."""
    return run(["bash", "-c", command], cwd=cwd,
               env={"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "COLUMNS": str(columns)})


def git_status(project) -> str:
    return run(["git", "status", "--porcelain"], cwd=project).stdout


@pytest.fixture
def after_experiment(untrained_project, tmp_path):
    """A copy of the project right after `dvc exp run -n base-model -S train.epochs=0`."""
    return copy_project(untrained_project[0], tmp_path / "project")


def test_exp_run_leaves_its_params_lock_and_metrics_in_the_workspace(after_experiment):
    changed = {line[3:] for line in git_status(after_experiment).splitlines()}
    assert {str(paths.PARAMS_FILE), "dvc.lock", str(paths.LORA_METRICS), str(paths.TRAIN_REPORT)} <= changed
    assert project_params(after_experiment).train.epochs == 0  # every later command inherits it


def test_readme_return_to_the_committed_run_retrains_nothing(after_experiment, trained_project):
    for command in readme_commands("back-to-committed"):
        shell(command, after_experiment)
    assert git_status(after_experiment) == ""
    assert output_files(after_experiment, *RUN_FILES) == output_files(trained_project[0], *RUN_FILES)
    again = dvc("repro", cwd=after_experiment).stdout
    assert "Running stage" not in again and "up to date" in again


def test_exp_run_temp_leaves_the_workspace_alone(trained_project, tmp_path):
    project = copy_project(trained_project[0], tmp_path / "project")
    before = output_files(project, *RUN_FILES)
    (command,) = [c for c in readme_commands("daily-loop") if "--temp" in c]
    rank = re.search(r"-S lora\.r=(\d+)", command).group(1)
    shell(command.replace("dvc exp run", "dvc exp run -n tried"), project)
    assert git_status(project) == "" and output_files(project, *RUN_FILES) == before
    rows = {row["Experiment"]: row for row in csv.DictReader(io.StringIO(dvc("exp", "show", "--csv", cwd=project).stdout))}
    assert rows["tried"]["lora.r"] == rank
    # A run of your own that the committed dvc.lock does not name (another CPU's adapter): the README
    # keeps it with `dvc exp save -n mine` and comes back to it with `dvc exp apply mine`, no retraining.
    dvc("exp", "apply", "tried", cwd=project)
    dvc("exp", "save", "-n", "mine", cwd=project)
    for command in readme_commands("back-to-committed"):
        shell(command, project)
    assert git_status(project) == "" and output_files(project, *RUN_FILES) == before
    dvc("exp", "apply", "mine", cwd=project)
    assert str(project_params(project).lora.r) == rank
    again = dvc("repro", cwd=project).stdout
    assert "Running stage" not in again and "up to date" in again


def test_readme_exp_show_call_fits_120_columns(untrained_project):
    """The README's `dvc exp show` call shows the changed param and the headline metrics, in 120 columns."""
    (command,) = [c for c in readme_commands("daily-loop") if c.startswith("dvc exp show")]
    shown = shell(command, untrained_project[0]).stdout
    assert max(len(line) for line in shown.splitlines()) <= 120, shown
    assert "train.epochs" in shown and "acc" in shown and "base-model" in shown

