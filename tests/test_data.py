"""mqp.data: getting the raw CSV (download, a file placed by hand, the checksum) and reading it:
read_pairs turns structural problems into one error line and drops bad rows with a count per
reason. Example files for each kind of bad input, then hypothesis properties on generated ones.
(The prepare stage's end-to-end behaviour on the same problems: test_prepare.py.)"""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import io
import random
import re
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers import MQP_SHA256, SHARED_CSV, UNREACHABLE_URL, csv_bytes, data_params, good_rows, repo_params, write_pairs_csv
import mqp.data as data_module
from mqp.data import COLUMNS, checked_raw, drop_counts, fetch_raw, read_pairs, sha256_of
from mqp.errors import PipelineError
from mqp.paths import RAW_CSV


def write(tmp_path: Path, data: bytes, name: str = "mqp.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(PipelineError) as error:
        read_counted(path)
    message = str(error.value)
    assert "\n" not in message, message
    return message


# --- getting the file -----------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def read_counted(path):
    """read_pairs, its dropped rows counted per reason."""
    table, rejected = read_pairs(path)
    return table, drop_counts(rejected)


def test_download_from_local_http_server(tmp_path, http_server, monkeypatch):
    root, base_url = http_server
    source = write_pairs_csv(root / "mqp.csv")
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    raw = tmp_path / RAW_CSV
    monkeypatch.setattr(data_module, "MQP_URL", f"{base_url}/mqp.csv")
    assert fetch_raw(raw) is True
    assert raw.read_bytes() == source.read_bytes() and checked_raw(data_params(sha256=expected), raw) == raw
    assert not raw.with_name(raw.name + ".part").exists()


def test_file_placed_by_hand_is_used_without_network(tmp_path, monkeypatch):
    raw = write_pairs_csv(tmp_path / "mqp.csv")
    monkeypatch.setattr(data_module, "MQP_URL", UNREACHABLE_URL)
    before = raw.read_bytes()
    assert fetch_raw(raw) is False and raw.read_bytes() == before  # the URL is unreachable: never contacted


def test_rejected_rows_carry_their_line_and_reason(tmp_path):
    """Line numbers are the raw file's, also after a header and a question spanning two lines."""
    rows = [COLUMNS, *good_rows(2)[:2], [7, "Two lines:\nstill one?", "Yes", "1"], [8, "Odd?", "Label?", "2"],
            [9, "", "Empty?", "0"], good_rows(2)[0]]
    table, rejected = read_pairs(write(tmp_path, csv_bytes(rows)))
    assert list(rejected.columns) == ["line", "reason", *COLUMNS]
    assert rejected[["line", "reason"]].values.tolist() == [
        [1, "header row"], [6, "label not 0 or 1"], [7, "empty question"], [8, "duplicate pair"]]
    assert rejected.loc[1, "question_1"] == "Odd?" and rejected.loc[1, "label"] == "2"
    assert len(table) == 3


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared MQP copy not present")
def test_shared_mqp_passes_the_pinned_checksum():
    assert data_params(sha256=MQP_SHA256).sha256 == MQP_SHA256 == sha256_of(SHARED_CSV)
    table, drops = read_counted(checked_raw(data_params(sha256=MQP_SHA256), SHARED_CSV))
    assert len(table) == 3048 and drops == {}  # no duplicate pair in either order, no conflicting labels
    assert table["question_1"].value_counts().eq(2).all()


def test_params_yaml_pins_the_mqp_checksum():
    assert repo_params().data.sha256 == MQP_SHA256


# --- structural problems: one error -------------------------------------------------------


def test_empty_file(tmp_path):
    assert error_of(write(tmp_path, b"")).endswith("mqp.csv is empty")


def test_blank_lines_only_is_empty(tmp_path):
    assert error_of(write(tmp_path, b"\n\r\n  \n")).endswith("mqp.csv is empty")


def test_truncated_mid_row(tmp_path):
    data = csv_bytes(good_rows())
    cut = data[: data.index(b"Is rash 3")]  # line 8 stops inside question_2
    message = error_of(write(tmp_path, cut))
    assert message.endswith("mqp.csv line 8 has 3 fields, expected 4 (dr_id, question_1, question_2, label); "
                            "the file ends mid-row, so it looks truncated: download or copy it again")


def test_truncated_inside_quoted_field(tmp_path):
    rows = good_rows()
    rows[5][2] = "Is it contagious, or not?"  # a comma: csv quotes this field
    data = csv_bytes(rows)
    cut = data[: data.index(b"contagious, or")]
    message = error_of(write(tmp_path, cut))
    assert message.endswith("mqp.csv is not a valid CSV (line 6: a quoted field is never closed; if the file was "
                            "cut off, download or copy it again); expected rows of dr_id, question_1, question_2, label")


def test_text_after_closing_quote(tmp_path):
    data = csv_bytes(good_rows()) + b'9,"Is it" bad?,Is it?,1\n'
    message = error_of(write(tmp_path, data))
    assert message.endswith("""mqp.csv is not a valid CSV (line 13: ',' expected after '"'); """
                            "expected rows of dr_id, question_1, question_2, label")


def test_binary_junk_is_not_utf8(tmp_path):
    message = error_of(write(tmp_path, random.Random(0).randbytes(4000)))
    assert re.search(r"mqp\.csv is not UTF-8 text \(invalid byte 0x[0-9a-f]{2} on line 1\); re-save it as UTF-8$", message)


def test_garbled_but_utf8_text(tmp_path):
    junk = ("\x00\x01\u2603;|\t" * 40 + "\n") * 5
    message = error_of(write(tmp_path, junk.encode()))
    assert message.endswith("mqp.csv has 1 columns, expected 4 without a header: dr_id, question_1, question_2, label")


def test_zip_file_instead_of_csv(tmp_path):
    message = error_of(write(tmp_path, b"PK\x03\x04" + bytes(60)))
    assert "expected 4 without a header" in message or "not UTF-8" in message


def test_missing_column(tmp_path):
    rows = [row[1:] for row in good_rows()]  # no dr_id
    assert error_of(write(tmp_path, csv_bytes(rows))).endswith(
        "mqp.csv has 3 columns, expected 4 without a header: dr_id, question_1, question_2, label")


def test_extra_column(tmp_path):
    rows = [[*row, "extra"] for row in good_rows()]
    assert error_of(write(tmp_path, csv_bytes(rows))).endswith(
        "mqp.csv has 5 columns, expected 4 without a header: dr_id, question_1, question_2, label")


def test_one_row_with_an_extra_field(tmp_path):
    rows = good_rows()
    rows[6] = [*rows[6], "stray"]
    message = error_of(write(tmp_path, csv_bytes(rows)))
    assert message.endswith("mqp.csv line 7 has 5 fields, expected 4 (dr_id, question_1, question_2, label)")


def test_one_row_with_a_missing_field(tmp_path):
    rows = good_rows()
    rows[6] = rows[6][:3]  # no label: pandas would pad it with "" and drop it as a bad label
    assert error_of(write(tmp_path, csv_bytes(rows))).endswith(
        "mqp.csv line 7 has 3 fields, expected 4 (dr_id, question_1, question_2, label)")


def test_non_utf8_bytes_name_the_line(tmp_path):
    data = csv_bytes(good_rows()).splitlines(keepends=True)
    data[6] = b'6,"Caf\xe9 au lait and reflux?",Is coffee bad for reflux?,1\n'  # Latin-1 e-acute
    message = error_of(write(tmp_path, b"".join(data)))
    assert message.endswith("mqp.csv is not UTF-8 text (invalid byte 0xe9 on line 7); re-save it as UTF-8")


def test_only_a_header_has_no_valid_rows(tmp_path):
    message = error_of(write(tmp_path, csv_bytes([COLUMNS])))
    assert message.endswith("mqp.csv has no valid rows (dropped: 1 header row)")


def test_all_rows_invalid(tmp_path):
    rows = [[0, "a?", "b?", 2], [1, "", "c?", 1], [2, "a?", "b?", "yes"]]
    message = error_of(write(tmp_path, csv_bytes(rows)))
    assert message.endswith("mqp.csv has no valid rows (dropped: 2 label not 0 or 1, 1 empty question)")


# --- row-level problems: counted drops ----------------------------------------------------


def kept_and_dropped(tmp_path: Path, rows: list[list]) -> tuple:
    table, drops = read_counted(write(tmp_path, csv_bytes(rows)))
    assert len(table) + sum(drops.values()) == len(rows)  # every row read is kept or counted
    assert list(table.columns) == COLUMNS and set(table["label"]) <= {0, 1}
    return table, drops


def test_header_row_is_a_counted_drop(tmp_path):
    table, drops = kept_and_dropped(tmp_path, [COLUMNS, *good_rows()])
    assert drops == {"header row": 1} and len(table) == 12


def test_header_after_utf8_bom(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + csv_bytes([COLUMNS, *good_rows()]))
    table, drops = read_counted(path)
    assert drops == {"header row": 1} and len(table) == 12


def test_labels_other_than_0_1_are_counted_drops(tmp_path):
    bad = ["2", "-1", "yes", "1.0", "", "label", "NaN"]
    rows = [*good_rows(), *([100 + i, f"Odd label {i}?", "Other?", label] for i, label in enumerate(bad))]
    table, drops = kept_and_dropped(tmp_path, rows)
    assert drops == {"label not 0 or 1": len(bad)}
    assert not table["question_1"].str.startswith("Odd label").any()


def test_label_with_spaces_is_accepted(tmp_path):
    table, drops = kept_and_dropped(tmp_path, [*good_rows(), [9, "Spaced label?", "Yes?", " 1 "]])
    assert drops == {} and table["label"].iloc[-1] == 1


def test_empty_questions_are_counted_drops(tmp_path):
    rows = [*good_rows(), [7, "", "Is this empty?", 1], [8, "Is that empty?", "   ", 0], [9, " \t ", "", 1]]
    table, drops = kept_and_dropped(tmp_path, rows)
    assert drops == {"empty question": 3} and len(table) == 12


def test_duplicate_pairs_are_counted_drops_first_kept(tmp_path):
    rows = good_rows()
    dupes = [[50, rows[0][1], rows[0][2], 1], [51, f"  {rows[1][1]} ", rows[1][2], 0]]  # the second with spaces
    table, drops = kept_and_dropped(tmp_path, [*rows, *dupes])
    assert drops == {"duplicate pair": 2} and len(table) == 12
    assert list(table["dr_id"]) == [str(row[0]) for row in rows]  # the first occurrences stay


def test_reversed_pair_is_a_duplicate(tmp_path):
    """Similarity is symmetric: (q2, q1) after (q1, q2) is the same pair."""
    rows = good_rows()
    reversed_ = [[60, rows[0][2], rows[0][1], 1], [61, rows[3][2], f" {rows[3][1]}", 0]]
    table, drops = kept_and_dropped(tmp_path, [*rows, *reversed_])
    assert drops == {"duplicate pair": 2} and len(table) == 12
    assert list(table["dr_id"]) == [str(row[0]) for row in rows]  # the first order stays


def test_pair_with_conflicting_labels_loses_every_row(tmp_path):
    """A pair labelled both similar and not: every copy goes, in either order, whichever came first."""
    rows = good_rows()
    conflicts = [[70, rows[0][1], rows[0][2], 0],  # same order, other label
                 [71, rows[3][2], rows[3][1], 1],  # reversed, other label
                 [72, rows[3][1], rows[3][2], 0]]  # and a third copy of that pair
    table, drops = kept_and_dropped(tmp_path, [*rows, *conflicts])
    assert drops == {"conflicting labels": 5} and len(table) == 10
    kept = set(zip(table["question_1"], table["question_2"]))
    assert (rows[0][1], rows[0][2]) not in kept and (rows[3][1], rows[3][2]) not in kept
    # Row order cannot change which rows survive.
    again, _ = kept_and_dropped(tmp_path, [*conflicts[::-1], *rows[::-1]])
    assert set(zip(again["question_1"], again["question_2"])) == kept


def test_drop_reasons_are_counted_separately(tmp_path):
    conflict = [good_rows()[1][0], good_rows()[1][2], good_rows()[1][1], 1]  # row 1 reversed, other label
    rows = [COLUMNS, *good_rows(), [1, "x?", "y?", 3], [1, "", "y?", 1], good_rows()[0], conflict]
    table, drops = kept_and_dropped(tmp_path, rows)
    assert drops == {"header row": 1, "label not 0 or 1": 1, "empty question": 1, "conflicting labels": 2,
                     "duplicate pair": 1}


def test_crlf_line_endings_and_quoted_newlines(tmp_path):
    rows = good_rows()
    rows[0][2] = "Two lines:\nstill one question?"
    data = csv_bytes(rows).replace(b"\n", b"\r\n")
    table, drops = read_counted(write(tmp_path, data))
    assert drops == {} and len(table) == 12 and table.loc[0, "question_2"] == "Two lines:\r\nstill one question?"


# --- properties (hypothesis) ------------------------------------------------------------------

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

    stripped = [tuple(str(value).strip() for value in row) for row in rows]
    # The labels each pair (either order) has among rows that pass the checks before it.
    labels: dict[frozenset, set] = {}
    for i, (_, q1, q2, label) in enumerate(stripped):
        if not (i == 0 and label == "label") and label in ("0", "1") and q1 and q2:
            labels.setdefault(frozenset((q1, q2)), set()).add(label)
    for i, (dr_id, q1, q2, label) in enumerate(stripped):
        if i == 0 and label == "label":
            drop("header row")
        elif label not in ("0", "1"):
            drop("label not 0 or 1")
        elif not q1 or not q2:
            drop("empty question")
        elif len(labels[frozenset((q1, q2))]) > 1:
            drop("conflicting labels")
        elif frozenset((q1, q2)) in seen:
            drop("duplicate pair")
        else:
            seen.add(frozenset((q1, q2)))
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
            read_counted(csv_path)
        return
    table, got_drops = read_counted(csv_path)
    assert got_drops == drops
    assert len(table) + sum(got_drops.values()) == len(rows)
    assert list(table.itertuples(index=False, name=None)) == kept
    assert list(table.columns) == COLUMNS and table["label"].dtype.kind == "i"


def check_result(path) -> None:
    """Anything goes in; out comes a clean table with consistent counts, or a PipelineError."""
    try:
        table, drops = read_counted(path)
    except PipelineError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert not table.empty and list(table.columns) == COLUMNS
    assert set(table["label"]) <= {0, 1}
    assert table["question_1"].ne("").all() and table["question_2"].ne("").all()
    pairs = [frozenset(pair) for pair in zip(table["question_1"], table["question_2"])]
    assert len(set(pairs)) == len(pairs)  # no pair twice, in either order
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
