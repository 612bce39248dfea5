"""Reading the train/validation/test splits that the prepare stage wrote."""

from __future__ import annotations

import pandas as pd

from mqp.errors import PipelineError
from mqp.paths import SPLITS, split_csv


def load_split(split: str) -> pd.DataFrame:
    """A prepared split written by the prepare stage."""
    path = split_csv(split)
    if not path.exists():
        raise PipelineError(f"{path} not found: run `dvc repro prepare` first")
    return pd.read_csv(path, dtype={"question_1": str, "question_2": str, "label": int}, keep_default_na=False)


def load_splits() -> dict[str, pd.DataFrame]:
    return {split: load_split(split) for split in SPLITS}
