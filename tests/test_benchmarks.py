"""The benchmarks' timing is right on a GPU: the device is synchronised before every clock read
(CUDA kernels run asynchronously), each shape is warmed up, and a median comes with its spread.
Tested on the CPU with CUDA's synchronisation stubbed."""

from types import SimpleNamespace

import pytest
import torch

from benchmarks import benchmark, common


@pytest.fixture
def events(monkeypatch) -> list:
    """What happens, in order: 'sync' (torch.cuda.synchronize), 'read' (the clock), steps."""
    happened = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: happened.append("sync"))
    monkeypatch.setattr(common, "time", SimpleNamespace(perf_counter=lambda: happened.append("read") or float(len(happened))))
    return happened


def test_every_clock_read_on_cuda_waits_for_the_device(events):
    times = common.time_each({"a": lambda item: events.append(f"a{item}"), "b": lambda item: events.append(f"b{item}")},
                             [1, 2, 3], torch.device("cuda"))
    reads = [i for i, event in enumerate(events) if event == "read"]
    assert len(reads) == 2 * 3 * 2  # two steps, three inputs, a start and an end each
    assert all(events[i - 1] == "sync" for i in reads)
    assert len(times["a"]) == len(times["b"]) == 3
    # Each input runs once untimed (its shape warmed up), then once between two reads; a and b alternate.
    assert events[:8] == ["a1", "sync", "read", "a1", "sync", "read", "b1", "sync"]


def test_on_the_cpu_nothing_is_synchronised(events):
    common.time_each({"a": lambda item: None}, [1, 2], torch.device("cpu"))
    assert "sync" not in events and events.count("read") == 4


def test_summary_gives_the_median_and_spread():
    stats = common.summary([0.3, 0.1, 0.2, 0.5, 0.4])
    assert stats == {"n": 5, "median": 0.3, "q1": 0.2, "q3": 0.4, "min": 0.1, "max": 0.5}


def test_benchmark_runs_each_part_from_its_own_file():
    assert {"reference", "pipeline", "gpt2", "startup", "profile", "precision", "grouping", "overhead"} == set(benchmark.PARTS)
    for module in set(benchmark.PARTS.values()):
        assert callable(module.report) and callable(module.main)


def test_stream_memory_writes_the_pairs_predict_reads(tmp_path):
    """benchmarks/stream_memory.py's large CSV: the rows asked for, predict's header, no empty question."""
    from benchmarks.stream_memory import write_pairs
    from mqp.commands.predict import check_pairs_csv

    write_pairs(tmp_path / "pairs.csv", 1234)
    assert check_pairs_csv(str(tmp_path / "pairs.csv"), chunk_pairs=500) == 1234


def test_stream_memory_writes_the_queries_search_reads(tmp_path):
    """--command search's large CSV: the queries asked for, search's header, each query unique."""
    import pandas as pd

    from benchmarks.stream_memory import write_queries
    from mqp.commands.search import check_queries_csv

    write_queries(tmp_path / "queries.csv", 1234)
    assert check_queries_csv(str(tmp_path / "queries.csv"), chunk_queries=500) == 1234
    assert pd.read_csv(tmp_path / "queries.csv")["question"].is_unique
