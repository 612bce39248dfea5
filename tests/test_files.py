"""mqp.files: outputs are written whole or not at all. write_json gives stable bytes (sorted keys)
through a rename; atomic_dir replaces a folder in one rename, and on an error or Ctrl-C leaves the
old folder as it was and no scratch behind."""

import json

import pytest

from mqp.files import atomic_dir, write_json
from mqp.paths import TMP_DIR


def test_write_json_is_sorted_and_stable(tmp_path):
    path = tmp_path / "deep" / "metrics.json"
    write_json(path, {"b": 1, "a": {"d": 2.5, "c": None}})
    first = path.read_bytes()
    assert first == b'{\n  "a": {\n    "c": null,\n    "d": 2.5\n  },\n  "b": 1\n}\n'
    write_json(path, {"a": {"c": None, "d": 2.5}, "b": 1})  # the same data in another order
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left


def test_atomic_dir_replaces_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as scratch:
        (scratch / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing shows before the end
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert oct(target.stat().st_mode & 0o777) == "0o755"
    assert not list(TMP_DIR.iterdir())


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_dir_keeps_the_old_folder_on_an_error(tmp_path, monkeypatch, error):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.json").write_text(json.dumps({"kept": True}))
    with pytest.raises(error):
        with atomic_dir(target) as scratch:
            (scratch / "half.json").write_text("{")
            raise error()
    assert [p.name for p in target.iterdir()] == ["old.json"]
    assert not list(TMP_DIR.iterdir())  # the scratch folder is gone
