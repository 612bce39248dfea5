"""Scoring question pairs: P(similar) from the model of either architecture (mqp.architectures),
as params.model and params.eval say."""

from __future__ import annotations

import numpy as np

from mqp.architectures import architecture_for
from mqp.params import Params


def score_pairs(model, tokenizer, question_1, question_2, params: Params) -> np.ndarray:
    """P(similar) for each pair."""
    return architecture_for(params).score_pairs(model, tokenizer, question_1, question_2, params)


def score_splits(model, tokenizer, splits: dict, params: Params, names=("validation", "test")) -> dict[str, np.ndarray]:
    """P(similar) for the pairs of each named split."""
    return {name: score_pairs(model, tokenizer, splits[name]["question_1"], splits[name]["question_2"], params)
            for name in names}
