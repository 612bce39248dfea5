"""The raw CSV under plain `dvc repro`, for real in a scratch git+DVC repo (up to prepare: no model):
an edited file is never "up to date". It re-runs prepare, which stops on the checksum until
data.sha256 names the new file; a file placed by hand is kept; a missing one is fetched."""

import sys

import pytest

from helpers import commit, dvc, make_project, no_network_prefix, read_json, run, set_params
from mqp import paths
from mqp.data import sha256_of
from stages import fetch

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path):
    """A scratch project whose `dvc repro prepare` ran and was committed, its CSV pinned by data.sha256."""
    project = make_project(tmp_path / "project")
    set_params(project, {"data.sha256": sha256_of(project / paths.RAW_CSV)})
    first = dvc("repro", "prepare", cwd=project).stdout
    assert fetch.KEPT in first
    commit(project, "first run")
    return project


def test_an_appended_row_is_caught_by_plain_dvc_repro(project):
    raw = project / paths.RAW_CSV
    before = read_json(project / paths.DATA_METRICS)
    with open(raw, "a", encoding="utf-8") as f:
        f.write("7,What helps a sore throat?,Which lozenges soothe a sore throat?,1\n")
    result = dvc("repro", "prepare", cwd=project, check=False)
    output = result.stdout + result.stderr
    assert "up to date" not in output and "Running stage 'prepare'" in output
    assert result.returncode != 0 and f"prepare: error: checksum mismatch for {paths.RAW_CSV}" in output
    assert read_json(project / paths.DATA_METRICS) == before  # the old results stay, marked stale
    # The new file, named by its checksum, goes through: one more valid pair.
    set_params(project, {"data.sha256": sha256_of(raw)})
    dvc("repro", "prepare", cwd=project)
    assert read_json(project / paths.DATA_METRICS)["n"] == before["n"] + 1
    assert "up to date" in dvc("repro", "prepare", cwd=project).stdout


def test_without_a_checksum_an_edited_file_still_reruns_prepare(project):
    set_params(project, {"data.sha256": None})
    dvc("repro", "prepare", cwd=project)
    n = read_json(project / paths.DATA_METRICS)["n"]
    with open(project / paths.RAW_CSV, "a", encoding="utf-8") as f:
        f.write("7,What helps a sore throat?,Which lozenges soothe a sore throat?,1\n")
    output = dvc("repro", "prepare", cwd=project).stdout
    assert "Running stage 'prepare'" in output and read_json(project / paths.DATA_METRICS)["n"] == n + 1


def test_a_missing_file_is_fetched_not_a_dvc_error(project):
    """DVC runs fetch for a missing file (a dep that no stage wrote would stop DVC with "No such
    file"); with no network, fetch's one line says how to place the file by hand."""
    prefix = no_network_prefix()
    if not prefix:
        pytest.skip("needs `unshare -n` to run DVC without a network")
    (project / paths.RAW_CSV).unlink()
    result = run([*prefix, sys.executable, "-m", "dvc", "repro", "prepare"], cwd=project, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Running stage 'fetch'" in output
    assert "fetch: error: could not download" in output and "No such file" not in output
