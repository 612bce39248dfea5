"""benchmarks/scale.py: the MQP-shaped data it makes (deterministic, MQP's groups and labels kept,
every question new), the growth exponents, and its quick mode end to end on the tiny model."""

import collections
import json
import random
import subprocess
import sys

import pytest

from benchmarks.scale import BATCH, FILLERS, STAGES, edited, exponents, scaled_rows
from helpers import REPO, SHARED_CSV

MQP_ROWS = [["1", "Can I take ibuprofen with a cold?", "Is ibuprofen safe when I have a cold?", "1"],
            ["1", "Can I take ibuprofen with a cold?", "Can ibuprofen cure a cold?", "0"],
            ["2", "Why does my knee hurt after running?", "My knee hurts when I run, why?", "1"],
            ["2", "Why does my knee hurt after running?", "How do I stretch my knee before running?", "0"]]


def test_the_same_rows_and_seed_give_the_same_data_and_another_seed_other_data():
    assert scaled_rows(MQP_ROWS, 40) == scaled_rows(MQP_ROWS, 40)
    assert scaled_rows(MQP_ROWS, 40, seed=1) != scaled_rows(MQP_ROWS, 40)
    assert scaled_rows(MQP_ROWS, 40, seed=1)[:4] == MQP_ROWS  # MQP's own rows first, whatever the seed


def test_copies_keep_each_groups_dr_id_and_labels_and_every_question_is_new():
    rows = scaled_rows(MQP_ROWS, 40)
    assert len(rows) == 40
    groups = collections.defaultdict(list)
    for dr_id, question_1, _, label in rows:
        groups[question_1].append((dr_id, label))
    assert len(groups) == 20
    assert sorted(map(sorted, groups.values())) == sorted([[("1", "0"), ("1", "1")]] * 10 + [[("2", "0"), ("2", "1")]] * 10)
    assert len({row[2] for row in rows}) == 40  # no rewrite twice
    assert not {row[1] for row in rows} & {row[2] for row in rows}


def test_only_whole_groups_are_taken():
    assert len(scaled_rows(MQP_ROWS, 7)) == 6


def test_edits_are_word_level():
    """An edit keeps the question's words, give or take two: swapped, dropped, repeated or a filler."""
    question = "Can I take ibuprofen with a cold?"
    for seed in range(50):
        words = edited(question, random.Random(seed)).split()
        assert set(words) <= set(question.split()) | set(FILLERS)
        assert abs(len(words) - len(question.split())) <= 2


def test_exponent_is_the_slope_on_log_log_axes():
    results = {"1000": {"a": {"seconds": 2.0}, "b": {"seconds": 5.0}},
               "10000": {"a": {"seconds": 20.0}, "b": {"seconds": 500.0}}}
    assert exponents([1000, 10000], results, "seconds") == {"a": {"1000-10000": 1.0}, "b": {"1000-10000": 2.0}}


@pytest.mark.slow
def test_quick_mode_measures_every_stage_at_3k_and_30k_pairs(tmp_path):
    """`--quick` on the tiny model, training capped at 20 steps: every stage and batch command timed
    and measured at both sizes, the exponents between them, the JSON and the plot written."""
    if not SHARED_CSV.is_file():
        pytest.skip(f"{SHARED_CSV} is not there")
    result = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--quick", "--model", "tiny", "--steps", "20",
                             "--source", str(SHARED_CSV), "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "scale.json").read_text())
    assert report["sizes"] == [3000, 30000]
    for size in ("3000", "30000"):
        assert list(report["results"][size]) == [*STAGES, *BATCH]
        assert all(figures["seconds"] > 0 and figures["peak_mib"] > 50 for figures in report["results"][size].values())
    finetune = report["results"]["30000"]["finetune"]
    assert finetune["steps_run"] == 20 and finetune["epoch_steps"] > 20
    assert finetune["epoch_seconds"] > finetune["capped_run_seconds"]  # the epoch computed, longer than 20 steps
    assert set(report["time_exponents"]) == {*STAGES, *BATCH}
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| finetune |" in result.stdout


def test_docs_scale_table_is_the_committed_benchmark():
    """docs/scale.md's table is what benchmarks/scale.py prints for docs/img/scale.json."""
    from benchmarks.scale import table

    result = json.loads((REPO / "docs" / "img" / "scale.json").read_text(encoding="utf-8"))
    text = (REPO / "docs" / "scale.md").read_text(encoding="utf-8")
    assert "\n".join(table(result)) in text
