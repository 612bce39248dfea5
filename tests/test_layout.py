"""docs/development.md's layout table against the tree: every module it names exists, and every
module of stages/, mqp/ and mqp/commands/ is named there."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from helpers import REPO

PACKAGES = ("stages", "mqp", "mqp/commands")


def layout_paths(text: str) -> set[str]:
    """The paths in the layout table's first column. A row may shorten a list: `mqp/a.py`, `b.py`
    means mqp/b.py (a bare name lives in the folder of the path before it)."""
    table = text.split("## Layout", 1)[1]
    paths = set()
    for row in re.findall(r"^\| (.+?) \| .+ \|$", table, flags=re.M):
        folder = PurePosixPath(".")
        for name in re.findall(r"`([^`]+)`", row):
            path = PurePosixPath(name) if "/" in name else folder / name
            folder = path if name.endswith("/") else path.parent
            paths.add(str(path))
    return paths


def test_layout_names_every_module_and_only_modules_that_exist():
    listed = layout_paths((REPO / "docs" / "development.md").read_text(encoding="utf-8"))
    modules = {str(path.relative_to(REPO)) for package in PACKAGES for path in (REPO / package).glob("*.py")
               if path.name != "__init__.py"}
    assert sorted(modules - listed) == [], "modules missing from docs/development.md's layout"
    assert sorted(path for path in listed if path.endswith(".py") and not (REPO / path).exists()) == [], \
        "docs/development.md names modules that do not exist"


def test_layout_reads_shortened_rows():
    text = "## Layout\n\n| path | what |\n| --- | --- |\n| `mqp/a.py`, `b.py` | x |\n| `plots/` | y |\n"
    assert layout_paths(text) == {"mqp/a.py", "mqp/b.py", "plots"}
