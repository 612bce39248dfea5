"""mqp check, the CI gate: exit 0 only when LoRA beats the base model on test accuracy with
McNemar p < 0.05 (the untrained run that fails it: test_untrained.py); LoRA vs zero-shot is
reported, not gated; a missing or broken metrics file is one line, never a traceback."""

import json
import sys

import pytest

from helpers import command, REPO, read_json, repo_params_raw, run, write_params
from mqp import paths


def check(cwd, **env):
    """`python -m mqp check` in cwd (stages/ importable from the repo when cwd is no project)."""
    return run([sys.executable, "-m", "mqp", "check"], cwd=cwd, check=False, env={"PYTHONPATH": str(REPO), **env})


@pytest.fixture
def workdir(tmp_path):
    """A folder with params.yaml, where the tests write LORA_REPORT by hand."""
    write_params(tmp_path, repo_params_raw())
    return tmp_path


def comparison(diff: float, p: float, this_only: int = 10, other_only: int = 1) -> dict:
    return {"accuracy_diff": diff, "diff_ci_low": diff - 0.1, "diff_ci_high": diff + 0.1, "mcnemar_p": p,
            "this_only": this_only, "other_only": other_only, "n": 100}


def write_lora(folder, **comparisons) -> None:
    (folder / paths.LORA_REPORT).parent.mkdir(parents=True, exist_ok=True)
    (folder / paths.LORA_REPORT).write_text(json.dumps({"test": {"accuracy": 0.9}, **comparisons}))


@pytest.mark.parametrize("vs_base, passes", [
    (comparison(0.09, 0.0117), True),
    (comparison(0.09, 0.05), False),     # p must be below 0.05
    (comparison(-0.2, 0.001), False),    # significantly worse is not better
    (comparison(0.0, 1.0, 0, 0), False),
])
def test_gate_on_base_alone(workdir, vs_base, passes):
    write_lora(workdir, vs_base=vs_base, vs_zeroshot=comparison(-0.05, 0.3, 2, 7))  # worse than zero-shot: reported only
    result = check(workdir)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("check: LoRA vs base: accuracy ") and lines[1].startswith("check: LoRA vs zeroshot: accuracy -0.0500")
    assert lines[1].endswith("McNemar p 0.3 (2 pairs only LoRA got right, 7 only zeroshot): NOT significantly better")
    if passes:
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert lines[0] == ("check: LoRA vs base: accuracy +0.0900 [-0.0100, +0.1900], McNemar p 0.0117 (10 pairs only "
                            "LoRA got right, 1 only base): significantly better")
    else:
        assert result.returncode == 1 and lines[0].endswith("NOT significantly better")
        assert result.stderr == "check: error: LoRA is not significantly better than base (p < 0.05 required)\n"


def test_missing_metrics_file_is_one_line(workdir):
    result = check(workdir)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"check: error: {paths.LORA_REPORT} not found: run `dvc repro` first\n"


def test_broken_or_old_metrics_file_is_one_line(workdir):
    (workdir / paths.LORA_REPORT).parent.mkdir(parents=True)
    (workdir / paths.LORA_REPORT).write_text('{"test": ')
    result = check(workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"check: error: {paths.LORA_REPORT} is not valid JSON (")
    assert result.stderr.endswith("): run `dvc repro --force evaluate`\n") and result.stderr.count("\n") == 1
    write_lora(workdir)  # a lora.json from before the paired comparisons
    assert check(workdir).stderr == f"check: error: {paths.LORA_REPORT} has no vs_base comparison: run `dvc repro`\n"


@pytest.mark.slow
def test_trained_lora_passes(trained_project):
    project, _ = trained_project
    lora = read_json(project / paths.LORA_REPORT)
    assert lora["vs_base"]["accuracy_diff"] > 0 and lora["vs_base"]["mcnemar_p"] < 0.05  # the premise
    result = command("check", project, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith(": significantly better")
    assert lines[1].startswith("check: LoRA vs zeroshot: accuracy ")
