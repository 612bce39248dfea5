"""mqp sweep: configurations of a k-fold sweep compared pair by pair with a reference, on hand-made
predictions whose discordant counts are known. (The queued sweep through DVC, read back from its
experiments, is in test_kfold.py.)"""

from __future__ import annotations

import pandas as pd
import pytest

from helpers import repo_params_raw
from mqp import paths
from mqp.errors import PipelineError
from mqp.stats import paired_counts, proportion_ci
from mqp.commands.sweep import (compare, ensemble_line, markdown, pooled_validation, search_cells, seed_ensembles, validation_ensembles, validation_markdown, validation_rows)
from mqp.configurations import change_label, find_reference
from mqp.pairing import Ensemble, answers, mean_predictions, paired_over_folds, paired_search
from mqp.runs import flatten, todays_params

PAIRS = [(f"question {i}?", f"rewrite {i}?") for i in range(10)]
LABELS = [1, 0] * 5


def predictions(right: list[int], order=None) -> pd.DataFrame:
    """predictions.csv rows over PAIRS, right where `right` has a 1 (optionally in another row order)."""
    rows = [{"question_1": q1, "question_2": q2, "label": label, "predicted": label if ok else 1 - label}
            for (q1, q2), label, ok in zip(PAIRS, LABELS, right)]
    return pd.DataFrame([rows[i] for i in (order or range(len(rows)))])


# rev: predictions. Fold 0: a right on 0-7, the reference on 2-9 -> this_only 2 (0, 1), other_only 2 (8, 9).
# Fold 1: a right on all, the reference on 0-4 -> this_only 5, other_only 0.
RUNS = {"a0": predictions([1] * 8 + [0] * 2), "r0": predictions([0] * 2 + [1] * 8, order=list(range(9, -1, -1))),
        "a1": predictions([1] * 10), "r1": predictions([1] * 5 + [0] * 5)}


def test_paired_difference_sums_each_folds_discordant_pairs():
    result = paired_over_folds(["a0", "a1"], ["r0", "r1"], RUNS.__getitem__)
    assert (result["this_only"], result["other_only"], result["n"]) == (7, 2, 20)
    assert result == paired_counts(7, 2, 20)
    assert result["accuracy_diff"] == pytest.approx((18 - 13) / 20)


def test_other_test_pairs_cannot_be_paired():
    other = predictions([1] * 10).assign(question_1=lambda t: t["question_1"] + " (other split)")
    with pytest.raises(PipelineError, match="fold 0: the two runs were tested on other pairs"):
        paired_over_folds(["x"], ["r0"], {"x": other, **RUNS}.__getitem__)


def summary(label: str, revs: list[str], accuracy: float, **params) -> dict:
    return {"configuration": label, "revs": revs, "params": {"lora.r": 8, "train.epochs": 3, **params},
            "lora": {"n": 20, "accuracy": accuracy, "accuracy_ci_low": accuracy - 0.1, "accuracy_ci_high": accuracy + 0.05}}


def test_rows_name_params_size_cost_and_difference():
    a, reference = summary("lora.r=2", ["a0", "a1"], 0.9, **{"lora.r": 2}), summary("lora.r=8", ["r0", "r1"], 0.65)
    reports = {"a0": 120.0, "a1": 180.0, "r0": 60.0, "r1": 60.0}
    rows = compare([reference, a], reference, RUNS.__getitem__,
                   lambda rev, path: {"trainable_params": 100 if rev.startswith("a") else 400, "wall_seconds": reports[rev]},
                   {}.get)  # no ranks: the runs stopped at evaluate
    assert [row["configuration"] for row in rows] == ["lora.r=2", "lora.r=8"]  # best first
    top, ref = rows
    assert top["lora.r"] == 2 and "train.epochs" not in top  # only the params that vary become columns
    assert (top["trainable_params"], top["minutes_per_fold"], top["reference"]) == (100, 2.5, False)
    assert (top["this_only"], top["other_only"]) == (7, 2)
    assert top["vs_reference_mcnemar_p"] == paired_counts(7, 2, 20)["mcnemar_p"]
    assert (ref["this_only"], ref["other_only"], ref["vs_reference_accuracy_diff"], ref["reference"]) == (0, 0, 0, True)
    table = markdown(rows, reference)
    assert "| lora.r=2 | 100 | 0.9000 [0.800, 0.950] | +25.0 points [" in table
    assert "recall_at_1" not in top and "| 0.180 | |  | 2.5 |" in table  # search columns empty
    assert "| (reference) | 400 | 0.6500 [0.550, 0.700] | (reference) |" in table
    assert (top["change"], ref["change"]) == ("lora.r=2", "(reference)")


def test_a_configuration_is_named_by_what_it_changes_from_the_reference():
    reference = summary("defaults", ["r0"], 0.8)
    attention = summary("other", ["a0"], 0.8, **{"lora.target_modules": ["query", "value"], "lora.r": 2})
    assert change_label(attention, reference) == "lora.r=2, lora.target_modules=[query,value]"  # as -S takes it
    assert change_label(reference, reference) == "(reference)"


def test_reference_is_params_yaml_unless_named():
    params = repo_params_raw()
    ours = {"configuration": "lora.r=8", "params": {k: v for k, v in flatten(params).items()
                                                   if k != "data.fold" and not k.startswith("logging.")}}
    other = {"configuration": "lora.r=2", "params": {**ours["params"], "lora.r": 2}}
    assert find_reference([other, ours], params, None) is ours
    assert find_reference([other, ours], params, "lora.r=2") is other
    with pytest.raises(PipelineError, match=r"no configuration 'lora.r=3' among the finished sweeps: lora.r=2; lora.r=8"):
        find_reference([other, ours], params, "lora.r=3")
    with pytest.raises(PipelineError, match="no finished configuration has params.yaml's values"):
        find_reference([other], params, None)


SCREEN_REPORTS: dict = {}  # rev: {report path: report}, what git would show


def screened(name: str, rev: str, accuracy: float | None, **params) -> dict:
    """A finished run as `dvc exp show --json` lists it; accuracy None: no trained adapter (epochs 0)."""
    SCREEN_REPORTS[rev] = {
        str(paths.TRAIN_REPORT): {"epochs": 0 if accuracy is None else 3, "best_epoch": 2, "trainable_params": 1000,
                                  "wall_seconds": 90.0, "validation": {"accuracy": accuracy, "f1": 0.5}},
        str(paths.DATA_REPORT): {"validation": {"n": 304}}}
    flat_params = {"data": {"fold": 0}, "lora": {"r": 8}, "logging": {"wandb": "disabled"}}
    for key, value in params.items():
        group, field = key.split(".")
        flat_params[group] = {**flat_params.get(group, {}), field: value}
    return {"rev": rev, "name": name, "data": {"params": {str(paths.PARAMS_FILE): {"data": flat_params}}}}


def test_validation_screen_lists_each_run_with_its_interval():
    runs = [screened("r2", "a", 0.80, **{"lora.r": 2}), screened("r32", "b", 0.85, **{"lora.r": 32}),
            screened("untrained", "c", None, **{"lora.r": 4})]
    exp_show = [{"rev": "workspace", "name": None, "data": {}},
                {"rev": "abc", "name": "main", "data": {},
                 "experiments": [{"revs": [run], "executor": None} for run in runs]}]
    rows = validation_rows(exp_show, lambda rev, path: SCREEN_REPORTS.get(rev, {}).get(str(path)))
    assert [(row["run"], row["lora.r"]) for row in rows] == [("r32", 32), ("r2", 2)]  # best first, untrained left out
    assert (rows[0]["n"], rows[0]["minutes"]) == (304, 1.5)
    assert (rows[0]["accuracy_ci_low"], rows[0]["accuracy_ci_high"]) == proportion_ci(round(0.85 * 304), 304)
    assert "| r32 | lora.r=32 | 0 | 0.8500 [" in validation_markdown(rows)
    with pytest.raises(PipelineError, match="no finished run with a trained adapter"):
        validation_rows(exp_show[:1], lambda rev, path: None)


def test_validation_pools_each_configurations_folds():
    rows = [{"run": "a", "change": "lora.r=2", "lora.r": 2, "data.fold": 0, "n": 100, "accuracy": 0.8},
            {"run": "b", "change": "lora.r=2", "lora.r": 2, "data.fold": 1, "n": 300, "accuracy": 0.9},
            {"run": "c", "change": "params.yaml", "lora.r": 8, "data.fold": 0, "n": 100, "accuracy": 0.85}]
    pooled = pooled_validation(rows)
    assert [(p["configuration"], p["folds"], p["n"]) for p in pooled] == [("lora.r=2", [0, 1], 400), ("params.yaml", [0], 100)]
    assert pooled[0]["accuracy"] == (80 + 270) / 400
    assert (pooled[0]["accuracy_ci_low"], pooled[0]["accuracy_ci_high"]) == proportion_ci(350, 400)


def with_probs(probs: list[float], order=None) -> pd.DataFrame:
    """predictions.csv rows over PAIRS with these P(similar), answered at 0.5."""
    frame = pd.DataFrame([{"question_1": q1, "question_2": q2, "label": label, "prob_similar": p, "predicted": int(p >= 0.5)}
                          for (q1, q2), label, p in zip(PAIRS, LABELS, probs)])
    return frame.iloc[order] if order else frame


# Three seeds of one fold. LABELS alternate 1, 0. Each seed alone gets 8 of 10 right, on other pairs;
# the mean P(similar) gets all 10: pair 0 (label 1) 0.4, 0.6, 0.8 -> 0.6; pair 1 (label 0) 0.6, 0.2, 0.3 -> 0.367.
SEEDS = {
    "s42": with_probs([0.4, 0.6] + [0.9, 0.1] * 4),
    "s43": with_probs([0.6, 0.2, 0.45, 0.55] + [0.9, 0.1] * 3, order=list(range(9, -1, -1))),
    "s44": with_probs([0.8, 0.3, 0.9, 0.1, 0.2, 0.7] + [0.9, 0.1] * 2),
}


def test_an_ensemble_answers_with_its_seeds_mean_probability():
    ensemble = answers(Ensemble(("s42", "s43", "s44"), 0.5), SEEDS.__getitem__)
    assert list(ensemble["question_1"]) == [q1 for q1, _ in PAIRS]  # the first member's order
    assert ensemble["prob_similar"].tolist()[:2] == pytest.approx([0.6, 1.1 / 3])
    assert (ensemble["predicted"] == ensemble["label"]).all()
    with pytest.raises(PipelineError, match="tested on other pairs"):
        mean_predictions([SEEDS["s42"], SEEDS["s43"].iloc[:9]], 0.5)


def test_seed_ensembles_join_configurations_that_differ_only_in_the_seed():
    configs = [summary(f"lora.r=8, train.seed={seed}", [f"s{seed}"], 0.8, **{"train.seed": seed, "eval.threshold": 0.5})
               for seed in (43, 42, 44)]
    other = summary("lora.r=2, train.seed=42", ["a0"], 0.8, **{"lora.r": 2, "train.seed": 42, "eval.threshold": 0.5})
    [ensemble] = seed_ensembles(configs + [other], SEEDS.__getitem__)
    assert ensemble["configuration"] == "lora.r=8, ensemble of train.seed=42+43+44"
    assert ensemble["params"]["train.seed"] == "42+43+44"
    assert ensemble["lora"]["accuracy"] == 1.0 and ensemble["lora"]["n"] == 10
    reference = configs[1]  # seed 42
    reports = {"s42": 60.0, "s43": 120.0, "s44": 180.0}
    rows = compare([reference, ensemble], reference, SEEDS.__getitem__,
                   lambda rev, path: {"trainable_params": 400, "wall_seconds": reports[rev]}, {}.get)
    top = rows[0]
    assert top["configuration"] == ensemble["configuration"] and top["minutes_per_fold"] == 6.0  # all three trainings
    assert top["change"] == "ensemble of train.seed=42+43+44"
    assert (top["this_only"], top["other_only"]) == (2, 0)  # seed 42 alone missed pairs 0 and 1


def test_validation_ensembles_pool_the_seeds_that_ran_on_every_fold():
    # fold 0: seeds 42, 43, 44 (SEEDS); fold 1: seeds 42 and 43 only, both right on every pair.
    files = {**SEEDS, "t42": with_probs([0.9, 0.1] * 5), "t43": with_probs([0.7, 0.3] * 5), "lone": with_probs([0.5] * 10)}
    runs = [run_entry(rev, fold, seed, hour) for hour, (rev, fold, seed) in enumerate(
        [("s42", 0, 42), ("s43", 0, 43), ("s44", 0, 44), ("t42", 1, 42), ("t43", 1, 43)])]
    runs.append(run_entry("lone", 0, 42, 9, r=2))  # a configuration with one seed: no ensemble
    runs.append(run_entry("older-code", 1, 43, 8))  # the newest run of fold 1, seed 43, without the file

    def read(rev: str) -> pd.DataFrame:
        if rev == "older-code":
            raise PipelineError("run older-code has no results/lora/validation_predictions.csv")
        return files[rev]

    exp_show = [{"rev": "abc", "name": "main", "data": {}, "experiments": [{"revs": [r], "executor": None} for r in runs]}]
    [row] = validation_ensembles(exp_show, read)
    assert (row["configuration"], row["seeds"], row["folds"], row["n"]) == ("params.yaml", [42, 43], [0, 1], 20)
    # fold 0 with seeds 42 and 43: pair 0 0.5 (right), pair 1 0.4 (right), pairs 2, 3 0.675, 0.325 (right): all 10.
    assert row["accuracy"] == 1.0 and row["each_seed"] == [0.9, 0.9]
    assert (row["vs_first_seed"]["this_only"], row["vs_first_seed"]["other_only"]) == (2, 0)
    assert "ensemble of train.seed=42+43: validation accuracy 1.0000" in ensemble_line(row)


def run_entry(rev: str, fold: int, seed: int, hour: int, r: int | None = None) -> dict:
    """An experiment in `dvc exp show --json`'s shape; r defaults to the workspace's (which an
    experiment may have changed), so that the run's configuration is labelled "params.yaml"."""
    r = todays_params()["lora.r"] if r is None else r
    params = {"data": {"fold": fold}, "lora": {"r": r}, "train": {"seed": seed}, "eval": {"threshold": todays_params()["eval.threshold"]}}
    return {"rev": rev, "name": rev, "data": {"timestamp": f"2026-11-30T{hour:02d}:00:00",
                                              "params": {str(paths.PARAMS_FILE): {"data": params}}}}


def test_search_verdicts_are_paired_verdict_by_verdict():
    """The verdicts of search's method, two per query, paired like recall@1: 3 of 4 right against 2."""
    verdicts = {"x0": pd.Series([True, True, True, False], index=["a (found)", "b (found)", "a (no_match)", "b (no_match)"]),
                "r0": pd.Series([True, False, False, True], index=["a (found)", "b (found)", "a (no_match)", "b (no_match)"])}
    result = paired_search(["x0"], ["r0"], verdicts.get, "verdict_accuracy")
    assert result["verdict_accuracy"] == 0.75 and result["vs_reference_verdict_accuracy_diff"] == pytest.approx(0.25)
    assert result["vs_reference_verdict_accuracy_mcnemar_p"] == paired_counts(2, 1, 4)["mcnemar_p"]
    row = {"reference": False, **result}
    assert search_cells(row) == "0.7500 [0.301, 0.954] | +25.0 points, p 1.000"


def test_search_recall_at_1_is_paired_query_by_query():
    """Fold 0: ours first on queries a, b; the reference on b, c (other row order). Fold 1: ours on d,
    the reference on none. So 3 of 5 hits against 2, discordant 2 (a, d) and 1 (c)."""
    hits = {"x0": pd.Series([True, True, False], index=["a", "b", "c"]),
            "r0": pd.Series([True, True, False], index=["c", "b", "a"]),
            "x1": pd.Series([True, False], index=["d", "e"]), "r1": pd.Series([False, False], index=["d", "e"])}
    result = paired_search(["x0", "x1"], ["r0", "r1"], hits.get)
    assert result["recall_at_1"] == 0.6 and (result["recall_at_1_ci_low"], result["recall_at_1_ci_high"]) == proportion_ci(3, 5)
    assert result["vs_reference_recall_at_1_diff"] == pytest.approx(0.2)
    assert result["vs_reference_recall_at_1_mcnemar_p"] == paired_counts(2, 1, 5)["mcnemar_p"]
    assert paired_search(["x0", "gone"], ["r0", "r1"], hits.get) == {}  # a run that stopped before retrieval
    with pytest.raises(PipelineError, match="searches ran on other queries"):
        paired_search(["x0"], ["z0"], {**hits, "z0": pd.Series([True], index=["z"])}.get)
