"""95% confidence intervals and paired model comparisons for the test metrics.

Everything a k-fold summary has to pool (accuracy, the paired comparison) is
computed from integer counts, so pooling is exact: sum the per-fold counts and
call the same function again. Only F1 and ROC AUC need the per-pair data, via a
seeded bootstrap, and those are reported per fold.

All returned numbers are plain ``int``/``float`` (JSON-serialisable); interval
bounds and differences are rounded to 6 decimals, p-values to 6 significant
digits (so a very small p-value does not round to 0).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95


def round6(x: float) -> float:
    """Plain float rounded to 6 decimals, so metrics files are JSON-serialisable and stable to diff."""
    return round(float(x), 6)


def proportion_ci(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of successes/n (statsmodels, method='wilson').

    Wilson rather than Wald because it stays inside [0, 1] and keeps its coverage
    for small n and proportions near 0 or 1. Pooled over folds by summing counts.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"proportion_ci needs 0 <= successes <= n and n > 0, got {successes}/{n}")
    low, high = proportion_confint(successes, n, alpha=1 - CONFIDENCE, method="wilson")
    return round6(low), round6(high)


def confusion_counts(labels, predicted) -> dict:
    """{'tp','fp','fn','tn'} as ints from 0/1 arrays: the counts every pooled rate is rebuilt from."""
    y, p = np.asarray(labels), np.asarray(predicted)
    if y.shape != p.shape or not (np.isin(y, (0, 1)).all() and np.isin(p, (0, 1)).all()):
        raise ValueError("confusion_counts needs two 0/1 arrays of the same length")
    y, p = y.astype(bool), p.astype(bool)
    return {"tp": int(np.sum(y & p)), "fp": int(np.sum(~y & p)),
            "fn": int(np.sum(y & ~p)), "tn": int(np.sum(~y & ~p))}


def f1(labels, predicted, axis: int = -1) -> np.ndarray:
    """F1 of 0/1 predictions along `axis`, 0 where it is 0/0 (sklearn's zero_division=0).
    Vectorised: the bootstrap scores all its resamples in one call."""
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    tp = np.sum(y & p, axis=axis)
    wrong = np.sum(y != p, axis=axis)
    denominator = 2 * tp + wrong
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(denominator)), where=denominator > 0)


def roc_auc(labels, scores, axis: int = -1) -> np.ndarray:
    """ROC AUC along `axis` as the Mann-Whitney U statistic of the positives' ranks (ties count
    half, as sklearn's trapezoids do); nan where one class is missing. Vectorised like f1."""
    y = np.moveaxis(np.asarray(labels, dtype=bool), axis, -1)
    ranks = stats.rankdata(np.moveaxis(np.asarray(scores, dtype=np.float64), axis, -1), axis=-1)
    positives = y.sum(axis=-1)
    negatives = y.shape[-1] - positives
    u = np.sum(ranks * y, axis=-1) - positives * (positives + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((positives > 0) & (negatives > 0), u / (positives * negatives), np.nan)


# Resampled values held at once by the bootstrap: resamples x pairs (32 MB of float64; scipy and the
# statistic hold several such arrays, ~300 MB in all), so 1,000 resamples of a large test set are
# scored a batch at a time. The batches draw the same resamples in
# the same order as one call, so the interval is the same (tests/test_stats.py).
BOOTSTRAP_BLOCK = 1 << 22


def bootstrap_ci(statistic: Callable, labels, scores, seed: int,
                 n_resamples: int = 1000, block: int = BOOTSTRAP_BLOCK) -> tuple[float, float]:
    """Seeded 95% percentile bootstrap of statistic(labels, scores), resampling pairs.

    F1 and ROC AUC have no count-based interval, so pairs are resampled together
    (scipy.stats.bootstrap, paired=True, method='percentile'); the seed makes the
    interval reproducible in a DVC pipeline. `statistic` is vectorised like f1 and
    roc_auc (an `axis` argument): all resamples are scored in one call, not 1,000.

    A resample on which the statistic is undefined (nan, e.g. ROC AUC on a one-class
    resample) is left out: the percentiles are taken over the defined resamples only
    (scipy.stats.quantile with nan_policy='omit', the same quantile scipy uses, so
    with no undefined resample this is exactly scipy's interval).
    Returns (nan, nan) when the statistic is undefined on the full sample.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    if np.isnan(statistic(labels, scores)):
        return float("nan"), float("nan")
    with warnings.catch_warnings():  # scipy warns when undefined resamples make its own interval nan
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap((labels, scores), statistic, paired=True, vectorized=True,
                                 method="percentile", n_resamples=n_resamples, batch=max(1, block // labels.size),
                                 confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    tail = (1 - CONFIDENCE) / 2
    low, high = stats.quantile(result.bootstrap_distribution, np.array([tail, 1 - tail]),
                               nan_policy="omit")
    return round6(low), round6(high)


def paired_comparison(correct_a, correct_b) -> dict:
    """Model A vs model B on the same pairs, from per-pair "classified right" booleans.

    Only the discordant pairs carry information about the difference, so this
    reduces the arrays to counts and defers to paired_counts (which is what the
    k-fold summary calls on summed counts).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("paired_comparison needs two 1-D arrays over the same pairs")
    return paired_counts(int(np.sum(a & ~b)), int(np.sum(~a & b)), a.size)


def _tango_z(delta: float, this_only: int, other_only: int, n: int) -> float:
    """Tango's (1998) score statistic for H0: accuracy difference == delta.

    The nuisance parameter (probability of a other_only pair) is its maximum-likelihood
    value under H0, the positive root of qa*p^2 + qb*p + qc = 0. At delta = 0 this is
    the (uncorrected) McNemar z = (this_only - other_only) / sqrt(this_only + other_only).
    It is 0 at the point estimate, including this_only == other_only == 0 where the formula is 0/0.
    """
    excess = this_only - other_only - n * delta
    if excess == 0:
        return 0.0
    qa = 2 * n
    qb = -this_only - other_only + (2 * n - this_only + other_only) * delta
    qc = -other_only * delta * (1 - delta)
    p_other_only = (np.sqrt(qb * qb - 4 * qa * qc) - qb) / (2 * qa)
    return excess / np.sqrt(n * (2 * p_other_only + delta * (1 - delta)))


def _tango_interval(this_only: int, other_only: int, n: int) -> tuple[float, float]:
    """Tango's asymptotic score interval {delta : |z(delta)| <= z_crit}; z is decreasing in delta."""
    z_crit = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    estimate, edge = (this_only - other_only) / n, 1e-9
    low = -1.0 if other_only == n else optimize.brentq(
        lambda d: _tango_z(d, this_only, other_only, n) - z_crit, -1 + edge, estimate, xtol=1e-12)
    high = 1.0 if this_only == n else optimize.brentq(
        lambda d: _tango_z(d, this_only, other_only, n) + z_crit, estimate, 1 - edge, xtol=1e-12)
    return low, high


def paired_counts(this_only: int, other_only: int, n: int) -> dict:
    """Paired accuracy comparison of A and B on the same n pairs, from counts alone.

    this_only = pairs A got right and B wrong, other_only = the reverse, n = all pairs.
    Counts alone make pooling over folds exact: sum them and call again.

    - accuracy_diff = acc(A) - acc(B) = (this_only - other_only) / n.
    - diff_ci_low/high: Tango's (1998, Stat Med 17:891) asymptotic score interval
      for a difference of paired proportions. It needs only (this_only, other_only, n),
      unlike Newcombe's (1998) hybrid score interval, which also needs the count
      of pairs both got right. Being a score interval (the paired analogue of
      Wilson), it stays within [-1, 1], keeps its coverage with few discordant
      pairs where the Wald interval collapses, is finite and non-degenerate when
      this_only == other_only == 0, and at difference 0 its test is McNemar's.
      statsmodels ships no paired-difference interval (checked in 0.15).
    - mcnemar_p: exact (binomial) McNemar p-value, statsmodels mcnemar(exact=True);
      only the discordant cells enter it, so the concordant cells are left 0.
    """
    this_only, other_only, n = int(this_only), int(other_only), int(n)
    if n <= 0:
        raise ValueError(f"paired_counts needs n > 0 pairs, got n={n} (empty test set?)")
    if this_only < 0 or other_only < 0 or this_only + other_only > n:
        raise ValueError(f"need 0 <= this_only, other_only and this_only + other_only <= n, got {this_only}, {other_only}, {n}")
    low, high = _tango_interval(this_only, other_only, n)
    p_value = mcnemar([[0, this_only], [other_only, 0]], exact=True).pvalue
    return {"accuracy_diff": round6((this_only - other_only) / n), "diff_ci_low": round6(low), "diff_ci_high": round6(high),
            "mcnemar_p": float(f"{p_value:.6g}"), "this_only": this_only, "other_only": other_only, "n": n}


PAIRED_COUNTS = ("this_only", "other_only", "n")  # what a paired comparison is rebuilt from


def summed(records: list[dict], keys) -> dict:
    """Several folds' counts added up, key by key: every pooled figure is computed again from these."""
    return {key: sum(record[key] for record in records) for key in keys}


def pooled_paired(comparisons: list[dict]) -> dict:
    """Paired comparisons of several folds pooled: their discordant counts summed, then paired_counts."""
    return paired_counts(**summed(comparisons, PAIRED_COUNTS))
