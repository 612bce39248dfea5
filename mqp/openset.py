"""The open-set task behind a search's verdict: "has this been answered, and where?"

Each query of a split (a question_1 with one similar and one dissimilar rewrite) is searched twice in
the split's bank of questions, its own question left out:
- with its similar rewrite in the bank: right if the top hit is that rewrite and the verdict says
  "already answered";
- with the similar rewrite removed, its dissimilar rewrite left in as a trap: right if the verdict
  says "no match".

The verdict is "already answered" when the top hit's score reaches a threshold. A top hit is a
maximum over the bank, so its threshold is its own (not the pair head's 0.5): chosen on the
validation split, for a given cost of a false match against a missed one. Every figure is rebuilt from
counts, so pooling over folds adds them up (pool_openset).

A method's verdicts are bounded by its score on the query's own two rewrites: a right "already
answered" needs the similar rewrite's score at the threshold, a right "no match" needs every score
below it, the dissimilar rewrite's included. The verdicts of a perfect ranking (top hits: the
similar rewrite, then the dissimilar one; TopHits.perfect) measure that bound, and what the method's
ranking costs below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mqp.nearest import query_blocks
from mqp.stats import pooled_paired, proportion_ci, summed

# The counts an open-set report keeps; pooling over folds adds them.
COUNTS = ("n", "verdicts", "right", "found", "no_match", "answered", "answered_right")


@dataclass(frozen=True)
class TopHits:
    """Each query's top hit, by bank position and score, in its two searches: `found` with its
    similar rewrite in the bank, `trap` with that rewrite removed."""

    found: np.ndarray
    found_score: np.ndarray
    trap: np.ndarray
    trap_score: np.ndarray
    # Each query's score of its similar and of its dissimilar rewrite.
    similar_score: np.ndarray
    dissimilar_score: np.ndarray

    def perfect(self, relevant, negative) -> TopHits:
        """The top hits of a perfect ranking, with this method's scores: the similar rewrite, then
        (with it removed) the dissimilar one."""
        return TopHits(np.asarray(relevant), self.similar_score, np.asarray(negative), self.dissimilar_score,
                       self.similar_score, self.dissimilar_score)


def top_hits(score_rows, queries, relevant, negative, bank_size: int) -> TopHits:
    """The two searches' top hits, and each query's scores of its similar and dissimilar rewrites.
    score_rows(start, stop) gives the (queries[start:stop] x bank) scores: the bank is scored a block
    of queries at a time, never whole. Ties go to the lower position."""
    queries, relevant, negative = np.asarray(queries), np.asarray(relevant), np.asarray(negative)
    parts = []
    for start, stop in query_blocks(len(queries), bank_size):
        scores = np.array(score_rows(start, stop), dtype=np.float64)
        rows = np.arange(len(scores))
        rewrites = scores[rows, relevant[start:stop]], scores[rows, negative[start:stop]]
        scores[rows, queries[start:stop]] = -np.inf
        found = scores.argmax(axis=1)
        found_score = scores[rows, found]
        scores[rows, relevant[start:stop]] = -np.inf
        trap = scores.argmax(axis=1)
        parts.append((found, found_score, trap, scores[rows, trap], *rewrites))
    return TopHits(*(np.concatenate(part) for part in zip(*parts)))


def verdict_instances(hits: TopHits, relevant) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 2n verdicts of n queries, the n searches with the rewrite first, then the n traps:
    (top hit's score, whether the top hit is the right answer, whether an answer is in the bank)."""
    n = len(hits.found)
    scores = np.concatenate([hits.found_score, hits.trap_score])
    hit_right = np.concatenate([hits.found == np.asarray(relevant), np.zeros(n, dtype=bool)])
    answerable = np.concatenate([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)])
    return scores, hit_right, answerable


def outcomes(hits: TopHits, relevant, threshold: float) -> np.ndarray:
    """Whether each of the 2n verdicts is right: "already answered" (score >= threshold) with the
    right top hit where the bank holds an answer, "no match" where it does not."""
    scores, hit_right, answerable = verdict_instances(hits, relevant)
    answered = scores >= threshold
    return np.where(answerable, answered & hit_right, ~answered)


def choose_threshold(hits: TopHits, relevant, false_match_cost: float) -> float:
    """The threshold on the top hit's score with the least cost on these verdicts: each missed or
    wrongly rejected answer costs 1, each "already answered" with a wrong top hit `false_match_cost`.
    Between two scores, the midpoint; ties go to the higher threshold (fewer false matches)."""
    scores, hit_right, answerable = verdict_instances(hits, relevant)
    order = np.argsort(-scores, kind="stable")
    scores, hit_right, answerable = scores[order], hit_right[order], answerable[order]
    # Accepting the top j verdicts (threshold just under scores[j-1]): j = 0 .. 2n.
    false_matches = np.concatenate([[0], np.cumsum(~hit_right)])
    right_accepted = np.concatenate([[0], np.cumsum(hit_right)])
    cost = (answerable.sum() - right_accepted) + false_match_cost * false_matches
    # Only cut between distinct scores: j where scores[j-1] > scores[j] (or the ends).
    cuttable = np.concatenate([[True], scores[:-1] > scores[1:], [True]])
    cost = np.where(cuttable, cost, np.inf)
    j = int(np.argmin(cost))  # the first minimum: the fewest accepted
    if j == 0:
        return float(scores[0] + 1e-6)
    if j == len(scores):
        return float(scores[-1])
    return float((scores[j - 1] + scores[j]) / 2)


def calibration(hits: TopHits, relevant) -> dict:
    """P(the top hit is the right answer) = sigmoid(slope * score + intercept), fitted on these
    verdicts (validation's) by logistic regression: what search prints as the verdict's P."""
    from sklearn.linear_model import LogisticRegression

    scores, hit_right, _ = verdict_instances(hits, relevant)
    if hit_right.all() or not hit_right.any():
        return {"slope": 0.0, "intercept": float(np.log((hit_right.mean() + 1e-6) / (1 - hit_right.mean() + 1e-6)))}
    fit = LogisticRegression(C=1e6).fit(scores[:, None], hit_right)
    return {"slope": round(float(fit.coef_[0, 0]), 6), "intercept": round(float(fit.intercept_[0]), 6)}


def probability(scores, calibration: dict) -> np.ndarray:
    """P(already answered) of top-hit scores, by a calibration()."""
    return 1 / (1 + np.exp(-(calibration["slope"] * np.asarray(scores, dtype=np.float64) + calibration["intercept"])))


def openset_sums(hits: TopHits, relevant, threshold: float) -> dict:
    """The counts every open-set figure comes from: n queries, 2n verdicts, right ones, the
    searches with the rewrite answered right (`found`), the traps answered "no match", and how
    many verdicts said "already answered" (`answered`), with the right top hit (`answered_right`)."""
    scores, hit_right, answerable = verdict_instances(hits, relevant)
    answered = scores >= threshold
    right = outcomes(hits, relevant, threshold)
    n = len(hits.found)
    return {"n": n, "verdicts": 2 * n, "right": int(right.sum()), "found": int(right[:n].sum()),
            "no_match": int(right[n:].sum()), "answered": int(answered.sum()),
            "answered_right": int((answered & hit_right).sum())}


def openset_metrics(sums: dict) -> dict:
    """Verdict accuracy, its two halves and the precision of "already answered", each with a
    Wilson 95% interval, from openset_sums (or those of several folds added up)."""
    metrics = {"n": sums["n"], "verdicts": sums["verdicts"]}
    for name, count, total in (("verdict_accuracy", "right", "verdicts"), ("found_rate", "found", "n"),
                               ("no_match_rate", "no_match", "n"), ("precision", "answered_right", "answered")):
        metrics[name] = round(sums[count] / sums[total], 6) if sums[total] else None
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = (proportion_ci(sums[count], sums[total])
                                                                if sums[total] else (None, None))
    return metrics


def perfect_ranking(sums: dict) -> dict:
    """The report's entries for the verdicts of a perfect ranking: their counts and accuracy [CI]."""
    low, high = proportion_ci(sums["right"], sums["verdicts"])
    return {"perfect_ranking_verdict_accuracy": round(sums["right"] / sums["verdicts"], 6),
            "perfect_ranking_verdict_accuracy_ci_low": low, "perfect_ranking_verdict_accuracy_ci_high": high,
            "perfect_ranking_sums": sums}


def precision_recall(hits: TopHits, relevant) -> pd.DataFrame:
    """The verdict's precision ("already answered" with the right top hit, of all said) and recall
    (of the n answers in the bank, those found and said) at every threshold, highest first."""
    scores, hit_right, _ = verdict_instances(hits, relevant)
    order = np.argsort(-scores, kind="stable")
    said = np.arange(1, len(scores) + 1)
    right = np.cumsum(hit_right[order])
    last = np.concatenate([scores[order][:-1] > scores[order][1:], [True]])  # one point per distinct score
    return pd.DataFrame({"threshold": np.round(scores[order][last], 6), "precision": np.round(right[last] / said[last], 6),
                         "recall": np.round(right[last] / len(hits.found), 6)})


def top_hit_auroc(hits: TopHits, relevant) -> float | None:
    """ROC AUC of the top hit's score as a test of "the top hit is the right answer", over the 2n
    searches; None if every top hit is right or every one wrong."""
    from sklearn.metrics import roc_auc_score

    scores, hit_right, _ = verdict_instances(hits, relevant)
    if hit_right.all() or not hit_right.any():
        return None
    return round(float(roc_auc_score(hit_right, scores)), 6)


def pool_openset(folds: list[dict]) -> dict:
    """Fold open-set reports ({method: {sums, auroc}}, comparisons {method: {this_only, other_only, n}})
    pooled: counts added, every figure computed again; AUROC as the folds' mean."""
    pooled = {"method": folds[0]["method"], "methods": {}, "comparisons": {}}
    for method in folds[0]["methods"]:
        sums = summed([fold["methods"][method]["sums"] for fold in folds], COUNTS)
        aurocs = [fold["methods"][method]["top_hit_auroc"] for fold in folds]
        auroc = round(float(np.mean(aurocs)), 6) if None not in aurocs else None
        validation = [fold["methods"][method]["validation_verdict_accuracy"] for fold in folds]
        pooled["methods"][method] = {**openset_metrics(sums), "top_hit_auroc": auroc,
                                     "validation_verdict_accuracy_mean": round(float(np.mean(validation)), 6),
                                     "sums": sums}
        if all("perfect_ranking_sums" in fold["methods"][method] for fold in folds):  # older runs lack it
            perfect = summed([fold["methods"][method]["perfect_ranking_sums"] for fold in folds], COUNTS)
            pooled["methods"][method].update(perfect_ranking(perfect))
    for pair in folds[0]["comparisons"]:
        pooled["comparisons"][pair] = pooled_paired([fold["comparisons"][pair] for fold in folds])
    return pooled
