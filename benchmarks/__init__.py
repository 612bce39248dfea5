"""Benchmarks, one file per benchmark over benchmarks/common.py; benchmarks/benchmark.py runs them."""
