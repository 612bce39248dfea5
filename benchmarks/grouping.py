"""The bi-encoder's batches of whole question_1 groups: seconds per training step with each
question_1 embedded once (finetune) against once per pair, alternating on the same batches; and
the texts each way runs through the encoder.

    python -m benchmarks.grouping [--steps 30]
"""

from __future__ import annotations

import argparse

from benchmarks.common import ms, run_cli, summary, time_each


def grouping_steps(steps: int = 30) -> dict:
    from benchmarks.steps import TrainingSteps

    runner = TrainingSteps(steps, grouped=True)
    model = runner.model
    if not hasattr(model, "embed_each_once"):
        return {"benchmark": "grouping", "skipped": "model.architecture is not bi-encoder"}

    def per_pair(features):
        model.embed_each_once = model.embed  # every row through the encoder
        try:
            runner.run(features)
        finally:
            del model.embed_each_once

    times = time_each({"once": runner.run, "per_pair": per_pair}, runner.batches, runner.device)
    once, pairs = summary(times["once"]), summary(times["per_pair"])
    texts = {"once": sum(len({tuple(f["input_ids_1"]) for f in b}) + len(b) for b in runner.batches[1:]),
             "per_pair": sum(2 * len(b) for b in runner.batches[1:])}
    return {"benchmark": "grouping", "device": runner.device.type, "steps": once["n"], "once": once, "per_pair": pairs,
            "once_over_per_pair": round(once["median"] / pairs["median"], 2),
            "texts_once": texts["once"], "texts_per_pair": texts["per_pair"]}


def report(result: dict) -> list[str]:
    if "skipped" in result:
        return [f"Question_1 groups: skipped, {result['skipped']}"]
    return [f"Question_1 groups ({result['device']}, {result['steps']} bi-encoder training steps each, alternating on the "
            f"same batches): each question_1 embedded once {ms(result['once']['median'])} ms per step, once per pair "
            f"{ms(result['per_pair']['median'])} ms ({result['once_over_per_pair']}x the time; {result['texts_once']} "
            f"against {result['texts_per_pair']} texts encoded)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    run_cli(parser, grouping_steps, report)


if __name__ == "__main__":
    main()
