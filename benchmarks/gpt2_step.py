"""GPT-2 124M (random weights, real tokenizer), LoRA c_attn+c_proj r=8: seconds per training step
of 16 real train pairs, synchronised, and the 3 epochs of MQP that makes.

    python -m benchmarks.gpt2_step [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import resource

from benchmarks.common import SHARED, clock, run_cli, summary

MQP_TRAIN_PAIRS = 2438  # the random split's train set, what the reference recipe trains on


def gpt2_tokenizer():
    from transformers import GPT2Tokenizer

    folder = SHARED / "gpt2-tokenizer"
    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:] if line]
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def gpt2_step_time(steps: int = 5, batch: int = 16) -> dict:
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from mqp.cli import quiet_libraries
    from mqp.encoding import encode_pairs
    from mqp.lora import add_lora
    from mqp.models import device
    from mqp.params import LoraParams
    from mqp.splits import load_split

    quiet_libraries()
    on = device()
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    model = add_lora(GPT2ForSequenceClassification(GPT2Config(num_labels=2, pad_token_id=tokenizer.eos_token_id)),
                     LoraParams(r=8, alpha=32, dropout=0.1, target_modules="auto")).to(on)
    trainable, total = model.get_nb_trainable_parameters()
    train = load_split("train").iloc[:batch]
    encoded = encode_pairs(tokenizer, train["question_1"], train["question_2"], 128)
    inputs = tokenizer.pad(encoded, return_tensors="pt")
    inputs["labels"] = torch.tensor(train["label"].to_numpy())
    inputs = inputs.to(on)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    model.train()
    times = []
    for index in range(steps + 1):  # the first step warms up
        start = clock(on)
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if index:
            times.append(clock(on) - start)
    step = summary(times)["median"]
    return {
        "benchmark": "gpt2-124M step",
        "device": on.type,
        "trainable_params": trainable,
        "total_params": total,
        "batch": batch,
        "tokens_per_pair": round(inputs["attention_mask"].sum().item() / batch, 1),
        "step_seconds": round(step, 4),
        "samples_per_second": round(batch / step, 1),
        "projected_3_epochs_minutes": round(3 * -(-MQP_TRAIN_PAIRS // batch) * step / 60, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def report(result: dict) -> list[str]:
    return [f"GPT-2 124M on {result['device']}, LoRA c_attn+c_proj r=8 ({result['trainable_params']:,} of "
            f"{result['total_params']:,} trainable): {result['step_seconds']} s per step of {result['batch']} pairs x "
            f"{result['tokens_per_pair']} tokens ({result['samples_per_second']} pairs/s), so 3 epochs of MQP take about "
            f"{result['projected_3_epochs_minutes']} min; peak RSS {result['peak_rss_mb']} MB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    run_cli(parser, gpt2_step_time, report)


if __name__ == "__main__":
    main()
