"""Every path the stages read or write, in one place. dvc.yaml names the same paths, and
tests/test_dvc_yaml.py checks that the two agree."""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")
LOCK_FILE = Path("dvc.lock")  # DVC's record of each stage's deps, params and outputs

RAW_CSV = Path("data/raw/mqp.csv")  # placed by hand offline, or downloaded by prepare
PREPARED_DIR = Path("data/prepared")
SPLITS = ("train", "validation", "test")
# The raw rows prepare dropped: line number, reason and the row as read.
REJECTED_CSV = PREPARED_DIR / "rejected.csv"

ADAPTER_DIR = Path("models/adapter")
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's, inside it: the rank, targets and base model
# The bi-encoder's scale and bias, saved beside its adapter (or its fully fine-tuned encoder).
HEAD_FILE = "similarity_head.safetensors"
# The adapter merged into its base model: a standalone Hugging Face folder (stage export).
MERGED_DIR = Path("models/merged")
# The bi-encoder's similarity calibration inside it: scale, bias and threshold.
CALIBRATION_JSON = "calibration.json"

# The headline figures that `dvc metrics show` prints: a few keys per file, so that the table of
# every file fits a 120-column terminal (mqp.metrics.headline).
METRICS_DIR = Path("metrics")
DATA_METRICS = METRICS_DIR / "data.json"
BASE_METRICS = METRICS_DIR / "base.json"
ZEROSHOT_METRICS = METRICS_DIR / "zeroshot.json"
LORA_METRICS = METRICS_DIR / "lora.json"
# The full reports behind them (counts, intervals, validation, paired tests with numeric p-values),
# tracked in git beside them and read by check, export, kfold and tools.
REPORTS_DIR = METRICS_DIR / "detail"
DATA_REPORT = REPORTS_DIR / "data.json"
BASE_REPORT = REPORTS_DIR / "base.json"
ZEROSHOT_REPORT = REPORTS_DIR / "zeroshot.json"
TRAIN_REPORT = REPORTS_DIR / "train.json"
LORA_REPORT = REPORTS_DIR / "lora.json"

# Per-model test outputs: predictions and the curves that dvc plots draws.
RESULTS_DIR = Path("results")
BASE_RESULTS = RESULTS_DIR / "base"
ZEROSHOT_RESULTS = RESULTS_DIR / "zeroshot"
LORA_RESULTS = RESULTS_DIR / "lora"
# The files inside each of those folders.
PREDICTIONS_CSV = "predictions.csv"
# LoRA's validation pairs too: seed ensembles are chosen on them (python -m mqp sweep --ensemble).
VALIDATION_PREDICTIONS_CSV = "validation_predictions.csv"
ROC_CSV = "roc.csv"
PRECISION_RECALL_CSV = "precision_recall.csv"
TEST_METRICS_CSV = "test_metrics.csv"

# Retrieval. Stage retrieval: ranking metrics on the test fold (the lean file for `dvc metrics`,
# every figure and the sums that pool over folds in the detail file) and each query's ranks.
RETRIEVAL_METRICS = METRICS_DIR / "retrieval.json"
RETRIEVAL_REPORT = REPORTS_DIR / "retrieval.json"
RETRIEVAL_RESULTS = RESULTS_DIR / "retrieval"
RANKS_FILE = "ranks.csv"
# Inside it: the verdict search says (method, fusion weight, threshold, calibration), chosen on
# validation; the index stage reads it.
VERDICT_JSON = RETRIEVAL_RESULTS / "verdict.json"
# And the verdict's precision and recall at every threshold (search's method, test split), for dvc plots.
VERDICT_CURVE_CSV = RETRIEVAL_RESULTS / "verdict_precision_recall.csv"
# Stage index: the question bank embedded by the exported model, read by `python -m mqp search`.
INDEX_DIR = Path("models/index")
# The files inside it: embeddings (one unit row per question), the bank (id, question), what was
# built, and the HNSW graph with retrieval.search: hnsw.
INDEX_EMBEDDINGS = "embeddings.npy"
INDEX_BANK = "bank.csv"
INDEX_META = "index.json"
INDEX_HNSW = "hnsw.faiss"

# DVCLive's training curves (loss, validation metrics per epoch).
DVCLIVE_DIR = Path("dvclive")
DVCLIVE_PLOTS = DVCLIVE_DIR / "plots"

# Scratch space for outputs being written (renamed into place when complete) and checkpoints.
TMP_DIR = Path(".tmp")


def split_csv(split: str) -> Path:
    return PREPARED_DIR / f"{split}.csv"


def checkpoints_dir(run_id: str) -> Path:
    """Trainer checkpoints of one finetune run (removed when it ends)."""
    return TMP_DIR / f"checkpoints-{run_id}"
