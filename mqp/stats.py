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


def _r(x: float) -> float:
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
    return _r(low), _r(high)


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


def bootstrap_ci(statistic: Callable, labels, scores, seed: int,
                 n_resamples: int = 1000) -> tuple[float, float]:
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
                                 method="percentile", n_resamples=n_resamples,
                                 confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    tail = (1 - CONFIDENCE) / 2
    low, high = stats.quantile(result.bootstrap_distribution, np.array([tail, 1 - tail]),
                               nan_policy="omit")
    return _r(low), _r(high)


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


def _tango_z(delta: float, a_only: int, b_only: int, n: int) -> float:
    """Tango's (1998) score statistic for H0: accuracy difference == delta.

    The nuisance parameter (probability of a b_only pair) is its maximum-likelihood
    value under H0, the positive root of qa*p^2 + qb*p + qc = 0. At delta = 0 this is
    the (uncorrected) McNemar z = (a_only - b_only) / sqrt(a_only + b_only).
    It is 0 at the point estimate, including a_only == b_only == 0 where the formula is 0/0.
    """
    excess = a_only - b_only - n * delta
    if excess == 0:
        return 0.0
    qa = 2 * n
    qb = -a_only - b_only + (2 * n - a_only + b_only) * delta
    qc = -b_only * delta * (1 - delta)
    p_b_only = (np.sqrt(qb * qb - 4 * qa * qc) - qb) / (2 * qa)
    return excess / np.sqrt(n * (2 * p_b_only + delta * (1 - delta)))


def _tango_interval(a_only: int, b_only: int, n: int) -> tuple[float, float]:
    """Tango's asymptotic score interval {delta : |z(delta)| <= z_crit}; z is decreasing in delta."""
    z_crit = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    estimate, edge = (a_only - b_only) / n, 1e-9
    low = -1.0 if b_only == n else optimize.brentq(
        lambda d: _tango_z(d, a_only, b_only, n) - z_crit, -1 + edge, estimate, xtol=1e-12)
    high = 1.0 if a_only == n else optimize.brentq(
        lambda d: _tango_z(d, a_only, b_only, n) + z_crit, estimate, 1 - edge, xtol=1e-12)
    return low, high


def paired_counts(a_only: int, b_only: int, n: int) -> dict:
    """Paired accuracy comparison of A and B on the same n pairs, from counts alone.

    a_only = pairs A got right and B wrong, b_only = the reverse, n = all pairs.
    Counts alone make pooling over folds exact: sum them and call again.

    - accuracy_diff = acc(A) - acc(B) = (a_only - b_only) / n.
    - diff_ci_low/high: Tango's (1998, Stat Med 17:891) asymptotic score interval
      for a difference of paired proportions. It needs only (a_only, b_only, n),
      unlike Newcombe's (1998) hybrid score interval, which also needs the count
      of pairs both got right. Being a score interval (the paired analogue of
      Wilson), it stays within [-1, 1], keeps its coverage with few discordant
      pairs where the Wald interval collapses, is finite and non-degenerate when
      a_only == b_only == 0, and at difference 0 its test is McNemar's.
      statsmodels ships no paired-difference interval (checked in 0.15).
    - mcnemar_p: exact (binomial) McNemar p-value, statsmodels mcnemar(exact=True);
      only the discordant cells enter it, so the concordant cells are left 0.
    """
    a_only, b_only, n = int(a_only), int(b_only), int(n)
    if n <= 0:
        raise ValueError(f"paired_counts needs n > 0 pairs, got n={n} (empty test set?)")
    if a_only < 0 or b_only < 0 or a_only + b_only > n:
        raise ValueError(f"need 0 <= a_only, b_only and a_only + b_only <= n, got {a_only}, {b_only}, {n}")
    low, high = _tango_interval(a_only, b_only, n)
    p_value = mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue
    return {"accuracy_diff": _r((a_only - b_only) / n), "diff_ci_low": _r(low), "diff_ci_high": _r(high),
            "mcnemar_p": float(f"{p_value:.6g}"), "a_only": a_only, "b_only": b_only, "n": n}


# --- Ranking: where a query's one relevant item lands -------------------------------------------
#
# Each query has one relevant item (MQP: the similar rewrite of a question_1) and one hard negative
# (its dissimilar rewrite); a method is summarised by the 1-based rank of each in the bank. Every
# figure below is rebuilt from sums over queries (counts for the 0/1 metrics, sums and sums of
# squares for the graded ones), so pooling over folds is exact: add the sums, call again.

RECALL_CUTOFFS = (1, 5)  # recall@1, recall@5
NDCG_CUTOFF = 10
BINARY_METRICS = tuple(f"recall_at_{k}" for k in RECALL_CUTOFFS) + ("outrank",)
GRADED_METRICS = ("mrr", f"ndcg_at_{NDCG_CUTOFF}")


def ranking_values(ranks, negative_ranks) -> dict[str, np.ndarray]:
    """Per-query values of each metric, from the relevant item's rank and the hard negative's.

    recall@k: the relevant item is in the top k (with one relevant item, recall@k = hit@k).
    mrr: 1 / rank. ndcg@10: 1 / log2(rank + 1) within the top 10, else 0 (one relevant item, so
    the ideal DCG is 1). outrank: the relevant item ranks above the hard negative (strictly: two
    items tied on score share the lower rank, mqp.retrieval.ranks_of, and a tie is no win).
    """
    ranks, negatives = np.asarray(ranks), np.asarray(negative_ranks)
    if ranks.ndim != 1 or ranks.shape != negatives.shape or ranks.size == 0:
        raise ValueError("ranking_values needs two 1-D arrays of ranks over the same queries")
    if (ranks < 1).any() or (negatives < 1).any():
        raise ValueError("ranks start at 1")
    values = {f"recall_at_{k}": (ranks <= k).astype(np.float64) for k in RECALL_CUTOFFS}
    values["outrank"] = (ranks < negatives).astype(np.float64)
    values["mrr"] = 1.0 / ranks
    values[f"ndcg_at_{NDCG_CUTOFF}"] = np.where(ranks <= NDCG_CUTOFF, 1.0 / np.log2(ranks + 1.0), 0.0)
    return values


def ranking_sums(ranks, negative_ranks) -> dict:
    """What ranking_metrics needs, summed over queries: n, the count of each 0/1 metric, and the
    sum and sum of squares of each graded one."""
    values = ranking_values(ranks, negative_ranks)
    sums = {"n": int(len(values["mrr"]))}
    sums.update({name: int(values[name].sum()) for name in BINARY_METRICS})
    for name in GRADED_METRICS:
        sums[f"{name}_sum"], sums[f"{name}_sumsq"] = float(values[name].sum()), float(np.square(values[name]).sum())
    return sums


def _spread(total: float, total_sq: float, n: int) -> tuple[float, float]:
    """Mean and standard error of the mean (sample sd with n - 1) from a sum and a sum of squares."""
    mean = total / n
    variance = max(total_sq - total * total / n, 0.0) / (n - 1)
    return mean, float(np.sqrt(variance / n))


def mean_ci(total: float, total_sq: float, n: int) -> tuple[float, float]:
    """Student-t 95% interval of a mean of per-query values in [0, 1] (MRR, nDCG), from sums,
    clipped to [0, 1]: scipy.stats.ttest_1samp(...).confidence_interval() on the values."""
    if n < 2:
        raise ValueError(f"mean_ci needs at least 2 values, got {n}")
    mean, error = _spread(total, total_sq, n)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * error
    return _r(max(mean - half, 0.0)), _r(min(mean + half, 1.0))


def ranking_metrics(sums: dict) -> dict:
    """recall@1, recall@5 and the outrank rate with Wilson intervals, MRR and nDCG@10 with t
    intervals, and n: from ranking_sums (or those of several folds added up)."""
    n = sums["n"]
    metrics = {"n": n}
    for name in BINARY_METRICS:
        metrics[name] = _r(sums[name] / n)
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = proportion_ci(sums[name], n)
    for name in GRADED_METRICS:
        metrics[name] = _r(sums[f"{name}_sum"] / n)
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = mean_ci(sums[f"{name}_sum"], sums[f"{name}_sumsq"], n)
    return metrics


def paired_ranking_sums(ranks_a, negatives_a, ranks_b, negatives_b) -> dict:
    """Method A against method B on the same queries, summed: per 0/1 metric the discordant
    counts (a_only: queries only A got), per graded metric the sum and sum of squares of A - B."""
    a, b = ranking_values(ranks_a, negatives_a), ranking_values(ranks_b, negatives_b)
    if len(a["mrr"]) != len(b["mrr"]):
        raise ValueError("paired_ranking_sums needs the ranks of both methods on the same queries")
    sums = {"n": int(len(a["mrr"]))}
    for name in BINARY_METRICS:
        hit_a, hit_b = a[name].astype(bool), b[name].astype(bool)
        sums[f"{name}_a_only"], sums[f"{name}_b_only"] = int(np.sum(hit_a & ~hit_b)), int(np.sum(~hit_a & hit_b))
    for name in GRADED_METRICS:
        diff = a[name] - b[name]
        sums[f"{name}_diff_sum"], sums[f"{name}_diff_sumsq"] = float(diff.sum()), float(np.square(diff).sum())
    return sums


def paired_means(diff_sum: float, diff_sumsq: float, n: int) -> dict:
    """Paired t-test of per-query differences A - B (scipy.stats.ttest_rel on the values), from
    their sum and sum of squares: mean difference, its 95% interval, two-sided p-value.

    The t-test rather than Wilcoxon or the sign test: on IR metrics it agrees with the
    randomisation test and the bootstrap, where those two do not (Smucker, Allan and Carterette,
    CIKM 2007), and it pools over folds from sums.
    """
    if n < 2:
        raise ValueError(f"paired_means needs at least 2 queries, got {n}")
    mean, error = _spread(diff_sum, diff_sumsq, n)
    if error == 0:  # every difference the same: no spread to test against
        p_value, low, high = (1.0 if mean == 0 else 0.0), mean, mean
    else:
        t_value = mean / error
        p_value = 2 * stats.t.sf(abs(t_value), n - 1)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * error
        low, high = mean - half, mean + half
    return {"diff": _r(mean), "diff_ci_low": _r(low), "diff_ci_high": _r(high),
            "t_test_p": float(f"{p_value:.6g}"), "n": int(n)}


def paired_ranking(sums: dict) -> dict:
    """Each metric's paired comparison of A and B from paired_ranking_sums: exact McNemar and
    Tango's interval (paired_counts) for the 0/1 metrics, the paired t-test for MRR and nDCG."""
    n = sums["n"]
    result = {}
    for name in BINARY_METRICS:
        result[name] = paired_counts(sums[f"{name}_a_only"], sums[f"{name}_b_only"], n)
    for name in GRADED_METRICS:
        result[name] = paired_means(sums[f"{name}_diff_sum"], sums[f"{name}_diff_sumsq"], n)
    return result


def retrieval_detail(ranks: dict[str, tuple], reference: str | None, bank: int) -> dict:
    """One fold's retrieval figures: ranks = {method: (relevant ranks, hard-negative ranks)} on
    the same queries; each method's metrics, and the reference method against each other one,
    each with the sums that pool_retrieval adds up."""
    detail = {"bank": int(bank), "methods": {}, "comparisons": {}, "reference": reference}
    for method, (relevant, negative) in ranks.items():
        sums = ranking_sums(relevant, negative)
        detail["methods"][method] = {**ranking_metrics(sums), "sums": sums}
    if reference is not None:
        for method in ranks:
            if method != reference:
                sums = paired_ranking_sums(*ranks[reference], *ranks[method])
                detail["comparisons"][method] = {**paired_ranking(sums), "sums": sums}
    return detail


def pool_retrieval(details: list[dict]) -> dict:
    """Fold details (retrieval_detail) pooled into one: the sums added up and every metric, interval
    and test computed again from them, exactly as on all the folds' queries at once. `bank` becomes
    the folds' total, `folds` their number."""
    if not details:
        raise ValueError("pool_retrieval needs at least one fold")
    references = {detail["reference"] for detail in details}
    methods = [set(detail["methods"]) for detail in details]
    if len(references) > 1 or any(m != methods[0] for m in methods):
        raise ValueError("pool_retrieval needs folds that rank the same methods against the same reference")

    def added(part: str, name: str) -> dict:
        return {key: sum(detail[part][name]["sums"][key] for detail in details)
                for key in details[0][part][name]["sums"]}

    pooled = {"bank": sum(detail["bank"] for detail in details), "folds": len(details),
              "reference": details[0]["reference"], "methods": {}, "comparisons": {}}
    for method in details[0]["methods"]:
        sums = added("methods", method)
        pooled["methods"][method] = {**ranking_metrics(sums), "sums": sums}
    for method in details[0]["comparisons"]:
        sums = added("comparisons", method)
        pooled["comparisons"][method] = {**paired_ranking(sums), "sums": sums}
    return pooled
