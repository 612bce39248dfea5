"""Ranking figures for retrieval: recall@k, MRR and nDCG of where each query's one relevant item
lands, with 95% intervals and paired tests, all rebuilt from sums so that pooling over folds is exact."""

from __future__ import annotations

import numpy as np
from scipy import stats

from mqp.stats import CONFIDENCE, round6, paired_counts, proportion_ci, summed

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
    items tied on score share the lower rank, mqp.nearest.ranks_of, and a tie is no win).
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
    return round6(max(mean - half, 0.0)), round6(min(mean + half, 1.0))


def ranking_metrics(sums: dict) -> dict:
    """recall@1, recall@5 and the outrank rate with Wilson intervals, MRR and nDCG@10 with t
    intervals, and n: from ranking_sums (or those of several folds added up)."""
    n = sums["n"]
    metrics = {"n": n}
    for name in BINARY_METRICS:
        metrics[name] = round6(sums[name] / n)
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = proportion_ci(sums[name], n)
    for name in GRADED_METRICS:
        metrics[name] = round6(sums[f"{name}_sum"] / n)
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = mean_ci(sums[f"{name}_sum"], sums[f"{name}_sumsq"], n)
    return metrics


def paired_ranking_sums(ranks_a, negatives_a, ranks_b, negatives_b) -> dict:
    """Method A against method B on the same queries, summed: per 0/1 metric the discordant
    counts (this_only: queries only A got), per graded metric the sum and sum of squares of A - B."""
    a, b = ranking_values(ranks_a, negatives_a), ranking_values(ranks_b, negatives_b)
    if len(a["mrr"]) != len(b["mrr"]):
        raise ValueError("paired_ranking_sums needs the ranks of both methods on the same queries")
    sums = {"n": int(len(a["mrr"]))}
    for name in BINARY_METRICS:
        hit_a, hit_b = a[name].astype(bool), b[name].astype(bool)
        sums[f"{name}_this_only"], sums[f"{name}_other_only"] = int(np.sum(hit_a & ~hit_b)), int(np.sum(~hit_a & hit_b))
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
    return {"diff": round6(mean), "diff_ci_low": round6(low), "diff_ci_high": round6(high),
            "t_test_p": float(f"{p_value:.6g}"), "n": int(n)}


def paired_ranking(sums: dict) -> dict:
    """Each metric's paired comparison of A and B from paired_ranking_sums: exact McNemar and
    Tango's interval (paired_counts) for the 0/1 metrics, the paired t-test for MRR and nDCG."""
    n = sums["n"]
    result = {}
    for name in BINARY_METRICS:
        result[name] = paired_counts(sums[f"{name}_this_only"], sums[f"{name}_other_only"], n)
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
        return summed([detail[part][name]["sums"] for detail in details], details[0][part][name]["sums"])

    pooled = {"bank": sum(detail["bank"] for detail in details), "folds": len(details),
              "reference": details[0]["reference"], "methods": {}, "comparisons": {}}
    for method in details[0]["methods"]:
        sums = added("methods", method)
        pooled["methods"][method] = {**ranking_metrics(sums), "sums": sums}
    for method in details[0]["comparisons"]:
        sums = added("comparisons", method)
        pooled["comparisons"][method] = {**paired_ranking(sums), "sums": sums}
    return pooled
