"""mqp kfold: grouped k-fold experiments, queued through DVC, pooled into one table per model; and
mqp sweep on a queued sweep, its runs' predictions read back from their experiments."""

from __future__ import annotations

import csv
import json
import re
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, dvc, make_project, read_json, run, run_queue
from mqp import paths
from mqp.openset import pool_openset
from mqp.stats import paired_counts
from mqp.ranking_metrics import pool_retrieval, retrieval_detail
from mqp.commands.kfold import markdown, summarise


REPORTS: dict[str, dict[str, dict]] = {}  # rev: {report path: report}, what git would show


def read_report(rev: str, path) -> dict | None:
    return REPORTS.get(rev, {}).get(str(path))


def fake_run(fold: int, correct: dict[str, int], n: int = 10, timestamp: str = "2026-11-28T10:00:00", **params) -> dict:
    """One experiment as `dvc exp show --json` lists it, and its reports in REPORTS, with made-up
    but consistent counts."""
    def model(right: int, versus: dict | None = None) -> dict:
        tp = right // 2
        test = {"accuracy": right / n, "roc_auc": 0.5 + right / (4 * n), "tp": tp, "tn": right - tp,
                "fp": (n - right) // 2, "fn": n - right - (n - right) // 2, "n": n}
        return {"test": test, **(versus or {})}

    lora_right = correct["lora"]
    versus = {f"vs_{other}": {"this_only": max(lora_right - correct[other], 0),
                              "other_only": max(correct[other] - lora_right, 0),
                              "accuracy_diff": (lora_right - correct[other]) / n, "n": n}
              for other in ("base", "zeroshot")}
    data = {"split": "kfold", "folds": 2, "fold": fold, "seed": 42}
    model_params = {"architecture": params.get("architecture", "cross-encoder")}
    rev = f"rev{fold}{model_params['architecture']}{timestamp}"
    REPORTS[rev] = {str(paths.BASE_REPORT): model(correct["base"]), str(paths.ZEROSHOT_REPORT): model(correct["zeroshot"]),
                    str(paths.LORA_REPORT): model(lora_right, versus)}
    return {"rev": rev, "name": f"fold-{fold}",
            "data": {"params": {str(paths.PARAMS_FILE): {"data": {"data": data, "model": model_params}}},
                     "timestamp": timestamp}}


def exp_show(*runs) -> list[dict]:
    return [{"rev": "workspace", "name": None, "data": {}},
            {"rev": "abc", "name": "main", "data": {},
             "experiments": [{"revs": [run], "executor": None, "name": run["name"]} for run in runs]}]


def test_pooled_figures_are_sums_of_the_fold_counts():
    summary, = summarise(exp_show(fake_run(0, {"base": 5, "zeroshot": 7, "lora": 9}),
                                  fake_run(1, {"base": 4, "zeroshot": 8, "lora": 8})), read_report)
    lora, zeroshot = summary["lora"], summary["zeroshot"]
    assert lora["n"] == 20 and lora["accuracy"] == pytest.approx(17 / 20)
    assert lora["accuracy_per_fold"] == [0.9, 0.8]
    assert lora["accuracy_mean"] == pytest.approx(0.85) and lora["accuracy_std"] == pytest.approx(0.0707107, abs=1e-6)
    assert lora["accuracy_ci_low"] < 0.85 < lora["accuracy_ci_high"]
    assert zeroshot["accuracy"] == pytest.approx(15 / 20)
    versus = lora["vs_zeroshot"]
    assert (versus["this_only"], versus["other_only"], versus["n"]) == (2, 0, 20)
    assert versus["accuracy_diff"] == pytest.approx(0.1) and versus["wins"] == 1
    assert lora["vs_base"]["this_only"] == 8


def test_variants_get_a_table_each_and_incomplete_ones_are_left_out(capsys):
    runs = [fake_run(0, {"base": 5, "zeroshot": 7, "lora": 9}), fake_run(1, {"base": 5, "zeroshot": 7, "lora": 9}),
            fake_run(0, {"base": 5, "zeroshot": 7, "lora": 10}, architecture="bi-encoder")]
    summaries = summarise(exp_show(*runs), read_report)
    assert [s["configuration"] for s in summaries] == ["model.architecture=cross-encoder"]
    assert "model.architecture=bi-encoder: folds [1] of 2 have not finished" in capsys.readouterr().err


def test_a_fold_run_twice_counts_once_the_newest_run():
    old = fake_run(0, {"base": 5, "zeroshot": 7, "lora": 6}, timestamp="2026-11-28T09:00:00")
    new = fake_run(0, {"base": 5, "zeroshot": 7, "lora": 9}, timestamp="2026-11-28T11:00:00")
    summary, = summarise(exp_show(old, new, fake_run(1, {"base": 5, "zeroshot": 7, "lora": 9})), read_report)
    assert summary["lora"]["n"] == 20 and summary["lora"]["accuracy_per_fold"] == [0.9, 0.9]


def test_no_finished_experiments_is_one_clear_error():
    from mqp.errors import PipelineError

    with pytest.raises(PipelineError, match=r"no finished kfold experiments.*dvc exp run --queue"):
        summarise(exp_show(), read_report)


@pytest.mark.slow
def test_queued_sweep_runs_through_dvc_and_pools_over_every_pair(tmp_path, tiny_bert):
    """Two ranks by two folds, queued as the README says: kfold pools each rank over every pair, and
    sweep reads each run's predictions back from its experiment and pairs the ranks fold by fold;
    then a second seed, and sweep --ensemble averages the seeds, on validation and on the test."""
    project = make_project(tmp_path / "project", tiny_bert, overrides={"data.folds": 2, "train.epochs": 1})
    dvc("exp", "run", "--queue", "-S", "data.fold=range(0,2)", "-S", "lora.r=2,4", "-C", str(paths.RAW_CSV.parent),
        "evaluate", "retrieval", cwd=project)
    run_queue(project, jobs=2)  # two runs side by side: the suite's slowest test, ~1.7x quicker
    check_kfold_and_sweep(project)
    # r=4 with a second seed: sweep --ensemble averages the two seeds' answers, read back from the experiments.
    dvc("exp", "run", "--queue", "-S", "data.fold=range(0,2)", "-S", "lora.r=4", "-S", "train.seed=43",
        "-C", str(paths.RAW_CSV.parent), "evaluate", cwd=project)
    run_queue(project, jobs=2)
    check_seed_ensemble(project)


def check_seed_ensemble(project) -> None:
    out = run([sys.executable, "-m", "mqp", "sweep", "--ensemble", "--reference", "lora.r=4, train.seed=42", "--csv",
               "ensemble.csv"], cwd=project).stdout
    rows = {row["configuration"]: row for row in csv.DictReader(open(project / "ensemble.csv", encoding="utf-8"))}
    assert "| ensemble of train.seed=42+43 |" in out  # its change from the reference
    ensemble, reference = rows["lora.r=4, ensemble of train.seed=42+43"], rows["lora.r=4, train.seed=42"]
    assert ensemble["n"] == "96" and ensemble["train.seed"] == "42+43"
    right = {name: round(float(rows[name]["accuracy"]) * 96) for name in rows}
    assert int(ensemble["this_only"]) - int(ensemble["other_only"]) == right[ensemble["configuration"]] - right[
        reference["configuration"]]
    screen = run([sys.executable, "-m", "mqp", "sweep", "--ensemble", "--validation"], cwd=project).stdout
    assert "lora.r=4, ensemble of train.seed=42+43: validation accuracy " in screen
    assert "pooled over folds [0, 1]" in screen.split("ensemble of train.seed")[1]


def check_kfold_and_sweep(project) -> None:
    result = run([sys.executable, "-m", "mqp", "kfold", "--json", "kfold.json"], cwd=project)
    summaries = {s["configuration"]: s for s in read_json(project / "kfold.json")["configurations"]}
    assert sorted(summaries) == ["lora.r=2", "lora.r=4"]
    for summary in summaries.values():
        assert summary["lora"]["n"] == 96 and summary["lora"]["folds"] == 2  # every pair tested once
        assert len(summary["experiments"]) == 2
        for model in ("base", "zeroshot", "lora"):
            assert f"| {model} | {summary[model]['accuracy']:.4f}" in result.stdout
        assert summary["retrieval"]["folds"] == 2 and summary["retrieval"]["methods"]["lora"]["n"] == 48  # every query
        assert summary["openset"]["methods"]["fusion"]["verdicts"] == 96 and "Already answered?" in result.stdout
    assert json.dumps(summaries)  # plain JSON

    out = run([sys.executable, "-m", "mqp", "sweep", "--reference", "lora.r=4", "--csv", "sweep.csv"], cwd=project).stdout
    assert out.startswith("Reference: lora.r=4; every configuration on the same 96 test pairs")
    rows = {row["configuration"]: row for row in csv.DictReader(open(project / "sweep.csv", encoding="utf-8"))}
    low, high = rows["lora.r=2"], rows["lora.r=4"]
    assert int(low["trainable_params"]) < int(high["trainable_params"])  # the rank reached each adapter
    assert (high["reference"], high["this_only"], high["other_only"]) == ("True", "0", "0")
    # The paired difference, from the runs' predictions, is the difference of the pooled accuracies,
    # from their reports' counts.
    right = {name: round(summaries[name]["lora"]["accuracy"] * 96) for name in summaries}
    assert int(low["this_only"]) - int(low["other_only"]) == right["lora.r=2"] - right["lora.r=4"]
    assert float(low["vs_reference_accuracy_diff"]) == pytest.approx((right["lora.r=2"] - right["lora.r=4"]) / 96, abs=1e-6)
    # `python -m mqp compare` on the same runs, fold by fold: its discordant counts add up to sweep's,
    # and so do its difference, interval and p.
    counts = [0, 0, 0]
    for fold in (0, 1):
        a, b = summaries["lora.r=2"]["experiments"][fold], summaries["lora.r=4"]["experiments"][fold]
        out = run([sys.executable, "-m", "mqp", "compare", a, b], cwd=project).stdout
        this_only, other_only = map(int, re.search(r"\((\d+) pairs only .* got right, (\d+) only ", out).groups())
        counts = [counts[0] + this_only, counts[1] + other_only, counts[2] + 48]
        assert "compare: the same 48 test pairs in both runs" in out
    assert (low["this_only"], low["other_only"]) == (str(counts[0]), str(counts[1]))
    pooled = paired_counts(*counts)
    assert [float(low[f"vs_reference_{key}"]) for key in ("accuracy_diff", "diff_ci_low", "diff_ci_high", "mcnemar_p")] == [
        pooled[key] for key in ("accuracy_diff", "diff_ci_low", "diff_ci_high", "mcnemar_p")]
    # The README's plot of it, rendered offline.
    run([sys.executable, str(REPO / "plots" / "render_png.py"), "img", "sweep.csv", "--template",
         str(REPO / "plots" / "accuracy_ci.json"), "-x", "lora.r", "-y", "accuracy"], cwd=project)
    assert Image.open(project / "img" / "sweep.csv.png").size[0] > 400


def test_retrieval_pools_over_the_folds_when_every_fold_has_it():
    """Runs queued up to the retrieval stage too: kfold adds its details up (mqp.stats.pool_retrieval)."""
    runs = [fake_run(fold, {"base": 5, "zeroshot": 7, "lora": 9}, timestamp=f"2026-11-28T12:0{fold}:00") for fold in (0, 1)]
    details = []
    for fold, run_ in enumerate(runs):
        ranks = {"lora": (np.array([1, 1, 2 + fold]), np.array([3, 2, 1])),
                 "zeroshot": (np.array([1, 2, 3]), np.array([2, 1, 1]))}
        details.append(retrieval_detail(ranks, "lora", bank=6))
        REPORTS[run_["rev"]][str(paths.RETRIEVAL_REPORT)] = details[-1]
    summary, = summarise(exp_show(*runs), read_report)
    assert summary["retrieval"] == pool_retrieval(details)
    assert summary["retrieval"]["methods"]["lora"]["n"] == 6
    assert "Retrieval (6 queries over 2 folds" in markdown(summary)
    del REPORTS[runs[1]["rev"]][str(paths.RETRIEVAL_REPORT)]  # one fold without: no pooled retrieval
    assert "retrieval" not in summarise(exp_show(*runs), read_report)[0]


def test_open_set_verdicts_pool_over_the_folds():
    """Each fold's open-set report (counts, paired counts) is added up by mqp.openset.pool_openset,
    and the table shows each method's verdicts with its recall@1."""
    from test_openset import fold_report

    runs = [fake_run(fold, {"base": 5, "zeroshot": 7, "lora": 9}, timestamp=f"2026-11-28T12:0{fold}:00") for fold in (0, 1)]
    reports = []
    for fold, run_ in enumerate(runs):
        ranks = {"a": (np.array([1, 1, 2 + fold]), np.array([3, 2, 1])), "b": (np.array([1, 2, 3]), np.array([2, 1, 1]))}
        reports.append(fold_report(fold)[0])
        REPORTS[run_["rev"]][str(paths.RETRIEVAL_REPORT)] = {**retrieval_detail(ranks, "a", bank=6), "openset": reports[-1]}
    summary, = summarise(exp_show(*runs), read_report)
    assert summary["openset"] == pool_openset(reports) and summary["openset"]["methods"]["a"]["verdicts"] == 120
    table = markdown(summary)
    assert "Already answered? (120 verdicts of 60 queries" in table
    a = summary["openset"]["methods"]["a"]
    assert f"| a | {a['verdict_accuracy']:.4f} [{a['verdict_accuracy_ci_low']:.3f}, {a['verdict_accuracy_ci_high']:.3f}]" in table
    perfect = (f"| {a['perfect_ranking_verdict_accuracy']:.4f} [{a['perfect_ranking_verdict_accuracy_ci_low']:.3f}, "
               f"{a['perfect_ranking_verdict_accuracy_ci_high']:.3f}] |")
    assert table.splitlines()[-2].endswith(perfect)  # method a's row ends with its bound


def test_runs_of_older_commits_are_read_in_todays_params():
    """An older commit's run lacks a param added since (read as its value today) and has one since
    dropped (left out): its folds join today's runs of the same configuration."""
    from mqp.runs import as_today, todays_params

    today = todays_params()
    assert today["train.method"] == "lora" and "data.url" not in today  # the repo's params.yaml
    older = {"data.fold": 0, "data.url": "https://example.com/mqp.csv", "lora.r": 8}
    assert as_today(older, {"data.fold": 1, "lora.r": 4, "train.method": "lora"}) == {
        "data.fold": 0, "lora.r": 8, "train.method": "lora"}
    old = fake_run(0, {"base": 5, "zeroshot": 7, "lora": 9}, timestamp="2026-11-28T09:00:00")
    old["data"]["params"][str(paths.PARAMS_FILE)]["data"]["data"]["url"] = "https://example.com/mqp.csv"
    new = fake_run(1, {"base": 5, "zeroshot": 7, "lora": 8})
    new["data"]["params"][str(paths.PARAMS_FILE)]["data"]["train"] = {"method": "lora"}
    summary, = summarise(exp_show(old, new), read_report)
    assert summary["lora"]["accuracy_per_fold"] == [0.9, 0.8]


def test_a_stage_that_did_not_run_in_an_experiment_is_not_its_own():
    """A run queued up to evaluate keeps its baseline's retrieval outputs, whose dvc.lock entry read
    another fold's data/prepared: they are not the run's (kfold and sweep leave them out)."""
    from mqp.runs import stage_is_current

    def lock(prepared: str, adapter: str, retrieval_read: tuple[str, str]) -> dict:
        data, model = str(paths.PREPARED_DIR), str(paths.ADAPTER_DIR)
        return {"stages": {
            "prepare": {"outs": [{"path": data, "md5": prepared}]},
            "finetune": {"deps": [{"path": data, "md5": prepared}], "outs": [{"path": model, "md5": adapter}]},
            "retrieval": {"deps": [{"path": data, "md5": retrieval_read[0]}, {"path": model, "md5": retrieval_read[1]},
                                   {"path": "stages/retrieval.py", "md5": "code"}]}}}

    assert stage_is_current(lock("fold1", "a1", ("fold1", "a1")), "retrieval")
    assert not stage_is_current(lock("fold1", "a1", ("fold0", "a0")), "retrieval")  # the baseline's fold 0
    assert not stage_is_current(lock("fold0", "a1", ("fold0", "a0")), "retrieval")  # same fold, another adapter
    assert not stage_is_current({"stages": {"prepare": {}}}, "retrieval")  # never ran
    assert stage_is_current(None, "retrieval")  # no dvc.lock: nothing tells


def test_of_two_runs_of_a_fold_the_one_with_retrieval_counts():
    from mqp.commands.kfold import configurations

    with_search = {"params": {"data.split": "kfold", "data.fold": 0}, "retrieval": {"n": 3}, "timestamp": "2026-11-30T01:00"}
    newer_without = {**with_search, "retrieval": None, "timestamp": "2026-11-30T02:00"}
    [by_fold] = configurations([with_search, newer_without]).values()
    assert by_fold[0] is with_search
