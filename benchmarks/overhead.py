"""Per-step overhead: finetune's training path (the Trainer, PEFT, the collator, embed_each_once,
the head) against a bare PyTorch loop doing the same forward, backward and AdamW step on the same
batches, on a tiny model (2 layers, hidden 64) whose arithmetic is negligible. What the first
costs beyond the second is what a GPU pays on every step.

    python -m benchmarks.overhead [--rounds 3] [--questions 400]

Each round trains one epoch through the Trainer (a fresh model, the same seed, so the same
batches), recording the batches its collator built, then runs the bare loop over those batches
on a second fresh model. The first round warms every shape up and is not counted. A Trainer step
is the time between two `on_step_end` callbacks (data loading included); a bare step is the
forward, backward and optimizer step alone. Both synchronise the device before reading the clock.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks.common import clock, ms, run_cli, summary, tiny_model, tiny_workdir


def tiny_project(folder: Path, questions: int) -> Path:
    """A prepared tiny project (tiny model, `questions` synthetic MQP-shaped questions, fold 0),
    and this process's working directory from now on."""
    from mqp.cli import quiet_libraries
    from stages import prepare

    workdir = tiny_workdir(folder / "project", tiny_model(folder / "tiny-bert"), n_questions=questions,
                           overrides={"train.epochs": 1})
    os.chdir(workdir)
    quiet_libraries()
    prepare.main()
    return workdir


def trainer_epoch(params, splits, checkpoints: Path) -> tuple[list[float], list[dict], list[float]]:
    """One epoch of finetune's Trainer: seconds per step, the batches it trained on, its logged losses."""
    from transformers import TrainerCallback

    from mqp.architectures import base_model
    from mqp.lora import with_lora
    from mqp.models import device, load_tokenizer
    from mqp.training import collator_for, fit, make_trainer, training_arguments, training_sets

    on = device()
    stamps: list[float] = []
    training = [True]  # the collator also pads the epoch-end validation batches: not recorded

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(clock(on))

        def on_epoch_end(self, args, state, control, **kwargs):
            training[0] = False

    tokenizer = load_tokenizer(params.model)
    model = with_lora(base_model(params, tokenizer), params)
    collator = collator_for(params, tokenizer)
    batches: list[dict] = []

    def recording(features):
        batch = collator(features)
        if training[0]:
            batches.append(batch)
        return batch

    trainer = make_trainer(model, params, tokenizer, training_sets(params, tokenizer, splits),
                           training_arguments(params, checkpoints, report_to=[]), recording, [StepClock()])
    trainer.args.disable_tqdm = True
    fit(trainer, params.train.epochs, checkpoints)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return [end - start for start, end in zip(stamps, stamps[1:])], batches, losses


def bare_loop(params, batches: list[dict]) -> list[float]:
    """Seconds per step of forward, backward and AdamW on the same model, nothing else."""
    import torch

    from mqp.architectures import base_model
    from mqp.lora import with_lora
    from mqp.models import device, load_tokenizer
    from mqp.training import optimizer_for

    on = device()
    model = with_lora(base_model(params, load_tokenizer(params.model)), params).to(on).train()
    optimizer = optimizer_for(model, params) or torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=params.train.learning_rate)
    batches = [{key: value.to(on) for key, value in batch.items()} for batch in batches]  # built once
    times = []
    for batch in batches:
        start = clock(on)
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(clock(on) - start)
    return times


def overhead_steps(rounds: int = 3, questions: int = 400) -> dict:
    import torch

    from mqp.models import device
    from mqp.params import load_params
    from mqp.splits import load_splits

    with tempfile.TemporaryDirectory() as scratch:
        tiny_project(Path(scratch), questions)
        params, splits = load_params(), load_splits()
        times: dict[str, list[float]] = {"trainer": [], "bare": []}
        losses = []
        for index in range(rounds):
            trainer, batches, logged = trainer_epoch(params, splits, Path(scratch) / "checkpoints")
            bare = bare_loop(params, batches)
            losses.append(logged)
            if index:  # the first round warms every shape up
                times["trainer"] += trainer
                times["bare"] += bare[1:]  # the Trainer's first step has no interval either
    trainer, bare = summary(times["trainer"]), summary(times["bare"])
    return {"benchmark": "overhead", "device": device().type, "threads": torch.get_num_threads(),
            "architecture": params.model.architecture, "batch_size": params.train.batch_size,
            "steps_per_epoch": len(batches), "trainer": trainer, "bare": bare,
            "trainer_over_bare": round(trainer["median"] / bare["median"], 2),
            "logged_losses": losses[0], "losses_repeat": all(run == losses[0] for run in losses)}


def report(result: dict) -> list[str]:
    trainer, bare = result["trainer"], result["bare"]
    return [f"Per-step overhead (tiny {result['architecture']}: 2 layers, hidden 64; {result['device']}, "
            f"{result['threads']} threads; batch {result['batch_size']}, {trainer['n']} steps each after a warm-up epoch): "
            f"finetune's Trainer path {ms(trainer['median'])} ms per step (quartiles {ms(trainer['q1'])}-{ms(trainer['q3'])}), "
            f"bare loop {ms(bare['median'])} ms ({ms(bare['q1'])}-{ms(bare['q3'])}): "
            f"**{result['trainer_over_bare']}x** the bare loop; logged losses {result['logged_losses']}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=400)
    run_cli(parser, overhead_steps, report)


if __name__ == "__main__":
    main()
