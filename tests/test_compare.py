"""`python -m mqp compare A B`: two runs pair by pair, from their stored predictions, on the
committed trained run (HEAD) and its experiment `base-model` (train.epochs=0, the untrained LoRA):
the same figures evaluate computed for LoRA against the base model. (Against mqp sweep's on the
same runs: test_kfold.py.) And `python -m mqp`, the commands' entry point."""

import re
import sys

import pytest

from helpers import REPO, committed_json, repo_params_raw, run, write_params
from mqp import paths
from mqp.metrics import p_value_text
from mqp.stats import paired_counts


@pytest.mark.slow
def test_compare_two_runs_gives_evaluates_paired_figures(untrained_project):
    project, _ = untrained_project
    out = run([sys.executable, "-m", "mqp", "compare", "HEAD", "base-model"], cwd=project).stdout
    versus = committed_json(project, "HEAD", paths.LORA_REPORT)["vs_base"]  # trained LoRA against the base model
    assert paired_counts(versus["this_only"], versus["other_only"], versus["n"])["mcnemar_p"] == versus["mcnemar_p"]
    n, a, b = versus["n"], versus["this_only"], versus["other_only"]
    lines = out.splitlines()
    assert lines[0] == f"compare: the same {n} test pairs in both runs"
    assert re.fullmatch(r"HEAD {8}accuracy [01]\.\d{4} \[[01]\.\d{4}, [01]\.\d{4}\]", lines[1]), lines[1]
    assert lines[2].startswith("base-model  accuracy ")
    assert lines[3] == (f"HEAD − base-model: {100 * versus['accuracy_diff']:+.1f} points [{100 * versus['diff_ci_low']:+.1f}, "
                        f"{100 * versus['diff_ci_high']:+.1f}], exact McNemar p {p_value_text(versus['mcnemar_p'])} "
                        f"({a} pairs only HEAD got right, {b} only base-model)")
    # The workspace is the experiment's run: the same answers, so no difference.
    same = run([sys.executable, "-m", "mqp", "compare", "workspace", "base-model"], cwd=project).stdout
    assert "workspace − base-model: +0.0 points" in same and "(0 pairs only workspace got right, 0 only base-model)" in same


def test_compare_names_an_unknown_run_in_one_line(tmp_path):
    run(["git", "init", "-q"], cwd=tmp_path)
    write_params(tmp_path, repo_params_raw())
    result = run([sys.executable, "-m", "mqp", "compare", "no-such-run", "HEAD"], cwd=tmp_path, check=False,
                 env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and result.stderr == (
        "compare: error: no git revision or DVC experiment is named 'no-such-run': give a commit, a branch, an "
        "experiment's name (`dvc exp show`), or workspace\n")


def test_entry_point_lists_its_commands():
    from mqp.__main__ import COMMANDS

    out = run([sys.executable, "-m", "mqp", "--help"], cwd=REPO).stdout
    assert all(re.search(rf"^  {name} +\S", out, re.M) for name in COMMANDS)
    result = run([sys.executable, "-m", "mqp", "comapre"], cwd=REPO, check=False)
    assert result.returncode == 1 and result.stderr == (
        f"mqp: error: no command 'comapre'; the commands: {', '.join(COMMANDS)}\n")

