"""mqp.data.split_pairs (kfold, grouped, random) and mqp.splits (reading what prepare wrote).

kfold and grouped keep every question_1 in one split and depend on the rows' content and the seed
only; kfold's test folds partition the data over fold = 0 .. folds-1. Example tables first, then
hypothesis properties over generated MQP-like tables.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import SHARED_CSV, data_params, write_pairs_csv
from mqp.data import COLUMNS, read_pairs, split_pairs
from mqp.errors import PipelineError
from mqp.paths import SPLITS, split_csv
from mqp.splits import load_split, load_splits

SETTINGS = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SPLIT_KINDS = ["kfold", "grouped", "random"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    table, rejected = read_pairs(write_pairs_csv(tmp_path_factory.mktemp("pairs") / "mqp.csv", n_questions=60))
    assert rejected.empty
    return table


def questions(splits: dict) -> dict[str, set]:
    return {name: set(part["question_1"]) for name, part in splits.items()}


def shuffled(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    return table.sample(frac=1, random_state=seed).reset_index(drop=True)


def as_sets(splits: dict) -> dict[str, set]:
    return {name: set(part.itertuples(index=False, name=None)) for name, part in splits.items()}


# --- kfold ----------------------------------------------------------------------------------


def test_kfold_test_folds_cover_every_pair_exactly_once(pairs):
    folds = 5
    tests = [split_pairs(pairs, data_params(split="kfold", folds=folds, fold=fold))["test"] for fold in range(folds)]
    joined = pd.concat(tests)
    assert len(joined) == len(pairs) and not joined.duplicated(["question_1", "question_2"]).any()
    assert set(joined.itertuples(index=False, name=None)) == set(pairs.itertuples(index=False, name=None))
    # And the test questions of two folds never overlap.
    for i in range(folds):
        for j in range(i + 1, folds):
            assert not set(tests[i]["question_1"]) & set(tests[j]["question_1"])


@pytest.mark.parametrize("fold", range(5))
def test_kfold_sizes(pairs, fold):
    """60 questions (2 pairs each), 5 folds: 12 test questions; validation 10% of the questions."""
    splits = split_pairs(pairs, data_params(split="kfold", folds=5, fold=fold, validation_size=0.1))
    n_questions = {name: len(q) for name, q in questions(splits).items()}
    assert n_questions == {"train": 42, "validation": 6, "test": 12}
    assert {name: len(part) for name, part in splits.items()} == {"train": 84, "validation": 12, "test": 24}


def test_kfold_fold_sizes_differ_by_one_question_at_most(pairs):
    table = pairs[pairs["question_1"].isin(sorted(set(pairs["question_1"]))[:58])]  # 58 questions, 4 folds
    sizes = [split_pairs(table, data_params(folds=4, fold=fold))["test"]["question_1"].nunique() for fold in range(4)]
    assert sorted(sizes) == [14, 14, 15, 15]


@pytest.mark.parametrize("split", ["kfold", "grouped"])
def test_row_order_does_not_change_the_split(pairs, split):
    params = data_params(split=split, fold=2)
    first = as_sets(split_pairs(pairs, params))
    for seed in (1, 2):
        assert as_sets(split_pairs(shuffled(pairs, seed), params)) == first


# --- all kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLIT_KINDS)
def test_same_seed_same_split_other_seed_other_split(pairs, split):
    first = split_pairs(pairs, data_params(split=split, seed=7))
    again = split_pairs(pairs, data_params(split=split, seed=7))
    other = split_pairs(pairs, data_params(split=split, seed=8))
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["test"].equals(other["test"])


@pytest.mark.parametrize("split", ["grouped", "random"])
def test_grouped_and_random_sizes_follow_the_shares(pairs, split):
    splits = split_pairs(pairs, data_params(split=split, validation_size=0.1, test_size=0.2))
    assert len(splits["test"]) == pytest.approx(0.2 * len(pairs), abs=2)
    assert len(splits["validation"]) == pytest.approx(0.1 * len(pairs), abs=2)
    assert sum(len(part) for part in splits.values()) == len(pairs)  # train is the rest


def test_random_split_does_leak_questions(pairs):
    # Why the default groups by question_1: row-wise splitting shares question_1 across splits.
    splits = split_pairs(pairs, data_params(split="random"))
    assert questions(splits)["train"] & questions(splits)["test"]


@pytest.mark.parametrize("split", SPLIT_KINDS)
def test_too_few_rows_to_split(tmp_path, split):
    table, _ = read_pairs(write_pairs_csv(tmp_path / "mqp.csv", n_questions=1))
    with pytest.raises(PipelineError, match=f"split is empty: 2 valid rows are too few for data.split={split}"):
        split_pairs(table, data_params(split=split))


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared MQP copy not present")
def test_shared_mqp_split_sizes():
    table, _ = read_pairs(SHARED_CSV)
    sizes = {split: [len(part) for part in split_pairs(table, data_params(split=split)).values()]
             for split in ("kfold", "grouped")}
    # 1,524 questions, 2 pairs each: kfold's test is every 5th question (305), grouped's 10% (152);
    # validation 10% (152) of the questions; train the rest.
    assert sizes == {"kfold": [2134, 304, 610], "grouped": [2440, 304, 304]}


# --- properties -----------------------------------------------------------------------------


@st.composite
def tables(draw):
    """MQP-like pairs: each question_1 with 1-3 rewrites; question_2 makes every row traceable."""
    sizes = draw(st.lists(st.integers(1, 3), min_size=3, max_size=120))
    rows = []
    for group, size in enumerate(sizes):
        for _ in range(size):
            rows.append({"dr_id": str(group % 7), "question_1": f"q{group}", "question_2": f"row {len(rows)}",
                         "label": draw(st.integers(0, 1))})
    return pd.DataFrame(rows, columns=COLUMNS)


@SETTINGS
@given(table=tables(), split=st.sampled_from(SPLIT_KINDS), validation=st.sampled_from([0.1, 0.2, 0.3]),
       test=st.sampled_from([0.1, 0.2, 0.33]), folds=st.integers(2, 10), fold=st.integers(0, 9),
       seed=st.integers(0, 2**32 - 1))
def test_split_properties(table, split, validation, test, folds, fold, seed):
    try:
        params = data_params(split=split, validation_size=validation, test_size=test, folds=folds,
                             fold=fold % folds, seed=seed)
    except PipelineError as error:
        assert "leaving nothing to train on" in str(error)
        return
    try:
        splits = split_pairs(table, params)
    except PipelineError as error:
        assert "split is empty" in str(error)
        return
    assert list(splits) == list(SPLITS)
    # every row in exactly one split, unchanged
    joined = pd.concat(splits.values())
    assert not joined["question_2"].duplicated().any()
    pd.testing.assert_frame_equal(joined.set_index("question_2").sort_index(),
                                  table.set_index("question_2").sort_index())
    assert all(len(part) > 0 for part in splits.values())
    # the same seed gives the same split, whatever the row order
    again = split_pairs(table.iloc[::-1].reset_index(drop=True), params) if split != "random" else split_pairs(table, params)
    assert as_sets(again) == as_sets(splits)
    if split == "random":
        # sklearn rounds the held-out parts up: at most a row or two off
        assert abs(len(splits["test"]) - test * len(table)) <= 2
        assert abs(len(splits["validation"]) - validation * len(table)) <= 2
        return
    # no question_1 in two splits; sizes in question_1 groups (rounding: at most one group off)
    q = questions(splits)
    assert not (q["train"] & q["validation"] or q["train"] & q["test"] or q["validation"] & q["test"])
    n_groups = table["question_1"].nunique()
    assert len(q["validation"]) == round(validation * n_groups)
    test_share = 1 / folds if split == "kfold" else test
    assert abs(len(q["test"]) - test_share * n_groups) <= 1


# --- mqp.splits -----------------------------------------------------------------------------


def test_load_splits_reads_what_prepare_wrote(tmp_path, monkeypatch, pairs):
    monkeypatch.chdir(tmp_path)
    splits = split_pairs(pairs, data_params())
    for name, part in splits.items():
        split_csv(name).parent.mkdir(parents=True, exist_ok=True)
        part.to_csv(split_csv(name), index=False)
    loaded = load_splits()
    assert list(loaded) == list(SPLITS)
    for name in SPLITS:
        pd.testing.assert_frame_equal(loaded[name], splits[name].assign(dr_id=splits[name]["dr_id"].astype(int)))


def test_load_split_keeps_questions_that_look_like_nan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    split_csv("test").parent.mkdir(parents=True)
    pd.DataFrame({"dr_id": [1], "question_1": ["NaN"], "question_2": ["null"], "label": [1]}).to_csv(
        split_csv("test"), index=False)
    assert load_split("test").loc[0, ["question_1", "question_2"]].tolist() == ["NaN", "null"]


def test_missing_split_says_run_prepare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=f"^{split_csv('train')} not found: run `dvc repro prepare` first$"):
        load_split("train")
