"""The open-set verdict task on hand-made cases: the two searches' top hits, the threshold chosen
for a cost of a false match, the counts every figure comes from, and pooling over folds."""

import numpy as np
import pytest

import mqp.nearest
from mqp.openset import (TopHits, calibration, choose_threshold, openset_metrics, openset_sums, outcomes,
                         pool_openset, probability, top_hit_auroc, top_hits)
from mqp.stats import paired_comparison, paired_counts

# Three queries over a bank of 6: query i is bank item i, its similar rewrite item i + 3, its
# dissimilar rewrite item 5, 5 and 1.
QUERIES, RELEVANT, NEGATIVE = np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([5, 5, 1])
SCORES = np.array([
    # items: 0     1     2     3     4     5
    [9.0, 0.1, 0.2, 0.9, 0.3, 0.4],  # the rewrite first (0.9); without it, item 5 (0.4)
    [0.5, 9.0, 0.6, 0.1, 0.8, 0.7],  # the rewrite first (0.8); without it, item 5 (0.7)
    [0.6, 0.6, 9.0, 0.2, 0.1, 0.3],  # item 0 first (0.6, a tie with item 1: the lower position)
])


def hand_hits() -> TopHits:
    return top_hits(lambda start, stop: SCORES[start:stop], QUERIES, RELEVANT, NEGATIVE, bank_size=6)


def test_top_hits_leave_the_query_and_then_the_rewrite_out():
    hits = hand_hits()
    assert hits.found.tolist() == [3, 4, 0] and hits.found_score.tolist() == [0.9, 0.8, 0.6]
    assert hits.trap.tolist() == [5, 5, 0] and hits.trap_score.tolist() == [0.4, 0.7, 0.6]


def test_top_hits_in_blocks_are_the_whole_matrix_s(monkeypatch):
    whole = hand_hits()
    monkeypatch.setattr(mqp.nearest, "SCORE_BLOCK", 6)  # one query per block
    blocked = hand_hits()
    for name in ("found", "found_score", "trap", "trap_score", "similar_score", "dissimilar_score"):
        assert getattr(blocked, name).tolist() == getattr(whole, name).tolist()


def test_a_perfect_ranking_takes_the_two_rewrites_with_their_scores():
    perfect = hand_hits().perfect(RELEVANT, NEGATIVE)
    assert perfect.found.tolist() == [3, 4, 5] and perfect.found_score.tolist() == [0.9, 0.8, 0.3]
    assert perfect.trap.tolist() == [5, 5, 1] and perfect.trap_score.tolist() == [0.4, 0.7, 0.6]
    # At 0.65: the answers 0.9 and 0.8 said, 0.3 missed; traps 0.4 and 0.6 "no match", 0.7 a false match.
    assert openset_sums(perfect, RELEVANT, 0.65) == {"n": 3, "verdicts": 6, "right": 4, "found": 2, "no_match": 2,
                                                     "answered": 3, "answered_right": 2}


@pytest.mark.parametrize("seed", range(5))
def test_no_ranking_beats_a_perfect_one_at_the_same_threshold(seed):
    """The bound: right verdicts of the real ranking are right verdicts of the perfect one, one by one."""
    rng = np.random.default_rng(seed)
    n = 40
    scores = rng.normal(size=(n, 3 * n))
    queries, relevant, negative = np.arange(n), np.arange(n, 2 * n), np.arange(2 * n, 3 * n)
    scores[queries, relevant] += 1.5
    scores[queries, negative] += 1.0
    hits = top_hits(lambda start, stop: scores[start:stop], queries, relevant, negative, 3 * n)
    perfect = hits.perfect(relevant, negative)
    for threshold in np.linspace(-1, 4, 21):
        real, best = outcomes(hits, relevant, threshold), outcomes(perfect, relevant, threshold)
        assert not (real & ~best).any()
    assert outcomes(hits, relevant, 1.5).sum() < outcomes(perfect, relevant, 1.5).sum()  # the ranking costs here


def test_outcomes_and_counts_by_hand():
    hits = hand_hits()
    # Threshold 0.65: answered 0.9 (right), 0.8 (right), 0.6 no (wrong: an answer exists);
    # traps: 0.4 no match (right), 0.7 answered (a false match), 0.6 no match (right).
    assert outcomes(hits, RELEVANT, 0.65).tolist() == [True, True, False, True, False, True]
    assert openset_sums(hits, RELEVANT, 0.65) == {"n": 3, "verdicts": 6, "right": 4, "found": 2, "no_match": 2,
                                                  "answered": 3, "answered_right": 2}
    metrics = openset_metrics(openset_sums(hits, RELEVANT, 0.65))
    assert (metrics["verdict_accuracy"], metrics["found_rate"], metrics["no_match_rate"], metrics["precision"]) == (
        pytest.approx(4 / 6), pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3))


def test_choose_threshold_minimises_the_cost_of_the_verdicts():
    hits = hand_hits()
    # Sorted scores: 0.9 (right hit), 0.8 (right), 0.7 (trap), 0.6 (wrong hit), 0.6 (trap), 0.4 (trap).
    # Accepting 0.9 and 0.8 only costs 1 (query 3's answer missed) plus nothing else: the least.
    threshold = choose_threshold(hits, RELEVANT, false_match_cost=1.0)
    assert threshold == pytest.approx(0.75)
    assert outcomes(hits, RELEVANT, threshold).sum() == 5
    # Ties are never split: 0.6 and 0.6 go together.
    scores = np.concatenate([hits.found_score, hits.trap_score])
    assert not np.any(np.isclose(scores, choose_threshold(hits, RELEVANT, 0.5)))


def verdict_cost(hits, relevant, threshold, cost):
    sums = openset_sums(hits, relevant, threshold)
    false_matches = sums["answered"] - sums["answered_right"]
    return (sums["n"] - sums["found"]) + cost * false_matches


def random_hits(seed: int):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(40, 80))
    queries, relevant = np.arange(40), np.arange(40, 80)
    scores[np.arange(40), relevant] += 1.5
    return top_hits(lambda start, stop: scores[start:stop], queries, relevant, queries, 80), relevant


@pytest.mark.parametrize("cost", [0.2, 1.0, 5.0])
def test_the_chosen_threshold_costs_least_of_all_thresholds(cost):
    """Brute force: no cut between two scores (or above or below them all) costs less."""
    hits, relevant = random_hits(0)
    values = np.unique(np.concatenate([hits.found_score, hits.trap_score]))
    cuts = np.concatenate([[values[0] - 1], (values[:-1] + values[1:]) / 2, [values[-1] + 1]])
    best = min(verdict_cost(hits, relevant, cut, cost) for cut in cuts)
    assert verdict_cost(hits, relevant, choose_threshold(hits, relevant, cost), cost) == pytest.approx(best)


def test_a_costly_false_match_never_lowers_the_threshold():
    hits, relevant = random_hits(1)
    thresholds = [choose_threshold(hits, relevant, cost) for cost in (0.01, 0.1, 1.0, 10.0)]
    assert thresholds == sorted(thresholds) and thresholds[0] < thresholds[-1]


def test_calibration_is_scikit_learns_logistic_regression_and_monotone():
    from sklearn.linear_model import LogisticRegression

    hits = hand_hits()
    fitted = calibration(hits, RELEVANT)
    scores = np.concatenate([hits.found_score, hits.trap_score])[:, None]
    expected = LogisticRegression(C=1e6).fit(scores, [1, 1, 0, 0, 0, 0])
    assert fitted["slope"] == pytest.approx(expected.coef_[0, 0], rel=1e-4) and fitted["slope"] > 0
    assert probability(0.9, fitted) > probability(0.5, fitted)


def test_top_hit_auroc_is_scikit_learns():
    from sklearn.metrics import roc_auc_score

    hits = hand_hits()
    assert top_hit_auroc(hits, RELEVANT) == pytest.approx(roc_auc_score([1, 1, 0, 0, 0, 0], [0.9, 0.8, 0.6, 0.4, 0.7, 0.6]))


def fold_report(seed: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 30
    scores = rng.normal(size=(n, 2 * n))
    scores[np.arange(n), np.arange(n, 2 * n)] += 2
    queries, relevant = np.arange(n), np.arange(n, 2 * n)
    negative = (relevant + 1) % (2 * n)
    hits = top_hits(lambda start, stop: scores[start:stop], queries, relevant, negative, 2 * n)
    right_a, right_b = outcomes(hits, relevant, 1.0), outcomes(hits, relevant, 2.0)
    report = {"method": "a", "methods": {
        name: {"sums": openset_sums(hits, relevant, threshold), "top_hit_auroc": top_hit_auroc(hits, relevant),
               "validation_verdict_accuracy": 0.5,
               "perfect_ranking_sums": openset_sums(hits.perfect(relevant, negative), relevant, threshold)}
        for name, threshold in (("a", 1.0), ("b", 2.0))},
        "comparisons": {"a-b": paired_comparison(right_a, right_b)}}
    perfect_a = outcomes(hits.perfect(relevant, negative), relevant, 1.0)
    return report, right_a, right_b, perfect_a


def test_pooling_folds_is_computing_on_all_their_verdicts_at_once():
    folds = [fold_report(seed) for seed in (1, 2, 3)]
    pooled = pool_openset([report for report, *_ in folds])
    right_a = np.concatenate([a for _, a, _, _ in folds])
    right_b = np.concatenate([b for _, _, b, _ in folds])
    perfect_a = np.concatenate([perfect for *_, perfect in folds])
    assert pooled["methods"]["a"]["perfect_ranking_verdict_accuracy"] == pytest.approx(perfect_a.mean(), abs=1e-6)
    assert pooled["methods"]["a"]["perfect_ranking_verdict_accuracy"] >= pooled["methods"]["a"]["verdict_accuracy"]
    assert pooled["methods"]["a"]["verdict_accuracy"] == pytest.approx(right_a.mean(), abs=1e-6)
    assert pooled["methods"]["a"]["verdicts"] == 180 and pooled["methods"]["b"]["n"] == 90
    assert pooled["comparisons"]["a-b"] == paired_counts(int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b)), 180)


def test_precision_recall_by_hand():
    """Thresholds at each distinct score, highest first: 0.9 and 0.8 are right top hits, 0.7 a
    trap, the two 0.6s a wrong hit and a trap (one point), 0.4 a trap; 3 answers in the bank."""
    from mqp.openset import precision_recall

    curve = precision_recall(hand_hits(), RELEVANT)
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.7, 0.6, 0.4]
    assert curve["precision"].tolist() == pytest.approx([1, 1, 2 / 3, 2 / 5, 2 / 6], abs=1e-6)
    assert curve["recall"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3], abs=1e-6)
