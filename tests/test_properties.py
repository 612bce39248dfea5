"""Property-based tests (hypothesis) of the row validator and the splitter.

read_pairs: on generated CSVs the valid rows are kept in order, every invalid one is counted
under its reason, kept + dropped = rows read; on arbitrary bytes or CSV-ish text the only
exception is PipelineError. split_pairs: every row lands in exactly one split, grouped splits
never share a question_1, the same seed gives the same split, and sizes follow the ratios.
"""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stages.data import COLUMNS, read_pairs, split_pairs
from stages.errors import PipelineError
from stages.params import DataParams

SETTINGS = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# A small pool so duplicates, blanks and look-alikes come up often; includes what pandas
# likes to turn into NaN, CSV-special characters, and non-ASCII text.
QUESTIONS = ["What is a cold?", "Is flu contagious?", "  What is a cold?  ", "", "   ", "\t",
             "NaN", "null", "N/A", "a, b and c?", 'He said "stop"', "line one\nline two", "r\rn",
             "Fièvre?", "頭痛", "label", "0", "#comment?"]
LABELS = ["0", "1", " 1", "0 ", "2", "-1", "1.0", "yes", "", "label", "NaN", "01"]


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    return tmp_path_factory.mktemp("properties") / "mqp.csv"


def write_rows(path, rows) -> None:
    # The default (excel) dialect: \r\n line ends; with lineterminator="\n", Python 3.11's
    # writer would leave a field holding a bare \r unquoted and so write a broken CSV.
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def expected(rows):
    """The documented rules, applied row by row: (kept rows, drops per reason)."""
    kept, drops, seen = [], {}, set()

    def drop(reason):
        drops[reason] = drops.get(reason, 0) + 1

    for i, row in enumerate(rows):
        dr_id, q1, q2, label = (str(value).strip() for value in row)
        if i == 0 and label == "label":
            drop("header row")
        elif label not in ("0", "1"):
            drop("label not 0 or 1")
        elif not q1 or not q2:
            drop("empty question")
        elif (q1, q2) in seen:
            drop("duplicate pair")
        else:
            seen.add((q1, q2))
            kept.append((dr_id, q1, q2, int(label)))
    return kept, drops


rows_strategy = st.lists(
    st.tuples(st.integers(0, 5).map(str), st.sampled_from(QUESTIONS), st.sampled_from(QUESTIONS), st.sampled_from(LABELS)),
    min_size=1, max_size=40,
)


@SETTINGS
@given(rows=rows_strategy, header=st.booleans())
@example(rows=[("0", "a", "b", "1")], header=True)
def test_valid_rows_kept_invalid_counted(csv_path, rows, header):
    rows = [tuple(COLUMNS), *rows] if header else rows
    write_rows(csv_path, rows)
    kept, drops = expected(rows)
    if not kept:
        with pytest.raises(PipelineError, match="has no valid rows"):
            read_pairs(csv_path)
        return
    table, got_drops = read_pairs(csv_path)
    assert got_drops == drops
    assert len(table) + sum(got_drops.values()) == len(rows)
    assert list(table.itertuples(index=False, name=None)) == kept
    assert list(table.columns) == COLUMNS and table["label"].dtype.kind == "i"


def check_result(path) -> None:
    """Anything goes in; out comes a clean table with consistent counts, or a PipelineError."""
    try:
        table, drops = read_pairs(path)
    except PipelineError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert not table.empty and list(table.columns) == COLUMNS
    assert set(table["label"]) <= {0, 1}
    assert table["question_1"].ne("").all() and table["question_2"].ne("").all()
    assert not table.duplicated(["question_1", "question_2"]).any()
    assert all(n > 0 for n in drops.values())
    # kept + dropped = the records the csv module reads (blank lines aside)
    records = [r for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")) if "".join(r).strip()]
    assert len(table) + sum(drops.values()) == len(records)


@SETTINGS
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(csv_path, data):
    csv_path.write_bytes(data)
    check_result(csv_path)


CSVISH = st.lists(st.sampled_from(list(',"\n\r \t01abé\x00') + ["label", "1\n", '0,"x",y,1\n']), max_size=80).map("".join)


@SETTINGS
@given(text=CSVISH)
@example(text='0,a,b,1\n0,"a,b,1')       # unclosed quote at the end
@example(text="0,a,b,1\n0,a")             # cut mid-row
@example(text='"a"b,c,d,1\n')             # text after a closing quote
def test_csv_like_text_never_crashes(csv_path, text):
    csv_path.write_text(text, encoding="utf-8")
    check_result(csv_path)


# --- split_pairs --------------------------------------------------------------------------

RATIOS = [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.7, 0.15, 0.15), (0.5, 0.3, 0.2), (0.34, 0.33, 0.33)]


@st.composite
def tables(draw):
    """MQP-like pairs: each question_1 with 1-3 rewrites; row ids make every row traceable."""
    sizes = draw(st.lists(st.integers(1, 3), min_size=3, max_size=120))
    rows = []
    for group, size in enumerate(sizes):
        for k in range(size):
            rows.append({"dr_id": str(group % 7), "question_1": f"q{group}", "question_2": f"row {len(rows)}",
                         "label": draw(st.integers(0, 1))})
    return pd.DataFrame(rows, columns=COLUMNS)


def params_of(split, ratios, seed) -> DataParams:
    train, validation, test = ratios
    return DataParams(url="http://127.0.0.1:9/x.csv", split=split, train_size=train, validation_size=validation,
                      test_size=test, seed=seed)


@SETTINGS
@given(table=tables(), split=st.sampled_from(["grouped", "random"]), ratios=st.sampled_from(RATIOS),
       seed=st.integers(0, 2**32 - 1))
def test_split_properties(table, split, ratios, seed):
    params = params_of(split, ratios, seed)
    try:
        splits = split_pairs(table, params)
    except PipelineError as error:
        assert "split is empty" in str(error)
        return
    assert list(splits) == ["train", "validation", "test"]
    # every row in exactly one split, unchanged
    ids = pd.concat(splits.values())["question_2"]
    assert sorted(ids) == sorted(table["question_2"]) and not ids.duplicated().any()
    joined = pd.concat(splits.values()).set_index("question_2").sort_index()
    pd.testing.assert_frame_equal(joined, table.set_index("question_2").sort_index())
    assert all(len(part) > 0 for part in splits.values())
    # the same seed gives the same split
    again = split_pairs(table, params)
    for name in splits:
        pd.testing.assert_frame_equal(splits[name], again[name])
    if split == "grouped":
        questions = [set(part["question_1"]) for part in splits.values()]
        assert not (questions[0] & questions[1] or questions[0] & questions[2] or questions[1] & questions[2])
        # sizes follow the ratios in question_1 groups (rounding: at most one group off)
        n_groups = table["question_1"].nunique()
        for q, ratio in zip(questions, ratios):
            assert abs(len(q) - ratio * n_groups) <= 1
    else:
        # sklearn rounds the held-out part up: at most a row or two off
        for part, ratio in zip(splits.values(), ratios):
            assert abs(len(part) - ratio * len(table)) <= 2

