"""fp32 against bf16 autocast: seconds per training step of params.yaml's model on this machine's
device, the two alternating on the same batches, each shape warmed up, the clock read only once
the device has finished (right on CUDA, whose kernels run asynchronously).

    python -m benchmarks.precision [--steps 30]
"""

from __future__ import annotations

import argparse

from benchmarks.common import ms, run_cli, summary, time_each


def precision_steps(steps: int = 30) -> dict:
    import torch

    from benchmarks.steps import TrainingSteps

    runner = TrainingSteps(steps)
    times = time_each({"fp32": lambda features: runner.run(features),
                       "bf16": lambda features: runner.run(features, torch.bfloat16)},
                      runner.batches, runner.device)
    fp32, bf16 = summary(times["fp32"]), summary(times["bf16"])
    return {"benchmark": "precision", "device": runner.device.type, "steps": fp32["n"], "fp32": fp32, "bf16": bf16,
            "bf16_over_fp32": round(bf16["median"] / fp32["median"], 2)}


def report(result: dict) -> list[str]:
    fp32, bf16 = result["fp32"], result["bf16"]
    return [f"Precision ({result['device']}, {result['steps']} training steps each, alternating on the same batches, "
            f"each shape warmed up, synchronised): fp32 median {ms(fp32['median'])} ms per step (quartiles "
            f"{ms(fp32['q1'])}-{ms(fp32['q3'])}), bf16 autocast {ms(bf16['median'])} ms ({ms(bf16['q1'])}-{ms(bf16['q3'])}): "
            f"{result['bf16_over_fp32']}x fp32's time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    run_cli(parser, precision_steps, report)


if __name__ == "__main__":
    main()
