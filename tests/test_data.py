"""prepare's parts: download, checksum, row validation and splitting."""

import functools
import hashlib
import http.server
import threading

import pandas as pd
import pytest

from conftest import SHARED_CSV, write_pairs_csv
from stages.data import download, fetch_raw, read_pairs, split_pairs
from stages.errors import PipelineError
from stages.params import DataParams

URL = "http://127.0.0.1:9/unreachable.csv"


def data_params(**changes) -> DataParams:
    return DataParams(**{"url": URL, "sha256": None, **changes})


@pytest.fixture
def pairs(tmp_path):
    table, drops = read_pairs(write_pairs_csv(tmp_path / "mqp.csv", n_questions=60))
    assert drops == {}
    return table


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


def test_download_from_local_http_server(tmp_path, http_server):
    root, base_url = http_server
    source = write_pairs_csv(root / "mqp.csv")
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    raw = tmp_path / "data" / "raw" / "mqp.csv"
    path = fetch_raw(data_params(url=f"{base_url}/mqp.csv", sha256=expected), raw)
    assert path == raw and raw.read_bytes() == source.read_bytes()
    assert not raw.with_name("mqp.csv.part").exists()


def test_download_failure_says_where_to_put_the_file(tmp_path, http_server):
    _, base_url = http_server
    raw = tmp_path / "raw" / "mqp.csv"
    with pytest.raises(PipelineError, match=r"could not download .*missing.csv.*place the MQP CSV at data/raw/mqp.csv"):
        download(f"{base_url}/missing.csv", raw)
    assert not raw.exists() and not raw.with_name("mqp.csv.part").exists()


def test_file_placed_by_hand_is_used_without_network(tmp_path):
    raw = write_pairs_csv(tmp_path / "mqp.csv")
    assert fetch_raw(data_params(), raw) == raw  # URL is unreachable: never contacted


def test_checksum_mismatch_is_one_clear_error(tmp_path):
    raw = write_pairs_csv(tmp_path / "mqp.csv")
    with pytest.raises(PipelineError, match=r"checksum mismatch for .*mqp.csv: sha256 [0-9a-f]{64}, params.yaml data.sha256 expects 0{64}"):
        fetch_raw(data_params(sha256="0" * 64), raw)


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared MQP copy not present")
def test_shared_mqp_passes_the_pinned_checksum():
    params = data_params(sha256="94ecd609a9ca9350e1cff2438aa55a034762f01c1a68732aaae3e4be7b03cf57")
    table, drops = read_pairs(fetch_raw(params, SHARED_CSV))
    assert len(table) == 3048 and drops == {}
    assert table["question_1"].value_counts().eq(2).all()
    splits = split_pairs(table, data_params())
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [2438, 304, 306]


@pytest.mark.parametrize("split", ["grouped", "random"])
def test_split_sizes_cover_every_row_once(pairs, split):
    splits = split_pairs(pairs, data_params(split=split))
    assert sum(len(part) for part in splits.values()) == len(pairs)
    joined = pd.concat(splits.values())
    assert not joined.duplicated(["question_1", "question_2"]).any()
    assert len(splits["train"]) == pytest.approx(0.8 * len(pairs), abs=2)
    assert len(splits["validation"]) == pytest.approx(0.1 * len(pairs), abs=2)


@pytest.mark.parametrize("split", ["grouped", "random"])
def test_same_seed_same_split_other_seed_other_split(pairs, split):
    first = split_pairs(pairs, data_params(split=split, seed=7))
    again = split_pairs(pairs, data_params(split=split, seed=7))
    other = split_pairs(pairs, data_params(split=split, seed=8))
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["test"].equals(other["test"])


def test_grouped_split_never_shares_a_question(pairs):
    splits = split_pairs(pairs, data_params(split="grouped"))
    questions = {name: set(part["question_1"]) for name, part in splits.items()}
    assert not questions["train"] & questions["validation"]
    assert not questions["train"] & questions["test"]
    assert not questions["validation"] & questions["test"]


def test_random_split_does_leak_questions(pairs):
    # Why grouped is the default: row-wise splitting shares question_1 across splits.
    splits = split_pairs(pairs, data_params(split="random"))
    assert set(splits["train"]["question_1"]) & set(splits["test"]["question_1"])


def test_too_few_rows_to_split(tmp_path):
    table, _ = read_pairs(write_pairs_csv(tmp_path / "mqp.csv", n_questions=3))
    with pytest.raises(PipelineError, match="split is empty: 6 valid rows are too few"):
        split_pairs(table, data_params())
