"""The README's examples show what they print. Figures of the committed run are the committed run's:
the `dvc metrics show` table is what that command prints in a checkout of HEAD, the stage summary
lines and check's lines are what the stages print from the reports committed in HEAD, and predict's
answer is the committed adapter's. They read git, not the workspace, so the suite passes after a
user's own `dvc repro` or `dvc exp run` has rewritten the workspace (predict's check then skips: the
workspace's adapter is another run's). A committed re-run that changes them fails here until the
README is updated."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, dvc, run
from mqp import paths
from mqp.commands.compare import report
from mqp.card import CARD_FILE
from mqp.metrics import summary_line
from mqp.train_records import TrainSummary
from mqp.params import parse_params
from mqp.stats import paired_counts, proportion_ci
from stages import evaluate, finetune, prepare, retrieval, zeroshot
from mqp.commands import check

README = (REPO / "README.md").read_text(encoding="utf-8")


def block_after(marker: str) -> list[str]:
    """The lines of the code block that follows `<!-- marker: ... -->`."""
    match = re.search(rf"<!-- {marker}:[^\n]*-->\n```[^\n]*\n(.*?)\n```", README, re.S)
    assert match, f"README has no code block after <!-- {marker}: ... -->"
    return match.group(1).splitlines()


def committed_text(path) -> str:
    """A file as HEAD has it (the workspace's may be the user's own run)."""
    return run(["git", "show", f"HEAD:{path}"], cwd=REPO).stdout


def committed(path) -> dict:
    return json.loads(committed_text(path))


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
    """All eight summary lines that `dvc repro` prints in a fresh clone with MQP placed by hand (fetch,
    whose output dvc.lock already names, does not run), in stage order; index's timing is the machine's."""
    params = parse_params(yaml.safe_load(committed_text(paths.PARAMS_FILE)))
    base = committed(paths.BASE_REPORT)
    expected = [prepare.summary_line(committed(paths.DATA_REPORT), params.data),
                summary_line("baseline", base, "cpu"),
                zeroshot.summary(committed(paths.ZEROSHOT_REPORT), "cpu"),
                finetune.summary_line(TrainSummary.from_json(committed(paths.TRAIN_REPORT)), "cpu"),
                evaluate.summary(committed(paths.LORA_REPORT), base, "cpu"),
                # export's line, as stages/export.py prints it
                f"export: {params.model.name} + LoRA merged ({params.model.architecture}) into {paths.MERGED_DIR}, "
                f"no PEFT needed; test accuracy {committed(paths.LORA_REPORT)['test']['accuracy']:.4f} in its {CARD_FILE}",
                retrieval.summary(in_stage_order(committed(paths.RETRIEVAL_REPORT)))]
    lines = block_after("stage-lines")
    assert lines[:-1] == expected
    assert re.fullmatch(rf"index: \d+ questions \(every question of {paths.PREPARED_DIR}\) embedded for fusion search "
                        rf"\(the zero-shot model and {paths.MERGED_DIR}\) into {paths.INDEX_DIR}, "
                        r"\d+ dimensions, exact search; [\d.]+ s, \d+ questions/s", lines[-1]), lines[-1]


def in_stage_order(detail: dict) -> dict:
    """retrieval's report with its methods in the order the stage prints them (the file sorts its keys)."""
    return {**detail, **{key: {m: detail[key][m] for m in retrieval.NAMES if m in detail[key]}
                         for key in ("methods", "comparisons")}}


def test_readme_check_lines_are_the_committed_run():
    lora = committed(paths.LORA_REPORT)
    assert block_after("check")[1:] == [check.verdict(name, lora[f"vs_{name}"])[1] for name in check.GATES]


def test_readme_compare_output_is_what_compare_prints_for_its_counts():
    """The shown comparison recomputed from the counts it shows: both accuracies, the paired difference,
    its interval and p (the two runs' predictions are not in git)."""
    lines = block_after("compare")
    n = int(re.search(r"the same (\d+) test pairs", lines[0]).group(1))
    names, accuracies = zip(*(re.fullmatch(r"(\S+) +accuracy (0\.\d{4}) .*", line).groups() for line in lines[1:3]))
    this_only, other_only = map(int, re.search(r"\((\d+) pairs only .* got right, (\d+) only ", lines[3]).groups())
    result = paired_counts(this_only, other_only, n)
    for key, accuracy in zip("ab", accuracies):
        right = round(float(accuracy) * n)
        result[f"{key}_accuracy"], result[f"{key}_ci"] = right / n, proportion_ci(right, n)
    assert lines == report(*names, result).splitlines()


def workspace_is_the_committed_run() -> bool:
    """Whether the workspace's adapter is the one the committed params train (no experiment applied)."""
    same_params = (REPO / paths.PARAMS_FILE).read_text(encoding="utf-8") == committed_text(paths.PARAMS_FILE)
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "finetune", "--json"], cwd=REPO,
                            capture_output=True, text=True)
    return same_params and status.returncode == 0 and json.loads(status.stdout or "{}") == {}


@pytest.mark.slow
def test_readme_predict_example_prints_what_it_shows():
    if not (REPO / paths.ADAPTER_DIR).is_dir() or not workspace_is_the_committed_run():
        pytest.skip("the workspace's adapter is not the committed run's: `dvc repro` it, or return to it (README)")
    shown = block_after("predict")
    command = shown[0].removeprefix("$ python -m mqp predict ")
    questions = re.findall(r'"([^"]*)"', command)
    result = run([sys.executable, "-m", "mqp", "predict", *questions], cwd=REPO)
    assert result.stdout.splitlines() == [shown[2]]
    model = shown[1].split(", from ")[0]  # the commit is the machine's own run's
    assert result.stderr.startswith(model + ", from "), result.stderr


@pytest.mark.slow
def test_readme_search_example_prints_what_it_shows():
    """The verdict and hits of the committed run's index (the workspace's, where it is that run's)."""
    if not (REPO / paths.INDEX_DIR).is_dir() or not workspace_is_the_committed_run():
        pytest.skip("the workspace's index is not the committed run's: `dvc repro` it, or return to it (README)")
    shown = block_after("search")
    command = shown[0].removeprefix("$ python -m mqp search ").split("  #")[0]
    question = re.search(r'"([^"]*)"', command).group(1)
    k = re.search(r"--k (\d+)", command).group(1)
    result = run([sys.executable, "-m", "mqp", "search", question, "--k", k], cwd=REPO)
    assert result.stdout.splitlines() == shown[1:]
