"""Experiment tracking: DVCLive always (curves for dvc exp show / dvc plots), W&B when asked."""

from __future__ import annotations

import os

from mqp.errors import PipelineError
from mqp.params import Params
from mqp.paths import DVCLIVE_DIR


def configure_wandb(params: Params) -> bool:
    """Set W&B's environment from logging.wandb; True when a run should be logged."""
    mode = params.logging.wandb
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_PROJECT", params.logging.wandb_project)
    os.environ.setdefault("WANDB_SILENT", "true")
    if mode == "disabled":
        return False
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise PipelineError(
            "logging.wandb is online but WANDB_API_KEY is not set; export it, or use "
            "logging.wandb=offline (sync later with `wandb sync wandb/offline-run-*`)"
        )
    return True


def training_callbacks(params: Params, log_dir=DVCLIVE_DIR, resume: bool = False):
    """Trainer callbacks and report_to list, plus a function that closes the loggers. resume: go
    on logging after the steps already in log_dir (the next member of a soup) instead of starting it anew."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 logs
    # dvcyaml=False: our dvc.yaml declares DVCLive's files itself; never rewritten at run time.
    live = Live(str(log_dir), dvcyaml=False, save_dvc_exp=False, resume=resume) if main_process else None
    callbacks = [DVCLiveCallback(live=live)] if live else []
    report_to = ["wandb"] if configure_wandb(params) else []

    def finish() -> None:
        if live:
            live.end()
        if report_to:
            import wandb

            wandb.finish()

    return callbacks, report_to, finish


def log_comparison(params: Params, metrics_by_model: dict[str, dict]) -> None:
    """With W&B on: a run holding each model's test metrics and the base-vs-LoRA bar chart."""
    if not configure_wandb(params):
        return
    import wandb

    run = wandb.init(project=params.logging.wandb_project, job_type="evaluate", config=params.model_dump())
    rows = [[model, metric, metrics["test"][metric]] for model, metrics in metrics_by_model.items()
            for metric in ("accuracy", "f1", "precision", "recall")]
    table = wandb.Table(data=rows, columns=["model", "metric", "value"])
    accuracy = wandb.Table(data=[[m, v["test"]["accuracy"]] for m, v in metrics_by_model.items()], columns=["model", "accuracy"])
    run.log({
        "test_metrics": table,
        "test_accuracy_by_model": wandb.plot.bar(accuracy, "model", "accuracy", title="Test accuracy: base vs LoRA"),
        **{f"{model}/test_{key}": value for model, metrics in metrics_by_model.items()
           for key, value in metrics["test"].items()},
    })
    run.finish()
