"""benchmarks/gpu_check.py in its tiny mode, on the CPU: a DVC run of the six stages in a scratch
project, the step profile, fp32 against bf16, the overhead against a bare loop, GPT-2 from its
config and inference speed, written as one JSON and one Markdown summary."""

import json
import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow


def test_tiny_gpu_check_reports_every_part(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--out", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    stages = report["pipeline"]["stages"]
    assert list(stages) == ["prepare", "baseline", "zeroshot", "finetune", "evaluate", "export"]
    assert all(stage["seconds"] > 0 for stage in stages.values())
    # Each model stage's summary line names the device it ran on.
    assert {stages[name]["device"] for name in ("baseline", "zeroshot", "finetune", "evaluate")} == {"cpu"}
    assert report["profile"]["step_seconds"] > 0 and report["precision"]["fp32"]["n"] >= 4
    assert report["overhead"]["trainer"]["median"] > 0 and report["overhead"]["bare"]["median"] > 0
    assert report["gpt2"]["epochs"] == 1 and report["gpt2"]["train_seconds"] > 0
    assert all(rate > 0 for rate in report["inference"]["pairs_per_second_by_batch"].values())
    summary = (tmp_path / "gpu_check.md").read_text()
    assert "| **all six** |" in summary and "fp32" in summary and "bare loop" in summary
    assert not (tmp_path / "scratch").exists()  # the scratch project is removed
