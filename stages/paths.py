"""Every path the stages read or write, in one place (dvc.yaml names the same paths)."""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

RAW_CSV = Path("data/raw/mqp.csv")  # placed by hand offline, or downloaded by prepare
PREPARED_DIR = Path("data/prepared")
SPLITS = ("train", "validation", "test")

ADAPTER_DIR = Path("models/adapter")

METRICS_DIR = Path("metrics")
DATA_METRICS = METRICS_DIR / "data.json"
BASE_METRICS = METRICS_DIR / "base.json"
TRAIN_METRICS = METRICS_DIR / "train.json"
LORA_METRICS = METRICS_DIR / "lora.json"
ZEROSHOT_METRICS = METRICS_DIR / "zeroshot.json"

# Per-model evaluation outputs: predictions and the curves that dvc plots draws.
RESULTS_DIR = Path("results")
DVCLIVE_DIR = Path("dvclive")

# Scratch space for outputs being written (renamed into place when complete).
TMP_DIR = Path(".tmp")


def split_csv(split: str) -> Path:
    return PREPARED_DIR / f"{split}.csv"
