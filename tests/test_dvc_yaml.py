"""dvc.yaml agrees with the code: each stage's deps are exactly the project modules it imports
(directly or not), and the paths in dvc.yaml are the paths in mqp/paths.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from mqp import paths
from helpers import repo_params_raw

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("stages", "mqp")
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = PIPELINE["stages"]
ARTIFACTS = PIPELINE.get("artifacts", {})
PARAMS = repo_params_raw()  # the committed params.yaml
# Paths in mqp/paths.py that DVC does not track, and why.
NOT_IN_DVC_YAML = {
    paths.PARAMS_FILE: "DVC reads params.yaml itself, through each stage's params",
    paths.TMP_DIR: "scratch space, never an output",
    paths.LOCK_FILE: "DVC writes it; mqp.runs reads past runs' copies",
}


def module_file(name: str) -> Path | None:
    """The project file that `import name` runs, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    for candidate in (REPO / f"{name.replace('.', '/')}.py", REPO / name.replace(".", "/") / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_names(path: Path):
    """Every module name an import statement in `path` may load (`from a import b`: a and a.b)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_closure(module: str) -> set[str]:
    """The project files loaded by `python -m module`, packages' __init__ files included."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        path = module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(imported_names(path))
    return {path.relative_to(REPO).as_posix() for path in seen}


def module_of(stage: dict) -> str:
    command = stage["cmd"].split()
    assert command[:2] == ["python", "-m"], f"stage cmd is not `python -m module`: {stage['cmd']}"
    return command[2]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_exactly_its_import_closure(name):
    stage = STAGES[name]
    declared = {dep for dep in stage["deps"] if dep.endswith(".py")}
    closure = import_closure(module_of(stage))
    assert not closure - declared, f"{name}: imported but missing from deps: {sorted(closure - declared)}"
    assert not declared - closure, f"{name}: in deps but never imported: {sorted(declared - closure)}"


def test_stages_folder_holds_exactly_the_stages_of_dvc_yaml():
    """stages/ is the pipeline: one module per dvc.yaml stage, and nothing else (the commands a
    user types live in mqp/commands/, behind `python -m mqp`)."""
    modules = {path.stem for path in (REPO / "stages").glob("*.py") if path.stem != "__init__"}
    assert modules == set(STAGES)


def test_import_closure_follows_imports_through_modules():
    """The closure is transitive: finetune reaches mqp.stats only through mqp.metrics."""
    closure = import_closure("stages.finetune")
    assert {"stages/finetune.py", "mqp/metrics.py", "mqp/stats.py", "mqp/__init__.py"} <= closure
    assert "stages/evaluate.py" not in closure and "mqp/data.py" not in closure


def resolve(path: str) -> str:
    """A path with DVC's `${group.key}` templates filled in from params.yaml, as DVC fills them."""
    return re.sub(r"\$\{(\w+)\.(\w+)\}", lambda match: str(PARAMS[match[1]][match[2]]), path)


def names(entries) -> set[str]:
    """Paths in a deps/outs/metrics list, whose items are strings or {path: options}."""
    return {resolve(next(iter(entry)) if isinstance(entry, dict) else entry) for entry in entries or []}


def dvc_yaml_paths() -> set[PurePosixPath]:
    found = set()
    for stage in STAGES.values():
        for key in ("deps", "outs", "metrics", "plots"):
            found |= {PurePosixPath(p) for p in names(stage.get(key)) if not p.endswith(".py")}
    for plot in PIPELINE.get("plots", []):
        (plot_id, spec), = plot.items()
        y = spec.get("y")  # {file: column} for a plot of several files; else the id is the file
        found |= {PurePosixPath(p) for p in y} if isinstance(y, dict) else {PurePosixPath(plot_id)}
    found |= {PurePosixPath(artifact["path"]) for artifact in ARTIFACTS.values()}
    return found


def paths_py_paths() -> set[PurePosixPath]:
    """Every path mqp/paths.py defines or builds: constants, split files, per-model result files."""
    constants = {PurePosixPath(value.as_posix()) for value in vars(paths).values() if isinstance(value, Path)}
    file_names = [value for name, value in vars(paths).items() if name.endswith("_CSV") and isinstance(value, str)]
    results = [paths.BASE_RESULTS, paths.ZEROSHOT_RESULTS, paths.LORA_RESULTS]
    built = {PurePosixPath(paths.split_csv(split).as_posix()) for split in paths.SPLITS}
    built |= {PurePosixPath((folder / name).as_posix()) for folder in results for name in file_names}
    return constants | built


def test_every_path_in_paths_py_is_in_dvc_yaml():
    declared = dvc_yaml_paths()
    untracked = {PurePosixPath(p.as_posix()) for p in NOT_IN_DVC_YAML}
    # A path counts where dvc.yaml names it, a file inside it, or a folder around it.
    missing = [str(p) for p in paths_py_paths() - untracked
               if not any(p == d or p in d.parents or d in p.parents for d in declared)]
    assert not missing, f"in mqp/paths.py but nowhere in dvc.yaml: {sorted(missing)}"


def test_every_path_in_dvc_yaml_comes_from_paths_py():
    known = paths_py_paths()
    dvclive = PurePosixPath(paths.DVCLIVE_PLOTS.as_posix())  # file names inside are DVCLive's own
    unknown = [str(p) for p in dvc_yaml_paths() if p not in known and dvclive not in p.parents]
    assert not unknown, f"in dvc.yaml but not defined in mqp/paths.py: {sorted(unknown)}"


def test_no_stage_output_path_is_written_as_a_literal():
    """Code names stage outputs through mqp.paths, never as strings of their own."""
    outputs = {str(p) for p in dvc_yaml_paths()} | {str(paths.TMP_DIR)}
    sources = [p for folder in ("mqp", "stages", "benchmarks", "tests") for p in (REPO / folder).rglob("*.py")
               if p != REPO / "mqp" / "paths.py" and p != Path(__file__)]
    found = []
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip("/") in outputs:
                found.append(f"{source.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "stage output paths written as literals:\n" + "\n".join(found)


def test_artifacts_are_stage_outputs_with_valid_names():
    """The registry's artifacts: a name GTO accepts, a type, a description, labels, and the path
    of a stage's output (so `dvc artifacts get` finds it in the cache or remote)."""
    from gto.constants import assert_name_is_valid

    outputs = {PurePosixPath(p) for stage in STAGES.values() for p in names(stage.get("outs"))}
    assert {artifact["type"] for artifact in ARTIFACTS.values()} >= {"model", "dataset"}
    for name, artifact in ARTIFACTS.items():
        assert_name_is_valid(name)
        assert PurePosixPath(artifact["path"]) in outputs, f"artifact {name}: {artifact['path']} is no stage's output"
        assert artifact["desc"] and artifact["labels"], name
    by_path = {PurePosixPath(artifact["path"]): artifact["type"] for artifact in ARTIFACTS.values()}
    assert by_path[PurePosixPath(paths.ADAPTER_DIR.as_posix())] == "model"
    assert by_path[PurePosixPath(paths.PREPARED_DIR.as_posix())] == "dataset"
