"""Two models' answers on the same pairs: which pairs each got right, and their paired comparison,
one run against another or summed over folds; a seed ensemble's answers as one run's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mqp.errors import PipelineError
from mqp.paths import RANKS_FILE, RETRIEVAL_REPORT, RETRIEVAL_RESULTS
from mqp.runs import git_lock, git_report, predictions_at, read_run_output, stage_is_current
from mqp.stats import paired_comparison, pooled_paired, proportion_ci

PAIR = ["question_1", "question_2"]


@dataclass(frozen=True)
class Ensemble:
    """Runs of one fold that differ only in train.seed, answering together: the mean P(similar)."""
    revs: tuple[str, ...]
    threshold: float


def mean_predictions(members: list[pd.DataFrame], threshold: float) -> pd.DataFrame:
    """An ensemble's predictions: each pair's P(similar) averaged over the members, and the answer at threshold."""
    pairs = members[0][PAIR + ["label"]].reset_index(drop=True)
    index = pd.MultiIndex.from_frame(pairs[PAIR])
    probs = np.mean([m.set_index(PAIR)["prob_similar"].reindex(index).to_numpy() for m in members], axis=0)
    if len({len(m) for m in members}) > 1 or np.isnan(probs).any():
        raise PipelineError("the runs of a seed ensemble were tested on other pairs; ensemble runs with the same data params")
    return pairs.assign(prob_similar=probs, predicted=(probs >= threshold).astype(int))


def answers(rev: str | Ensemble, read_predictions=predictions_at) -> pd.DataFrame:
    """A run's predictions, or an ensemble's."""
    if isinstance(rev, Ensemble):
        return mean_predictions([read_predictions(member) for member in rev.revs], rev.threshold)
    return read_predictions(rev)


def right(predictions: pd.DataFrame) -> np.ndarray:
    """Whether each answer was right."""
    return (predictions["predicted"] == predictions["label"]).to_numpy()


def accuracy_with_ci(correct: int, n: int) -> dict:
    """{n, accuracy, accuracy_ci_low, accuracy_ci_high} of `correct` right answers out of n."""
    low, high = proportion_ci(correct, n)
    return {"n": n, "accuracy": round(correct / n, 6), "accuracy_ci_low": low, "accuracy_ci_high": high}


def pooled_accuracy(predictions: list[pd.DataFrame]) -> dict:
    """accuracy_with_ci over every pair of these predictions (several folds')."""
    return accuracy_with_ci(sum(int(right(p).sum()) for p in predictions), sum(len(p) for p in predictions))


def correct_by_pair(predictions: pd.DataFrame) -> pd.Series:
    """Whether the model got each test pair right, indexed by the pair."""
    return pd.Series(right(predictions), index=pd.MultiIndex.from_frame(predictions[PAIR]))


def paired_answers(ours: pd.Series, theirs: pd.Series) -> dict:
    """Two runs' correct_by_pair on the same pairs (in any order): paired_comparison's counts,
    difference, interval and McNemar p."""
    if len(ours) != len(theirs) or not ours.index.isin(theirs.index).all():
        raise PipelineError("the two runs were tested on other pairs; compare runs with the same data params")
    return paired_comparison(ours.to_numpy(), theirs.reindex(ours.index).to_numpy())


def paired_over_folds(revs: list, reference_revs: list, read_predictions=predictions_at) -> dict:
    """A configuration against the reference on the same pairs of every fold: the discordant
    counts summed over the folds, then the paired difference, its interval and McNemar p."""
    folds = []
    for fold, (rev, reference_rev) in enumerate(zip(revs, reference_revs)):
        try:
            folds.append(paired_answers(correct_by_pair(answers(rev, read_predictions)),
                                        correct_by_pair(answers(reference_rev, read_predictions))))
        except PipelineError as error:
            raise PipelineError(f"fold {fold}: {error}") from None
    return pooled_paired(folds)


# --- search: each test query's hit or verdict, paired query by query

def retrieval_ranks(rev) -> pd.DataFrame | None:
    """A run's results/retrieval/ranks.csv (each test query's ranks and verdicts); None for a run that
    stopped before the retrieval stage (its ranks are its baseline's), and for an ensemble (its seeds'
    embeddings are not averaged)."""
    if isinstance(rev, Ensemble) or not stage_is_current(git_lock(rev), "retrieval"):
        return None
    try:
        return read_run_output(rev, RETRIEVAL_RESULTS / RANKS_FILE, lambda source: pd.read_csv(source, keep_default_na=False))
    except FileNotFoundError:
        return None
def search_hits_at(rev) -> pd.Series | None:
    """Whether LoRA's search ranked each test query's similar rewrite first (recall@1), by query."""
    ranks = retrieval_ranks(rev)
    return None if ranks is None else (ranks["lora_rank_similar"] == 1).set_axis(ranks["query"])
def search_verdicts_at(rev) -> pd.Series | None:
    """Whether each test verdict of the run's search method (retrieval.method) was right, two per
    query: with its rewrite in the bank, then without; None for runs without verdicts."""
    if isinstance(rev, Ensemble):
        return None
    method = ((git_report(rev, RETRIEVAL_REPORT) or {}).get("openset") or {}).get("method")
    ranks = retrieval_ranks(rev) if method else None
    if ranks is None or f"{method}_verdict_found" not in ranks:
        return None
    return pd.concat([ranks[f"{method}_verdict_{half}"].astype(bool).set_axis(ranks["query"] + f" ({half})")
                      for half in ("found", "no_match")])
def paired_search(revs: list, reference_revs: list, read_hits=search_hits_at, name: str = "recall_at_1") -> dict:
    """A configuration's pooled search figure `name` (recall@1, or the verdict accuracy) [95% CI] over
    every fold's queries, and its paired difference with the reference's on the same queries; {} where
    a run of either has none."""
    hits, reference_hits = [read_hits(rev) for rev in revs], [read_hits(rev) for rev in reference_revs]
    if any(h is None for h in hits + reference_hits):
        return {}
    ours = pd.concat(hits)
    theirs = pd.concat([r.reindex(h.index) for h, r in zip(hits, reference_hits)])
    if theirs.isna().any():
        raise PipelineError("the two configurations' searches ran on other queries; compare configurations "
                            "with the same data params")
    low, high = proportion_ci(int(ours.sum()), len(ours))
    versus = paired_comparison(ours.to_numpy(), theirs.to_numpy(dtype=bool))
    return {name: round(float(ours.mean()), 6), f"{name}_ci_low": low, f"{name}_ci_high": high,
            f"vs_reference_{name}_diff": versus["accuracy_diff"], f"vs_reference_{name}_mcnemar_p": versus["mcnemar_p"]}
