"""The prepare stage (`python -m stages.prepare`) end to end in a scratch folder: the summary line,
DATA_REPORT, DATA_METRICS and the rejected rows; on bad input (a missing file, offline or not, a wrong checksum, a broken CSV) one
error line, with the last good outputs left as they were; bad rows dropped and counted."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from helpers import REPO, UNREACHABLE_URL, csv_bytes, good_rows, make_workdir, one_error_line, read_json, set_params, stage
import mqp.data as data_module
from mqp.data import COLUMNS, REJECTED_COLUMNS, sha256_of
from mqp.paths import DATA_METRICS, DATA_REPORT, PARAMS_FILE, PREPARED_DIR, RAW_CSV, REJECTED_CSV, SPLITS, TMP_DIR, split_csv


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project whose prepare already succeeded once (to check failures keep its outputs)."""
    project = make_workdir(tmp_path_factory.mktemp("prepare") / "project")
    stage("prepare", project, env={"PYTHONPATH": str(REPO)})
    return project


@pytest.fixture
def scratch(project, in_project):
    """The project as the working directory (for prepare in this process); each test gets the good
    CSV and params back afterwards."""
    in_project(project)
    params = (project / PARAMS_FILE).read_text()
    raw = project / RAW_CSV
    good = raw.read_bytes()
    yield project
    (project / PARAMS_FILE).write_text(params)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(good)


def snapshot(project: Path) -> dict[str, bytes]:
    files = [project / DATA_METRICS, project / DATA_REPORT, *sorted((project / PREPARED_DIR).glob("*"))]
    return {str(path.relative_to(project)): path.read_bytes() for path in files}


def prepare(project: Path, capsys) -> tuple[int, str, str]:
    """prepare's main in this process (the project is the working directory): exit code, stdout,
    stderr. Quicker than a new Python; test_prepare_in_its_own_process checks the real command."""
    from stages import prepare as stage_module

    capsys.readouterr()
    try:
        stage_module.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(result: tuple[int, str, str], name: str = "prepare") -> str:
    code, out, err = result
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"{name}: error: "), (code, out, err)
    return err.rstrip("\n")


def test_prepare_in_its_own_process(scratch):
    """The real command: the summary line; on an error one line, no traceback."""
    result = stage("prepare", scratch, check=False, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "prepare: 96 valid pairs (kfold split fold 0 of 5): train 66, validation 10, test 20; dropped: none")
    set_params(scratch, {"data.sha256": "0" * 64})
    assert one_error_line(stage("prepare", scratch, check=False, env={"PYTHONPATH": str(REPO)}), "prepare").startswith(
        "prepare: error: checksum mismatch for ")


def test_prepare_writes_the_splits_and_their_summary(scratch, capsys):
    code, out, err = prepare(scratch, capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        "prepare: 96 valid pairs (kfold split fold 0 of 5): train 66, validation 10, test 20; dropped: none")
    data = read_json(scratch / DATA_REPORT)
    for name in SPLITS:
        labels = [int(row["label"]) for row in csv.DictReader(open(scratch / split_csv(name), encoding="utf-8"))]
        assert data[name] == {"n": len(labels), "similar": sum(labels),
                              "similar_share": round(sum(labels) / len(labels), 4)}
    assert data["rows_read"] == 96 and data["rows_dropped"] == {}


def test_fetch_missing_file_offline(scratch, capsys, monkeypatch):
    """Stage fetch downloads a missing file; offline, one line that says how to place it by hand."""
    from stages import fetch

    (scratch / RAW_CSV).unlink()
    monkeypatch.setattr(data_module, "MQP_URL", UNREACHABLE_URL)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        fetch.main()
    line = one_line((exit_.value.code, *capsys.readouterr()), "fetch")
    assert line.startswith(f"fetch: error: could not download {UNREACHABLE_URL} (")
    assert line.endswith(f"offline? place the MQP CSV there yourself: mkdir -p {RAW_CSV.parent} "
                         f"&& cp /path/to/mqp.csv {RAW_CSV}")
    assert not (scratch / RAW_CSV).exists() and not (scratch / RAW_CSV).with_name(RAW_CSV.name + ".part").exists()


def test_prepare_missing_file(scratch, capsys):
    (scratch / RAW_CSV).unlink()
    before = snapshot(scratch)
    assert one_line(prepare(scratch, capsys)) == (
        f"prepare: error: {RAW_CSV} is not there: `dvc repro` downloads MQP to it (stage fetch); place the MQP CSV "
        f"there yourself: mkdir -p {RAW_CSV.parent} && cp /path/to/mqp.csv {RAW_CSV}")
    assert snapshot(scratch) == before  # the last good splits and metrics are untouched


def test_fetch_keeps_a_file_placed_by_hand(scratch, capsys, monkeypatch):
    from stages import fetch

    before = (scratch / RAW_CSV).read_bytes()
    monkeypatch.setattr(data_module, "MQP_URL", UNREACHABLE_URL)
    capsys.readouterr()
    fetch.main()
    assert capsys.readouterr().out == fetch.KEPT + "\n"
    assert (scratch / RAW_CSV).read_bytes() == before


def test_prepare_wrong_checksum(scratch, capsys):
    set_params(scratch, {"data.sha256": "0" * 64})
    before = snapshot(scratch)
    line = one_line(prepare(scratch, capsys))
    assert re.fullmatch(rf"prepare: error: checksum mismatch for {re.escape(str(RAW_CSV))}: sha256 [0-9a-f]{{64}}, "
                        r"params\.yaml data\.sha256 expects 0{64}; replace the file with the right one, or set "
                        r"data\.sha256 to ([0-9a-f]{64}) if you changed the data on purpose", line), line
    assert line.count(sha256_of(scratch / RAW_CSV)) == 2
    assert snapshot(scratch) == before


def test_prepare_bad_params_is_one_line(scratch, capsys):
    set_params(scratch, {"data.fold": 5})
    assert one_line(prepare(scratch, capsys)) == (
        "prepare: error: invalid params.yaml: 'data': data.fold must be below data.folds (got fold 5 of 5)")


@pytest.mark.parametrize("case, data, expected", [
    ("truncated", csv_bytes(good_rows())[:-40],
     f"{RAW_CSV} line 12 has 2 fields, expected 4 (dr_id, question_1, question_2, label); "
     "the file ends mid-row, so it looks truncated: download or copy it again"),
    ("not utf-8", csv_bytes(good_rows()) + b"9,Fi\xe8vre?,Fever?,1\n",
     f"{RAW_CSV} is not UTF-8 text (invalid byte 0xe8 on line 13); re-save it as UTF-8"),
    ("empty", b"", f"{RAW_CSV} is empty"),
    ("extra column", csv_bytes([[*row, "x"] for row in good_rows()]),
     f"{RAW_CSV} has 5 columns, expected 4 without a header: dr_id, question_1, question_2, label"),
])
def test_prepare_bad_file_is_one_line_and_keeps_outputs(scratch, capsys, case, data, expected):
    (scratch / RAW_CSV).write_bytes(data)
    before = snapshot(scratch)
    assert one_line(prepare(scratch, capsys)) == f"prepare: error: {expected}"
    assert snapshot(scratch) == before
    assert not list((scratch / TMP_DIR).glob(f"{PREPARED_DIR.name}.*"))  # no scratch folder left behind


def test_prepare_reports_and_counts_drops(scratch, capsys):
    raw = scratch / RAW_CSV
    with open(raw, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    extra = [[0, "Odd?", "Label?", "2"], [0, "", "Empty?", "1"], rows[0], rows[1]]
    raw.write_bytes(csv_bytes([COLUMNS, *rows, *extra]))
    set_params(scratch, {"data.split": "grouped"})
    code, out, err = prepare(scratch, capsys)
    assert code == 0, err
    summary = [line for line in out.splitlines() if line.startswith("prepare: ")]
    assert summary == [f"prepare: {len(rows)} valid pairs (grouped split): train 76, validation 10, test 10; "
                       "dropped: 5 rows (1 header row, 1 label not 0 or 1, 1 empty question, 2 duplicate pair), "
                       f"listed in {REJECTED_CSV}"]
    data = read_json(scratch / DATA_REPORT)
    assert data["rows_dropped"] == {"header row": 1, "label not 0 or 1": 1, "empty question": 1, "duplicate pair": 2}
    assert data["rows_read"] == len(rows) + 5 == 1 + len(rows) + len(extra)
    assert sum(data[split]["n"] for split in SPLITS) == len(rows)
    assert read_json(scratch / DATA_METRICS) == {"n": len(rows), "n_dropped": 5}
    with open(scratch / REJECTED_CSV, newline="", encoding="utf-8") as f:
        rejected = list(csv.DictReader(f))
    assert list(rejected[0]) == REJECTED_COLUMNS
    first_extra = 2 + len(rows)  # the raw file's line of the first extra row (after the header)
    assert [(row["line"], row["reason"], row["question_1"]) for row in rejected] == [
        ("1", "header row", "question_1"), (str(first_extra), "label not 0 or 1", "Odd?"),
        (str(first_extra + 1), "empty question", ""), (str(first_extra + 2), "duplicate pair", rows[0][1]),
        (str(first_extra + 3), "duplicate pair", rows[1][1])]
