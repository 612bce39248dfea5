"""The bi-encoder: each question embedded alone, P(similar) = sigmoid(scale * cosine + bias).

A sentence-embedding model already places similar questions close together (the zero-shot
baseline); training the embeddings with LoRA keeps that geometry, where a cross-encoder's fresh
head starts from nothing.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

# The head's starting point: cosine 0.6 is even odds, and the slope is steep enough to train.
INITIAL_SCALE = 15.0
INITIAL_BIAS = -9.0
SIDES = ("1", "2")  # suffixes of the two questions' input columns
# The ranking loss's logits are cosines times this: sentence-transformers' MultipleNegativesRankingLoss default.
RANKING_SCALE = 20.0


def ranking_loss(first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multiple-negatives ranking with hard negatives: each question_1 of a similar pair must rank
    its rewrite above every other question_2 in the batch. The batches hold both pairs of each
    question_1 (QuestionGroupedSampler), so those include its dissimilar rewrite, which doctors wrote
    to look alike (a hard negative), and the other questions' rewrites (easy ones)."""
    anchors = labels.bool()
    if not anchors.any():
        return first.new_zeros(())
    scores = RANKING_SCALE * first[anchors] @ second.T
    return nn.functional.cross_entropy(scores, anchors.nonzero().squeeze(1))


def batch_negatives_loss(first: torch.Tensor, second: torch.Tensor, logit) -> torch.Tensor:
    """The head's BCE on the batch's random pairs: each question_1 against the rewrites of every
    other question_1 in the batch, all labelled dissimilar. Pairs teach the head only hard
    negatives; search also meets unrelated questions, and its verdict needs them scored low too."""
    # A question_1's rows share one embedding (embed_each_once): those pairs are its own, not random.
    own = first @ first.T > 1 - 1e-5
    if own.all():
        return first.new_zeros(())
    logits = logit(first @ second.T)[~own]
    return nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def anchor_loss(trained: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """1 - cosine of each question's trained embedding with the base model's, averaged: it holds
    the questions near where the base model put them. Pairs move a question only relative to its
    own two rewrites; search ranks it against every question, and the base model ranks better."""
    return (1 - (trained * base).sum(-1)).mean()


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """L2-normalised sentence embeddings: the mean of the tokens (how sentence-transformers pools
    MiniLM) or the last real token (for left-to-right models; padding is on the right)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "mean":
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    else:
        last = attention_mask.sum(1).clamp(min=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return nn.functional.normalize(pooled, dim=-1)


class BiEncoder(nn.Module):
    """An encoder (bare or with LoRA) plus a two-number similarity head."""

    def __init__(self, encoder: nn.Module, pooling: str, ranking_weight: float = 0.0, batch_negatives_weight: float = 0.0,
                 anchor_weight: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.ranking_weight = ranking_weight  # train.ranking_weight: the ranking loss beside BCE while training
        self.batch_negatives_weight = batch_negatives_weight  # train.batch_negatives_weight: likewise
        self.anchor_weight = anchor_weight  # train.anchor_weight: likewise (the encoder must be a LoRA PeftModel)
        self.scale = nn.Parameter(torch.tensor(INITIAL_SCALE))
        self.bias = nn.Parameter(torch.tensor(INITIAL_BIAS))

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return pool(self.encoder(**inputs).last_hidden_state, attention_mask, self.pooling)

    def embed_each_once(self, **inputs) -> torch.Tensor:
        """embed(), with a row that repeats within the batch (a question_1 in both its pairs)
        run through the encoder once and its embedding reused: the gradient sums over the uses,
        as it would over copies (dropout aside, which copies would draw apart)."""
        unique, inverse = torch.unique(inputs["input_ids"], dim=0, return_inverse=True)
        if len(unique) == len(inverse):
            return self.embed(**inputs)
        positions = torch.arange(len(inverse), device=inverse.device)
        first = torch.empty(len(unique), dtype=torch.long, device=inverse.device).scatter_(0, inverse, positions)
        return self.embed(**{key: value[first] for key, value in inputs.items()})[inverse]

    def logit(self, cosine: torch.Tensor) -> torch.Tensor:
        return self.scale * cosine + self.bias

    def base_embeddings(self, *sides: dict) -> torch.Tensor:
        """The sides' embeddings by the base model: the LoRA encoder with its adapter off."""
        with torch.no_grad(), self.encoder.disable_adapter():
            return torch.cat([self.embed_each_once(**side) for side in sides])

    def forward(self, labels=None, **inputs) -> SequenceClassifierOutput:
        sides = [{key.removesuffix("_" + side): value for key, value in inputs.items() if key.endswith("_" + side)}
                 for side in SIDES]
        first, second = (self.embed_each_once(**side) for side in sides)
        logit = self.logit((first * second).sum(-1))
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(logit, labels.to(logit.dtype))
            # Training only: evaluation's loss stays the log loss of the probabilities.
            if self.training and self.ranking_weight:
                loss = loss + self.ranking_weight * ranking_loss(first, second, labels)
            if self.training and self.batch_negatives_weight:
                loss = loss + self.batch_negatives_weight * batch_negatives_loss(first, second, self.logit)
            if self.training and self.anchor_weight:
                loss = loss + self.anchor_weight * anchor_loss(torch.cat([first, second]), self.base_embeddings(*sides))
        # Two-class logits whose softmax is sigmoid(logit): the cross-encoder's output shape.
        return SequenceClassifierOutput(loss=loss, logits=torch.stack([-logit / 2, logit / 2], dim=-1))

    def head_state(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale.detach().clone(), "bias": self.bias.detach().clone()}

    def load_head_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.scale.copy_(state["scale"])
            self.bias.copy_(state["bias"])
