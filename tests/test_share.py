"""Sharing results, as the README's "Share results" section does it, for real: a copy of the
trained project pushed to a bare git repo and a local-folder DVC remote; a clone that `dvc pull`s
gets every output, answers `mqp predict` and has nothing to reproduce; experiments go through
`dvc exp push` / `dvc exp pull`; versions tagged with GTO come back with `dvc artifacts get`."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from helpers import command, STAGES, copy_project, dvc, git_clone, gto, output_files, run
from mqp import paths

pytestmark = pytest.mark.slow

OUTPUTS = (paths.PREPARED_DIR, paths.ADAPTER_DIR, paths.BASE_RESULTS, paths.ZEROSHOT_RESULTS, paths.LORA_RESULTS)
ARTIFACTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["artifacts"]
ADAPTER = next(name for name, spec in ARTIFACTS.items() if spec["path"] == paths.ADAPTER_DIR.as_posix())
PAIRS = next(name for name, spec in ARTIFACTS.items() if spec["path"] == paths.PREPARED_DIR.as_posix())
EXPERIMENT = "shared-run"


@dataclass
class Shared:
    project: Path  # the trained copy that pushed
    origin: Path  # its bare git remote
    storage: Path  # its DVC remote
    clone: Path  # a git clone of origin after `dvc pull`


@pytest.fixture(scope="module")
def shared(tmp_path_factory, trained_project) -> Shared:
    """A copy of trained_project with a DVC remote (`dvc remote add -d`, committed), pushed with
    git and `dvc push`; GTO tags (a version of each artifact, the adapter's in stage prod) and a
    saved experiment pushed too; then `git clone` + `dvc pull` elsewhere."""
    root = tmp_path_factory.mktemp("share")
    project = copy_project(trained_project[0], root / "project")
    origin, storage = root / "origin.git", root / "storage"
    run(["git", "init", "-q", "--bare", str(origin)], cwd=root)
    dvc("remote", "add", "-d", "storage", str(storage), cwd=project)
    run(["git", "commit", "-qam", "DVC remote"], cwd=project)
    run(["git", "remote", "add", "origin", str(origin)], cwd=project)
    run(["git", "push", "-q", "origin", "HEAD"], cwd=project)
    dvc("push", cwd=project)
    gto("register", ADAPTER, "--version", "v1.0.0", "-m", "first trained adapter", cwd=project)
    gto("assign", ADAPTER, "--version", "v1.0.0", "--stage", "prod", cwd=project)
    gto("register", PAIRS, "--version", "v1.0.0", cwd=project)
    run(["git", "push", "-q", "origin", "--tags"], cwd=project)
    # An experiment without training: the trained workspace saved as one.
    dvc("exp", "save", "-n", EXPERIMENT, cwd=project)
    dvc("exp", "push", "origin", EXPERIMENT, cwd=project)
    clone = git_clone(origin, root / "clone")
    dvc("pull", cwd=clone)
    return Shared(project, origin, storage, clone)


def place_raw_csv(project, clone) -> None:
    """The raw CSV is no cached output (stage fetch's, cache: false), so neither `dvc pull` nor `dvc exp
    pull` brings it: placed by hand, as the README's quick start says."""
    (clone / paths.RAW_CSV).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(project / paths.RAW_CSV, clone / paths.RAW_CSV)


def test_pushed_outputs_are_in_the_remote(shared):
    assert "storage" in dvc("remote", "list", cwd=shared.project).stdout
    assert any(shared.storage.rglob("*")), "dvc push wrote nothing"
    assert json.loads(dvc("status", "--cloud", "--json", cwd=shared.project).stdout) == {}


def test_pulled_clone_has_the_outputs_and_nothing_to_do(shared):
    clone = shared.clone
    assert output_files(clone, *OUTPUTS) == output_files(shared.project, *OUTPUTS)
    place_raw_csv(shared.project, clone)
    assert json.loads(dvc("status", "--json", cwd=clone).stdout) == {}
    answer = command("predict", clone, "Can I drink alcohol after antibiotics?", "Is a beer OK with azithromycin?")
    assert re.fullmatch(r"(similar \(label 1|different \(label 0), P\(similar\) = \d\.\d{4}\)\n", answer.stdout), answer.stdout
    repro = dvc("repro", cwd=clone).stdout
    assert "Running stage" not in repro
    for name in STAGES:
        assert f"Stage '{name}' didn't change, skipping" in repro
    assert "Data and pipelines are up to date." in repro
    assert run(["git", "status", "--porcelain"], cwd=clone).stdout == ""  # dvc.lock untouched


def test_experiment_push_and_pull(shared, tmp_path):
    """A fresh clone with an empty DVC cache gets the experiment's ref and outputs from `dvc exp pull`."""
    clone = git_clone(shared.origin, tmp_path / "clone")
    assert EXPERIMENT in dvc("exp", "list", "origin", "--name-only", cwd=clone).stdout
    dvc("exp", "pull", "origin", EXPERIMENT, cwd=clone)
    assert EXPERIMENT in dvc("exp", "list", "--name-only", cwd=clone).stdout
    dvc("exp", "apply", EXPERIMENT, cwd=clone)
    assert output_files(clone, *OUTPUTS) == output_files(shared.project, *OUTPUTS)
    place_raw_csv(shared.project, clone)
    assert json.loads(dvc("status", "--json", cwd=clone).stdout) == {}


@pytest.mark.parametrize("selector", [[], ["--rev", "v1.0.0"], ["--stage", "prod"]], ids=["latest", "version", "stage"])
def test_artifacts_get_downloads_the_adapter(shared, tmp_path, selector):
    out = tmp_path / "adapter"
    dvc("artifacts", "get", str(shared.origin), ADAPTER, *selector, "-o", str(out), cwd=tmp_path)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    assert output_files(out, Path(".")) == {
        str(Path(name).relative_to(paths.ADAPTER_DIR)): data
        for name, data in output_files(shared.project, paths.ADAPTER_DIR).items()}


def test_artifacts_get_downloads_the_prepared_pairs(shared, tmp_path):
    out = tmp_path / "pairs"
    dvc("artifacts", "get", str(shared.origin), PAIRS, "-o", str(out), cwd=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted([*(paths.split_csv(s).name for s in paths.SPLITS),
                                                            paths.REJECTED_CSV.name])  # the rows prepare dropped
    for split in paths.SPLITS:
        assert (out / paths.split_csv(split).name).read_bytes() == (shared.project / paths.split_csv(split)).read_bytes()


def test_unregistered_version_is_not_found(shared, tmp_path):
    result = dvc("artifacts", "get", str(shared.origin), ADAPTER, "--rev", "v9.9.9", cwd=tmp_path, check=False)
    assert result.returncode != 0 and f"Unable to find artifact '{ADAPTER} @ v9.9.9'" in result.stderr
    assert not (tmp_path / paths.ADAPTER_DIR.name).exists()
