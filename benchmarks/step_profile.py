"""Where a training step's time goes (torch.profiler, synchronised): the share of CPU (or GPU)
time in matmuls, the step's arithmetic rate against a bare matmul of the layers' shapes, and the
Python collator's share.

    python -m benchmarks.step_profile [--steps 8]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import clock, run_cli

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def matmul_gflops(device, rows: int, inner: int, cols: int, repeats: int = 50) -> float:
    """fp32 GFLOP/s of (rows x inner) @ (inner x cols) on this device, now: the ceiling that the
    training step's own matmuls are compared with."""
    import torch

    a, b = torch.randn(rows, inner, device=device), torch.randn(inner, cols, device=device)
    a @ b  # warm-up
    start = clock(device)
    for _ in range(repeats):
        a @ b
    return 2 * rows * inner * cols * repeats / (clock(device) - start) / 1e9


def profile_steps(steps: int = 8) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.steps import TrainingSteps

    runner = TrainingSteps(steps)
    on, params, model, batches, features = runner.device, runner.params, runner.model, runner.batches, runner.features
    for batch in batches:  # every shape warmed up
        runner.run(batch)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on.type == "cuda" else [])
    started = clock(on)
    with profile(activities=activities, with_flops=True) as profiler:
        collate_seconds = sum(runner.run(batch) for batch in batches[1:])
    seconds = clock(on) - started
    events = profiler.key_averages()
    # On a GPU the shares are of GPU time (what the kernels took); the step's wall time shows the rest.
    busy = "self_device_time_total" if on.type == "cuda" else "self_cpu_time_total"
    total_us = sum(getattr(e, busy) for e in events)
    matmul_us = sum(getattr(e, busy) for e in events if e.key in MATMUL_OPS)
    flops = sum(e.flops for e in events)
    tokens = int(np.mean([sum(len(f[k]) for k in f if k.startswith("input_ids")) for f in features]))
    hidden = model.config.hidden_size if hasattr(model, "config") else model.encoder.config.hidden_size
    ceiling = matmul_gflops(on, params.train.batch_size * tokens, hidden, 4 * hidden)
    top = sorted(events, key=lambda e: -getattr(e, busy))[:6]
    return {
        "benchmark": "profile",
        "architecture": params.model.architecture,
        "device": on.type,
        "steps": steps,
        "step_seconds": round(seconds / steps, 4),
        "matmul_share": round(matmul_us / total_us, 3),
        "collate_share": round(collate_seconds / seconds, 3),
        "step_gflops": round(flops / seconds / 1e9, 1),
        "matmul_ceiling_gflops": round(ceiling, 1),
        "top_ops": {e.key: round(getattr(e, busy) / total_us, 3) for e in top},
        "tokens_per_pair": tokens,
    }


def report(result: dict) -> list[str]:
    return [f"Training step profile ({result['architecture']} on {result['device']}, {result['steps']} steps, "
            f"{result['tokens_per_pair']} tokens per pair, synchronised): {result['step_seconds']} s per step; "
            f"matmuls {result['matmul_share']:.0%} of {result['device']} time, the collator {result['collate_share']:.0%}; "
            f"{result['step_gflops']} GFLOP/s against {result['matmul_ceiling_gflops']} GFLOP/s for a bare "
            f"matmul of the feed-forward shape; top ops: " + ", ".join(f"{k} {v:.0%}" for k, v in result["top_ops"].items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    run_cli(parser, profile_steps, report)


if __name__ == "__main__":
    main()
