"""Spec of mqp.stats: intervals and paired tests checked against independent references."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar

from mqp.stats import CONFIDENCE, bootstrap_ci, confusion_counts, f1, paired_comparison, paired_counts, proportion_ci, roc_auc


def wilson_closed_form(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) score interval written out:
    (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


# ---------------------------------------------------------------- Wilson interval

@pytest.mark.parametrize("k, n", [(81, 263), (0, 10), (10, 10), (5, 7), (412, 500)])
def test_wilson_matches_closed_form_and_scipy(k, n):
    low, high = proportion_ci(k, n)
    assert type(low) is float and type(high) is float
    for ref_low, ref_high in (wilson_closed_form(k, n),
                              stats.binomtest(k, n).proportion_ci(CONFIDENCE, method="wilson")):
        assert low == pytest.approx(ref_low, abs=1e-6)
        assert high == pytest.approx(ref_high, abs=1e-6)


def test_wilson_textbook_value():
    assert proportion_ci(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)


@pytest.mark.parametrize("k, n", [(0, 0), (3, 2), (-1, 5)])
def test_proportion_ci_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="n > 0"):
        proportion_ci(k, n)


# ---------------------------------------------------------------- confusion counts

def test_confusion_counts_hand_made():
    labels = [1, 1, 0, 0, 1, 0, 1]
    predicted = np.array([1, 0, 0, 1, 1, 0, 0])
    counts = confusion_counts(labels, predicted)
    assert counts == {"tp": 2, "fp": 1, "fn": 2, "tn": 2}
    assert all(type(v) is int for v in counts.values())


def test_confusion_counts_rejects_non_binary():
    with pytest.raises(ValueError, match="0/1"):
        confusion_counts([0, 1, 2], [0, 1, 1])


# ---------------------------------------------------------------- McNemar

@pytest.mark.parametrize("b, c", [(10, 2), (0, 5), (7, 7), (3, 0), (25, 12), (1, 30)])
def test_exact_mcnemar_matches_binomial_test(b, c):
    expected = stats.binomtest(min(b, c), b + c, 0.5).pvalue
    assert paired_counts(b, c, 100)["mcnemar_p"] == pytest.approx(expected, rel=1e-5)


def test_exact_mcnemar_equal_discordant_is_one():
    assert paired_counts(7, 7, 30)["mcnemar_p"] == 1.0


# ---------------------------------------------------------------- paired-difference interval (Tango)

# R 4.6.1, PropCIs 0.3.0: scoreci.mp(other_only, this_only, n)$conf.int (PropCIs estimates
# (2nd - 1st)/n, hence the swapped arguments), at 95%.
PROPCIS = [
    (25, 12, 200, 0.005635504722595221, 0.12694109946489335),
    (2, 9, 20, -0.60163156986236577, -0.027414342761039694),
    (10, 3, 50, -0.0014977478981018086, 0.28547489047050478),
    (0, 0, 14, -0.21531081199645996, 0.21531075239181519),
    (1, 0, 14, -0.15926158428192136, 0.31468707748821806),
    (14, 0, 14, 0.56937837600708008, 1.0),
    (0, 14, 14, -1.0, -0.56937843561172485),
    (1, 1, 2, -0.81093764305114746, 0.81093758344650269),
]


@pytest.mark.parametrize("this_only, other_only, n, low, high", PROPCIS)
def test_paired_interval_matches_r_propcis(this_only, other_only, n, low, high):
    result = paired_counts(this_only, other_only, n)
    assert result["diff_ci_low"] == pytest.approx(low, abs=2e-6)  # R bisects to ~1e-7
    assert result["diff_ci_high"] == pytest.approx(high, abs=2e-6)


def test_paired_interval_published_example():
    """Bentur et al. (2009) table (1, 1, 7, 12), the paired example of Fagerland, Lydersen & Laake
    (2014): Tango interval -0.286 (-0.517 to -0.026), as given in R ratesci's notes (checked there
    against PropCIs)."""
    result = paired_counts(1, 7, 21)
    assert result["accuracy_diff"] == pytest.approx(-0.285714, abs=1e-6)
    assert (round(result["diff_ci_low"], 3), round(result["diff_ci_high"], 3)) == (-0.517, -0.026)


def test_paired_interval_agrees_with_uncorrected_mcnemar():
    """Tango's score test at difference 0 is McNemar's z, so 0 lies outside the 95% interval
    exactly when the uncorrected asymptotic McNemar test rejects at 5%."""
    for n in range(1, 13):
        for this_only in range(n + 1):
            for other_only in range(1 if this_only == 0 else 0, n + 1 - this_only):
                result = paired_counts(this_only, other_only, n)
                excludes_zero = result["diff_ci_low"] > 0 or result["diff_ci_high"] < 0
                table = [[0, this_only], [other_only, 0]]
                rejects = mcnemar(table, exact=False, correction=False).pvalue < 0.05
                assert excludes_zero == rejects, (this_only, other_only, n)


def test_paired_interval_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (100, 400, 1600, 6400):
        result = paired_counts(n // 10, n // 20, n)  # A right/B wrong on 10%, the reverse on 5%
        assert result["accuracy_diff"] == pytest.approx(0.05)
        assert result["diff_ci_low"] < result["accuracy_diff"] < result["diff_ci_high"]
        widths.append(result["diff_ci_high"] - result["diff_ci_low"])
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == len(widths)
    assert widths[-1] < widths[0] / 7  # ~ 1/sqrt(n): 64x the pairs, ~1/8 the width


def test_no_discordant_pairs():
    result = paired_counts(0, 0, 50)
    assert result["accuracy_diff"] == 0.0 and result["mcnemar_p"] == 1.0
    assert math.isfinite(result["diff_ci_low"]) and math.isfinite(result["diff_ci_high"])
    assert -1 < result["diff_ci_low"] < 0 < result["diff_ci_high"] < 1
    assert result["diff_ci_low"] == -result["diff_ci_high"]


def test_paired_counts_rejects_empty_and_impossible():
    with pytest.raises(ValueError, match="n > 0"):
        paired_counts(0, 0, 0)
    with pytest.raises(ValueError, match="this_only \\+ other_only <= n"):
        paired_counts(6, 5, 10)


# ---------------------------------------------------------------- paired comparison and pooling

def test_paired_comparison_hand_made():
    correct_a = [True, True, False, False, True, True]
    correct_b = np.array([True, False, True, False, False, True])
    result = paired_comparison(correct_a, correct_b)
    assert (result["this_only"], result["other_only"], result["n"]) == (2, 1, 6)
    assert result["accuracy_diff"] == pytest.approx(1 / 6, abs=1e-6)
    assert result == paired_counts(2, 1, 6)


def test_pooling_counts_equals_concatenated_arrays():
    rng = np.random.default_rng(7)
    folds = [(rng.random(n) < 0.8, rng.random(n) < 0.7) for n in (57, 61, 49)]
    per_fold = [paired_comparison(a, b) for a, b in folds]
    pooled = paired_counts(*(sum(f[k] for f in per_fold) for k in ("this_only", "other_only", "n")))
    concatenated = paired_comparison(np.concatenate([a for a, _ in folds]),
                                     np.concatenate([b for _, b in folds]))
    assert pooled == concatenated
    assert json.loads(json.dumps(pooled)) == pooled
    assert {type(v) for v in pooled.values()} <= {int, float}


# ---------------------------------------------------------------- bootstrap

@pytest.fixture(scope="module")
def sample():
    """200 made-up pairs: labels, a positive-class probability that is informative but noisy, and
    the thresholded predictions."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(0.35 * labels + rng.uniform(0, 0.65, 200), 0, 1)
    return labels, probs, (probs >= 0.5).astype(int)


def test_vectorised_f1_and_auc_equal_sklearns_row_by_row():
    """Each row of a 2-D input is scored as sklearn scores it alone, ties and zero division
    included (rounded probabilities make many ties)."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, (40, 30))
    probs = np.round(np.clip(0.3 * labels + rng.uniform(0, 0.7, labels.shape), 0, 1), 1)
    predicted = (probs >= 0.5).astype(int)
    predicted[0] = 0  # no predicted positive: F1 0/0
    assert f1(labels, predicted) == pytest.approx([f1_score(y, p, zero_division=0) for y, p in zip(labels, predicted)])
    assert roc_auc(labels, probs) == pytest.approx([roc_auc_score(y, p) for y, p in zip(labels, probs)])
    assert roc_auc(labels.T, probs.T, axis=0) == pytest.approx(roc_auc(labels, probs))


def test_vectorised_auc_is_nan_without_both_classes():
    assert np.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert roc_auc([[0, 0], [0, 1]], [[0.1, 0.2], [0.1, 0.2]]) == pytest.approx([np.nan, 1.0], nan_ok=True)


def test_bootstrap_contains_full_sample_f1_and_auc(sample):
    labels, probs, predicted = sample
    for statistic, scores in ((f1, predicted), (roc_auc, probs)):
        low, high = bootstrap_ci(statistic, labels, scores, seed=1, n_resamples=300)
        assert low < statistic(labels, scores) < high
        assert 0 <= low and high <= 1 and high - low < 0.25


def test_bootstrap_is_seeded(sample):
    labels, probs, _ = sample
    first = bootstrap_ci(roc_auc, labels, probs, seed=3, n_resamples=60)
    assert bootstrap_ci(roc_auc, labels, probs, seed=3, n_resamples=60) == first
    assert bootstrap_ci(roc_auc, labels, probs, seed=4, n_resamples=60) != first


def test_bootstrap_is_scipys_percentile_interval(sample):
    """The same interval as scipy's own bootstrap of sklearn's F1, resample by resample."""
    labels, _, predicted = sample
    reference = stats.bootstrap((labels, predicted), lambda y, p: f1_score(y, p, zero_division=0),
                                paired=True, vectorized=False, method="percentile", n_resamples=500,
                                rng=np.random.default_rng(11)).confidence_interval
    assert bootstrap_ci(f1, labels, predicted, seed=11, n_resamples=500) == pytest.approx(
        (reference.low, reference.high), abs=1e-6)


def test_bootstrap_in_batches_gives_the_same_interval(sample):
    """A block of a few pairs' worth scores the resamples a handful at a time (memory bounded for a
    large test set): the same resamples, the same interval, to the last digit."""
    labels, probs, predicted = sample
    for statistic, scores in ((f1, predicted), (roc_auc, probs)):
        whole = bootstrap_ci(statistic, labels, scores, seed=5, n_resamples=200)
        assert bootstrap_ci(statistic, labels, scores, seed=5, n_resamples=200, block=7 * len(labels)) == whole


def test_bootstrap_one_class_sample_gives_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = bootstrap_ci(roc_auc, [1, 1, 1, 1], [0.2, 0.4, 0.6, 0.8], seed=0)
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_skips_one_class_resamples():
    """8 pairs with 2 positives: about a tenth of the resamples hold one class and are left out."""
    labels = [0, 1, 0, 0, 1, 0, 0, 0]
    probs = [0.1, 0.7, 0.3, 0.6, 0.4, 0.2, 0.5, 0.8]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = bootstrap_ci(roc_auc, labels, probs, seed=0, n_resamples=100)
    assert 0 <= low < roc_auc_score(labels, probs) < high <= 1
