"""The README's quoted run figures are the committed run's: its `dvc metrics show` table is what that
command prints in a checkout of HEAD, and its stage summary lines are what the stages print from the
reports committed in HEAD. Both read git, not the workspace, so the suite passes after a user's own
`dvc repro` or `dvc exp run` has rewritten the workspace's metrics. A committed re-run that changes
them fails here until the README is updated."""

from __future__ import annotations

import json
import re

import pytest

from helpers import REPO, dvc, run
from mqp import paths
from mqp.metrics import summary_line
from stages import evaluate, finetune, zeroshot

README = (REPO / "README.md").read_text(encoding="utf-8")


def block_after(marker: str) -> list[str]:
    """The lines of the code block that follows `<!-- marker: ... -->`."""
    match = re.search(rf"<!-- {marker}:[^\n]*-->\n```[^\n]*\n(.*?)\n```", README, re.S)
    assert match, f"README has no code block after <!-- {marker}: ... -->"
    return match.group(1).splitlines()


def committed(path) -> dict:
    """A file as HEAD has it (the workspace's may be the user's own run)."""
    return json.loads(run(["git", "show", f"HEAD:{path}"], cwd=REPO).stdout)


@pytest.fixture(scope="module")
def head_checkout(tmp_path_factory):
    """A git worktree of HEAD: the committed run's metrics files, for DVC to read."""
    path = tmp_path_factory.mktemp("head") / "checkout"
    run(["git", "worktree", "add", "-q", "--detach", str(path), "HEAD"], cwd=REPO)
    yield path
    run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO)


def test_readme_metrics_table_is_what_dvc_metrics_show_prints(head_checkout):
    shown = dvc("metrics", "show", cwd=head_checkout).stdout
    assert block_after("metrics-show") == [line.rstrip() for line in shown.strip("\n").splitlines()]


def test_readme_metrics_table_fits_120_columns():
    assert max(len(line) for line in block_after("metrics-show")) <= 120


def test_readme_stage_lines_are_the_committed_run():
    base = committed(paths.BASE_REPORT)
    expected = [summary_line("baseline", base, "cpu"),
                zeroshot.summary(committed(paths.ZEROSHOT_REPORT), "cpu"),
                finetune.summary_line(committed(paths.TRAIN_REPORT), "cpu"),
                evaluate.summary(committed(paths.LORA_REPORT), base, "cpu")]
    assert block_after("stage-lines") == expected
