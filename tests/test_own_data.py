"""Your own data, as the README's "Your own data" section says, in a fresh clone with no remote and
an empty DVC cache: a 200-row CSV with bad rows to a trained model and a prediction; then bad input
under `dvc repro`, which keeps the last good outputs of prepare."""

from __future__ import annotations

import hashlib
import json

import pytest

from helpers import command, csv_bytes, dvc, git_clone, output_files, pair_rows, read_json
from mqp import paths

pytestmark = pytest.mark.slow

BAD_ROWS = [[1, "Is this label odd?", "Is it?", "yes"], [2, "", "An empty question_1?", "1"],
            [3, "A question with no rewrite?", "", "0"]]
N_GOOD = 196  # pair_rows(98): each question_1 with a similar and a dissimilar rewrite


def own_csv() -> bytes:
    """200 rows: 196 good, 3 bad, and a repeated pair (dropped as a duplicate), no header."""
    good = pair_rows(N_GOOD // 2)
    return csv_bytes([*good[:100], *BAD_ROWS, *good[100:], good[0]])


@pytest.fixture(scope="module")
def clone(tmp_path_factory, trained_project):
    """A fresh `git clone` of a project whose commit holds an MQP-like run: dvc.lock names outputs
    that its empty cache does not have (no remote), as a clone of this repo does. Then the README's
    own-data commands: the CSV at data/raw/mqp.csv, and `dvc exp run -S data.sha256=<its sha256>`."""
    project = git_clone(trained_project[0], tmp_path_factory.mktemp("own-data") / "clone")
    assert not (project / paths.PREPARED_DIR).exists() and not (project / paths.ADAPTER_DIR).exists()
    raw = project / paths.RAW_CSV
    raw.parent.mkdir(parents=True)
    raw.write_bytes(own_csv())
    result = dvc("exp", "run", "-S", f"data.sha256={hashlib.sha256(raw.read_bytes()).hexdigest()}", cwd=project)
    return project, result.stdout + result.stderr


def test_own_csv_trains_from_a_fresh_clone(clone):
    project, out = clone
    assert all(f"Running stage '{name}'" in out for name in ("prepare", "finetune", "evaluate", "export")), out
    prepare_line, = [line for line in out.splitlines() if line.startswith("prepare: ")]
    assert prepare_line.endswith(f"; dropped: 4 rows (1 label not 0 or 1, 2 empty question, 1 duplicate pair), "
                                 f"listed in {paths.REJECTED_CSV}")
    assert prepare_line.startswith(f"prepare: {N_GOOD} valid pairs ")
    # The sha256 went into params.yaml as one readable line.
    assert f"  sha256: {hashlib.sha256(own_csv()).hexdigest()}\n" in (project / paths.PARAMS_FILE).read_text()
    assert read_json(project / paths.LORA_REPORT)["test"]["n"] > 0
    result = command("predict", project, "Is a rash after penicillin an allergy?", "Can penicillin cause a rash?")
    assert result.stdout.startswith(("similar (label 1", "different (label 0"))
    assert ", from experiment " in result.stderr  # the run just made, not the clone's commit


def test_dropped_rows_are_listed_and_counted_in_dvc_metrics(clone):
    project, _ = clone
    rejected = (project / paths.REJECTED_CSV).read_text(encoding="utf-8").splitlines()
    assert rejected == ["line,reason,dr_id,question_1,question_2,label",
                        "101,label not 0 or 1,1,Is this label odd?,Is it?,yes",
                        "102,empty question,2,,An empty question_1?,1",
                        "103,empty question,3,A question with no rewrite?,,0",
                        csv_bytes([[200, "duplicate pair", *pair_rows(1)[0]]]).decode().strip()]
    shown = json.loads(dvc("metrics", "show", "--json", cwd=project).stdout)[""]["data"]
    assert shown[str(paths.DATA_METRICS)]["data"] == {"n": N_GOOD, "n_dropped": 4}
    # Nothing changed: DVC skips prepare, and the counts are still there to read.
    out = dvc("repro", cwd=project).stdout
    assert "Stage 'prepare' didn't change, skipping" in out
    assert "n_dropped" in dvc("metrics", "show", cwd=project).stdout


def test_bad_input_under_dvc_repro_keeps_the_last_good_outputs(clone):
    """prepare's outputs are `persist: true`: DVC does not delete them before the stage runs, and
    prepare replaces them only when the new ones are complete."""
    project, _ = clone
    kept = (paths.PREPARED_DIR, paths.DATA_METRICS, paths.DATA_REPORT)
    before = output_files(project, *kept)
    raw = project / paths.RAW_CSV
    raw.write_bytes(own_csv().replace(b"Is this label odd?", b"Is this label \xff?"))
    params = project / paths.PARAMS_FILE
    params.write_text(params.read_text().replace(hashlib.sha256(own_csv()).hexdigest(),
                                                 hashlib.sha256(raw.read_bytes()).hexdigest()))
    result = dvc("repro", "prepare", cwd=project, check=False)
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("prepare: error: ")]
    assert errors == [f"prepare: error: {paths.RAW_CSV} is not UTF-8 text (invalid byte 0xff on line 101); "
                      "re-save it as UTF-8"]
    assert output_files(project, *kept) == before
