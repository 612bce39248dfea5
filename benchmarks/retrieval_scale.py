"""Retrieval at scale: banks of 10k, 100k and 1M random unit vectors (384 dimensions, the default
model's) searched exactly (one matrix product, mqp.nearest.top_k) and through a faiss HNSW graph
(mqp.nearest.build_hnsw, the retrieval.search: hnsw param), with the real model's encode throughput
and mqp search's start-up.

    python benchmarks/retrieval_scale.py                       # everything (minutes; HNSW at 1M the longest)
    python benchmarks/retrieval_scale.py --only scale --sizes 10000 100000
    python benchmarks/retrieval_scale.py --only encode         # the exported model (models/merged) after `dvc repro`
    python benchmarks/retrieval_scale.py --only startup        # `python -m mqp search` after `dvc repro`

Random vectors time the search, not its quality: with no structure they are the hardest case for
an approximate index, so the HNSW recall@10 printed for them is a floor; the recall on the real MQP
index (models/index) is printed beside it when that exists.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqp.paths import INDEX_BANK, INDEX_DIR, INDEX_EMBEDDINGS, MERGED_DIR  # noqa: E402
from mqp.architectures.bi_encoder import load_exported  # noqa: E402
from mqp.banks import load_index  # noqa: E402
from mqp.nearest import build_hnsw, hnsw_top_k, recall_at_k, top_k  # noqa: E402
from mqp.search import encode  # noqa: E402

DIMENSION = 384
K = 10
BATCH = 64


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIMENSION), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def latencies_ms(search, queries: np.ndarray, batch: int) -> np.ndarray:
    """Wall time of search(queries[i : i + batch]) for each batch, in ms (after one warm-up call)."""
    search(queries[:batch])
    times = []
    for start in range(0, len(queries) - batch + 1, batch):
        begin = time.perf_counter()
        search(queries[start : start + batch])
        times.append((time.perf_counter() - begin) * 1000)
    return np.array(times)


def describe(name: str, times: np.ndarray, batch: int) -> str:
    p50, p99 = np.percentile(times, [50, 99])
    per_query = f", {p50 / batch:.3f} ms/query" if batch > 1 else ""
    return f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(times)} calls{per_query}"


def scale(sizes: list[int], hnsw: bool, m: int, ef_construction: int, ef_search: int, single: int) -> None:
    for n in sizes:
        begin = time.perf_counter()
        bank = unit_vectors(n, seed=0)
        built = time.perf_counter() - begin
        queries = unit_vectors(max(single, BATCH * 20), seed=1)
        print(f"bank {n:,}: built (random unit vectors, normalised) in {built:.2f} s; embeddings "
              f"{bank.nbytes / 2**20:.0f} MiB")
        exact = lambda q: top_k(bank, q, K)  # noqa: E731
        print("  exact " + describe("single", latencies_ms(exact, queries[:single], 1), 1))
        print("  exact " + describe(f"batch of {BATCH}", latencies_ms(exact, queries, BATCH), BATCH))
        if not hnsw:
            continue
        begin = time.perf_counter()
        graph = build_hnsw(bank, m, ef_construction)
        built = time.perf_counter() - begin
        import faiss

        size = faiss.serialize_index(graph).nbytes
        approximate = lambda q: hnsw_top_k(graph, q, K, ef_search)  # noqa: E731
        print(f"  hnsw (M {m}, efConstruction {ef_construction}, efSearch {ef_search}): built in {built:.1f} s, "
              f"{size / 2**20:.0f} MiB on disk")
        print("  hnsw " + describe("single", latencies_ms(approximate, queries[:single], 1), 1))
        print("  hnsw " + describe(f"batch of {BATCH}", latencies_ms(approximate, queries, BATCH), BATCH))
        sample = queries[:200]
        print(f"  hnsw recall@{K} against exact (200 random queries): "
              f"{recall_at_k(approximate(sample)[1], exact(sample)[1]):.4f}")
        del graph


def mqp_recall(m: int, ef_construction: int, ef_search: int) -> None:
    """HNSW against exact search on the real index: queries are 500 of the bank's questions, each
    looking for its 10 nearest other than itself (the bank searched for 11, itself dropped)."""
    if not (INDEX_DIR / INDEX_EMBEDDINGS).exists():
        print(f"mqp recall: no index in {INDEX_DIR}; run `dvc repro index` first")
        return
    bank = load_index(INDEX_DIR).embeddings
    queries = bank[np.random.default_rng(0).choice(len(bank), 500, replace=False)]
    graph = build_hnsw(bank, m, ef_construction)
    exact = top_k(bank, queries, K + 1)[1][:, 1:]
    approximate = hnsw_top_k(graph, queries, K + 1, ef_search)[1][:, 1:]
    print(f"mqp index ({len(bank):,} questions): hnsw recall@{K} against exact, 500 bank questions as queries: "
          f"{recall_at_k(approximate, exact):.4f}")


def encode_throughput(batch_sizes: list[int], n: int) -> None:
    model, _ = load_exported(MERGED_DIR)
    texts = load_index(INDEX_DIR).texts[:n] if (INDEX_DIR / INDEX_BANK).exists() else None
    if texts is None:
        print(f"encode: no index in {INDEX_DIR}; run `dvc repro index` first")
        return
    encode(model, texts[:64], 16)  # warm-up
    for batch in batch_sizes:
        begin = time.perf_counter()
        encode(model, texts, batch)
        seconds = time.perf_counter() - begin
        print(f"encode ({MERGED_DIR}, {os.environ.get('OMP_NUM_THREADS', 'all')} threads): {len(texts)} MQP questions "
              f"at batch {batch}: {seconds:.2f} s, {len(texts) / seconds:.0f} questions/s")
    times = []
    for text in texts[:50]:
        begin = time.perf_counter()
        encode(model, [text], 1)
        times.append((time.perf_counter() - begin) * 1000)
    print(f"encode one question: p50 {np.percentile(times, 50):.1f} ms, p99 {np.percentile(times, 99):.1f} ms (50 questions)")


def startup(runs: int) -> None:
    """`python -m mqp search QUESTION` end to end, and its parts in this process."""
    command = [sys.executable, "-m", "mqp", "search", "Can I drink alcohol after antibiotics?"]
    walls = []
    for _ in range(runs):
        begin = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        walls.append(time.perf_counter() - begin)
    print(f"python -m mqp search \"...\": {' '.join(f'{w:.2f}' for w in walls)} s wall ({runs} runs; "
          "imports, model and index load, one query)")
    begin = time.perf_counter()
    model, _ = load_exported(MERGED_DIR)
    loaded = time.perf_counter()
    index = load_index(INDEX_DIR)
    indexed = time.perf_counter()
    print(f"in process: load the model {loaded - begin:.2f} s, the index ({len(index.texts):,}) {indexed - loaded:.2f} s")
    times = []
    for text in index.texts[:100]:
        begin = time.perf_counter()
        top_k(index.embeddings, encode(model, [text], 1), 5)
        times.append((time.perf_counter() - begin) * 1000)
    print(f"one query (encode + exact top 5): p50 {np.percentile(times, 50):.1f} ms, p99 {np.percentile(times, 99):.1f} ms "
          "(100 bank questions as queries)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["scale", "mqp", "encode", "startup"], action="append")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-hnsw", action="store_true", help="exact search only")
    parser.add_argument("--single", type=int, default=200, help="single queries timed per bank")
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=64)
    args = parser.parse_args()
    only = set(args.only or ["scale", "mqp", "encode", "startup"])
    if "scale" in only:
        scale(args.sizes, not args.no_hnsw, args.m, args.ef_construction, args.ef_search, args.single)
    if "mqp" in only:
        mqp_recall(args.m, args.ef_construction, args.ef_search)
    if "encode" in only:
        encode_throughput([16, 64], 2000)
    if "startup" in only:
        startup(3)


if __name__ == "__main__":
    main()
