"""Pipeline training steps outside the Trainer, for the step benchmarks (precision, step_profile,
grouping): params.yaml's model with LoRA on this machine's device, its optimizer, and batches of
real train pairs."""

from __future__ import annotations

from benchmarks.common import synchronize


class TrainingSteps:
    """params.yaml's model with LoRA, its optimizer, and `steps` + 1 batches of train pairs (the
    first to warm up)."""

    def __init__(self, steps: int, grouped: bool = False):
        """grouped: whole question_1 groups in finetune's order (QuestionGroupedSampler), not a
        random sample of pairs."""
        import torch

        from mqp.architectures import base_model
        from mqp.cli import quiet_libraries
        from mqp.lora import with_lora
        from mqp.models import device, load_tokenizer
        from mqp.params import load_params
        from mqp.splits import load_split
        from mqp.training import QuestionGroupedSampler, collator_for, optimizer_for, training_sets

        quiet_libraries()
        self.params = params = load_params()
        self.device = device()
        size = params.train.batch_size
        tokenizer = load_tokenizer(params.model)
        self.model = with_lora(base_model(params, tokenizer), params).to(self.device).train()
        train = load_split("train")
        if grouped:
            questions = train["question_1"].drop_duplicates().sample(n=size // 2 * (steps + 1), random_state=0)
            train = train[train["question_1"].isin(questions)]
        else:
            train = train.sample(n=size * (steps + 1), random_state=0)
        dataset, _ = training_sets(params, tokenizer, {"train": train, "validation": train.iloc[:2]})
        self.collator = collator_for(params, tokenizer)
        order = (QuestionGroupedSampler(list(dataset["group"]), list(dataset["length"]), size, torch.Generator().manual_seed(0))
                 if grouped else range(len(dataset)))
        self.features = [dataset[i] for i in order]
        self.batches = [self.features[i : i + size] for i in range(0, len(self.features), size)]
        self.optimizer = optimizer_for(self.model, params) or torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=params.train.learning_rate)

    def run(self, features, autocast=None) -> float:
        """One step (collate, forward, backward, optimizer), autocast to a dtype if given;
        returns the seconds spent collating."""
        import time

        import torch

        started = time.perf_counter()
        batch = {key: value.to(self.device, non_blocking=True) for key, value in self.collator(features).items()}
        collated = time.perf_counter() - started
        with torch.autocast(self.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        synchronize(self.device)
        return collated
