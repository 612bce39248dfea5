"""Bad data and bad params: one clear error line, or a counted drop; never a traceback.

Unit tests of stages.data.read_pairs/fetch_raw for each kind of bad file, then the same
problems end to end through `python -m stages.prepare` (and `stages.finetune` for a bad
lora.target_modules) in a scratch project. docs/failure-modes.md lists what the user sees.
"""

from __future__ import annotations

import csv
import random
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_project, read_json, run, write_pairs_csv
from stages.data import COLUMNS, fetch_raw, read_pairs
from stages.errors import PipelineError
from stages.params import DataParams

UNREACHABLE = "http://127.0.0.1:9/x.csv"  # the discard port: connection refused at once


def data_params(**changes) -> DataParams:
    return DataParams(**{"url": UNREACHABLE, "sha256": None, **changes})


def good_rows(n_questions: int = 6) -> list[list]:
    rows = []
    for i in range(n_questions):
        rows.append([i, f"What helps with cough number {i}?", f"Which syrup eases cough {i}?", 1])
        rows.append([i, f"What helps with cough number {i}?", f"Is rash {i} contagious?", 0])
    return rows


def csv_bytes(rows: list[list]) -> bytes:
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def write(tmp_path: Path, data: bytes, name: str = "mqp.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(PipelineError) as error:
        read_pairs(path)
    message = str(error.value)
    assert "\n" not in message, message
    return message


# --- missing file, checksum ---------------------------------------------------------------


def test_missing_file_and_unreachable_url(tmp_path):
    raw = tmp_path / "data" / "raw" / "mqp.csv"
    with pytest.raises(PipelineError) as error:
        fetch_raw(data_params(), raw)
    message = str(error.value)
    assert message.startswith(f"could not download {UNREACHABLE} (")
    assert "offline? place the MQP CSV at data/raw/mqp.csv" in message
    assert not raw.exists() and not raw.with_name("mqp.csv.part").exists()


def test_wrong_checksum_names_both_hashes(tmp_path):
    raw = write(tmp_path, csv_bytes(good_rows()))
    with pytest.raises(PipelineError, match=r"^checksum mismatch for .*mqp\.csv: sha256 [0-9a-f]{64}, "
                                            r"params\.yaml data\.sha256 expects f{64}; replace the file"):
        fetch_raw(data_params(sha256="f" * 64), raw)


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
    table, drops = read_pairs(write(tmp_path, csv_bytes(rows)))
    assert len(table) + sum(drops.values()) == len(rows)  # every row read is kept or counted
    assert list(table.columns) == COLUMNS and set(table["label"]) <= {0, 1}
    return table, drops


def test_header_row_is_a_counted_drop(tmp_path):
    table, drops = kept_and_dropped(tmp_path, [COLUMNS, *good_rows()])
    assert drops == {"header row": 1} and len(table) == 12


def test_header_after_utf8_bom(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + csv_bytes([COLUMNS, *good_rows()]))
    table, drops = read_pairs(path)
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
    dupes = [[50, rows[0][1], rows[0][2], 1], [51, f"  {rows[1][1]} ", rows[1][2], 1]]  # second one: other label
    table, drops = kept_and_dropped(tmp_path, [*rows, *dupes])
    assert drops == {"duplicate pair": 2} and len(table) == 12
    assert table.loc[1, "label"] == 0 and table.loc[1, "dr_id"] == "0"  # the first occurrence stays


def test_drop_reasons_are_counted_separately(tmp_path):
    rows = [COLUMNS, *good_rows(), [1, "x?", "y?", 3], [1, "", "y?", 1], good_rows()[0]]
    table, drops = kept_and_dropped(tmp_path, rows)
    assert drops == {"header row": 1, "label not 0 or 1": 1, "empty question": 1, "duplicate pair": 1}


def test_crlf_line_endings_and_quoted_newlines(tmp_path):
    rows = good_rows()
    rows[0][2] = "Two lines:\nstill one question?"
    data = csv_bytes(rows).replace(b"\n", b"\r\n")
    table, drops = read_pairs(write(tmp_path, data))
    assert drops == {} and len(table) == 12 and table.loc[0, "question_2"] == "Two lines:\r\nstill one question?"


# --- end to end: python -m stages.prepare / stages.finetune -------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_bert):
    """A scratch project whose prepare already succeeded once (to check failures keep its outputs)."""
    project = make_project(tmp_path_factory.mktemp("bad-input") / "project", tiny_bert)
    run([sys.executable, "-m", "stages.prepare"], cwd=project)
    return project


@pytest.fixture
def scratch(project):
    """Give each test the good CSV and params back, and a snapshot of prepare's outputs."""
    params = (project / "params.yaml").read_text()
    raw = project / "data" / "raw" / "mqp.csv"
    good = raw.read_bytes()
    yield project
    (project / "params.yaml").write_text(params)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(good)


def snapshot(project: Path) -> dict[str, bytes]:
    files = [project / "metrics" / "data.json", *sorted((project / "data" / "prepared").glob("*"))]
    return {str(path.relative_to(project)): path.read_bytes() for path in files}


def set_params(project: Path, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for key, value in values.items():
        group, name = key.split("__")
        params[group][name] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def one_error_line(result, stage: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{stage}: error: ")
    return lines[0]


def prepare(project: Path):
    return run([sys.executable, "-m", "stages.prepare"], cwd=project, check=False)


def test_prepare_missing_file_offline(scratch):
    (scratch / "data" / "raw" / "mqp.csv").unlink()
    set_params(scratch, data__url=UNREACHABLE)
    before = snapshot(scratch)
    line = one_error_line(prepare(scratch), "prepare")
    assert line.startswith(f"prepare: error: could not download {UNREACHABLE} (")
    assert line.endswith("offline? place the MQP CSV at data/raw/mqp.csv (on these machines: mkdir -p data/raw "
                         "&& cp ../shared/data/mqp.csv data/raw/mqp.csv)")
    assert snapshot(scratch) == before  # the last good splits and metrics are untouched


def test_prepare_wrong_checksum(scratch):
    set_params(scratch, data__sha256="0" * 64)
    line = one_error_line(prepare(scratch), "prepare")
    assert re.fullmatch(r"prepare: error: checksum mismatch for data/raw/mqp\.csv: sha256 [0-9a-f]{64}, params\.yaml "
                        r"data\.sha256 expects 0{64}; replace the file with the right one, or set data\.sha256 to "
                        r"the new value \(or null\) if you changed the data on purpose", line), line


@pytest.mark.parametrize("case, data, expected", [
    ("truncated", csv_bytes(good_rows())[:-40],
     "prepare: error: data/raw/mqp.csv line 12 has 2 fields, expected 4 (dr_id, question_1, question_2, label); "
     "the file ends mid-row, so it looks truncated: download or copy it again"),
    ("not utf-8", csv_bytes(good_rows()) + b"9,Fi\xe8vre?,Fever?,1\n",
     "prepare: error: data/raw/mqp.csv is not UTF-8 text (invalid byte 0xe8 on line 13); re-save it as UTF-8"),
    ("empty", b"", "prepare: error: data/raw/mqp.csv is empty"),
    ("extra column", csv_bytes([[*row, "x"] for row in good_rows()]),
     "prepare: error: data/raw/mqp.csv has 5 columns, expected 4 without a header: dr_id, question_1, question_2, label"),
])
def test_prepare_bad_file_is_one_line_and_keeps_outputs(scratch, case, data, expected):
    (scratch / "data" / "raw" / "mqp.csv").write_bytes(data)
    before = snapshot(scratch)
    assert one_error_line(prepare(scratch), "prepare") == expected
    assert snapshot(scratch) == before
    assert not list((scratch / ".tmp").glob("prepared.*"))  # no scratch folder left behind


def test_prepare_reports_and_counts_drops(scratch):
    raw = scratch / "data" / "raw" / "mqp.csv"
    with open(raw, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    extra = [[0, "Odd?", "Label?", "2"], [0, "", "Empty?", "1"], rows[0], rows[1]]
    raw.write_bytes(csv_bytes([COLUMNS, *rows, *extra]))
    result = prepare(scratch)
    assert result.returncode == 0, result.stderr
    summary = [line for line in result.stdout.splitlines() if line.startswith("prepare: ")]
    assert summary == [f"prepare: {len(rows)} valid pairs (grouped split): train 76, validation 10, test 10; "
                       "dropped: 1 header row, 1 label not 0 or 1, 1 empty question, 2 duplicate pair"]
    data = read_json(scratch / "metrics" / "data.json")
    assert data["rows_dropped"] == {"header row": 1, "label not 0 or 1": 1, "empty question": 1, "duplicate pair": 2}
    assert data["rows_read"] == len(rows) + 5 == 1 + len(rows) + len(extra)
    assert sum(data[split]["n"] for split in ("train", "validation", "test")) == len(rows)


def test_finetune_unknown_target_module(scratch):
    set_params(scratch, lora__target_modules=["nope"])
    result = run([sys.executable, "-m", "stages.finetune"], cwd=scratch, check=False)
    line = one_error_line(result, "finetune")
    assert line == ("finetune: error: lora.target_modules: bert model has no module named 'nope'; "
                    "its linear layers are: classifier, dense, key, query, value")
    assert not (scratch / "models" / "adapter").exists() and not (scratch / "metrics" / "train.json").exists()
