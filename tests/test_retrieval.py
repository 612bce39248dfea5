"""mqp.nearest, mqp.banks, mqp.ranking and the ranking statistics of mqp.stats, on hand-made embeddings and ranks: exact
search and ranks where the answer is known, the metrics against scikit-learn, scipy and statsmodels
or by hand, pooling over folds, BM25, the HNSW index against exact search, and question banks
good and bad."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import ndcg_score
from statsmodels.stats.proportion import proportion_confint

from mqp.errors import PipelineError
from mqp.architectures.bi_encoder import probability
from mqp.banks import Index, drop_lines, load_index, mqp_bank, read_bank_csv, save_index
from mqp.nearest import build_hnsw, hnsw_top_k, ranks_of, recall_at_k, top_k
from mqp.ranking import bm25_scorer, ranking_task
from mqp.ranking_metrics import (mean_ci, paired_means, paired_ranking, paired_ranking_sums, pool_retrieval, ranking_metrics,
                                 ranking_sums, ranking_values, retrieval_detail)
from mqp.stats import paired_counts


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def circle(degrees) -> np.ndarray:
    """Unit vectors in the plane at these angles: their cosine with angle 0 falls as the angle grows."""
    radians = np.deg2rad(degrees)
    return unit(np.stack([np.cos(radians), np.sin(radians)], axis=1))


# --- exact search and ranks ---------------------------------------------------------------------


def test_top_k_orders_the_bank_by_cosine():
    bank = circle([50, 10, 170, 30, 90])  # from the query at 0 degrees: 10, 30, 50, 90, 170
    scores, positions = top_k(bank, circle([0]), 3)
    assert positions.tolist() == [[1, 3, 0]]
    assert scores[0] == pytest.approx(np.cos(np.deg2rad([10, 30, 50])))


def test_top_k_of_many_queries_in_blocks(monkeypatch):
    """Queries searched in blocks (a large bank) give what one matrix product gives."""
    import mqp.nearest

    rng = np.random.default_rng(0)
    bank, queries = unit(rng.standard_normal((40, 8))), unit(rng.standard_normal((9, 8)))
    whole = top_k(bank, queries, 5)
    monkeypatch.setattr(mqp.nearest, "SCORE_BLOCK", 80)  # 2 queries per block
    blocked = top_k(bank, queries, 5)
    assert np.array_equal(whole[1], blocked[1]) and whole[0] == pytest.approx(blocked[0], abs=1e-6)
    expected = np.argsort(-(queries @ bank.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(whole[1], expected)


def test_top_k_ties_go_to_the_lower_position_and_k_is_capped():
    bank = circle([20, 0, 20, 0])
    scores, positions = top_k(bank, circle([0]), 10)
    assert positions.tolist() == [[1, 3, 0, 2]] and scores.shape == (1, 4)
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k(bank, circle([0]), 0)


def test_ranks_of_counts_ties_against_the_item():
    scores = np.array([[0.9, 0.5, 0.5, 0.1],
                       [0.2, 0.2, 0.2, 0.2],
                       [-np.inf, 0.3, 0.8, 0.4]])
    assert ranks_of(scores, [0, 1, 3]).tolist() == [1, 4, 2]
    assert ranks_of(scores, [2, 0, 2]).tolist() == [3, 4, 1]


def mqp_pairs(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["question_1", "question_2", "label"])


def test_ranking_task_of_mqp_shaped_pairs():
    """Each question_1 with one rewrite of each label is a query; the bank is every distinct
    question; a question_1 without both rewrites is skipped, and counted."""
    pairs = mqp_pairs([("a", "a+", 1), ("a", "a-", 0), ("b", "b+", 1), ("b", "b-", 0),
                       ("c", "c+", 1), ("c", "a-", 0), ("d", "d+", 1)])
    task = ranking_task(pairs)
    assert task.bank == ["a", "a+", "a-", "b", "b+", "b-", "c", "c+", "d", "d+"]
    bank = np.array(task.bank)
    assert bank[task.queries].tolist() == ["a", "b", "c"]
    assert bank[task.relevant].tolist() == ["a+", "b+", "c+"] and bank[task.negative].tolist() == ["a-", "b-", "a-"]
    assert task.skipped == 1


def test_ranking_task_ranks_leave_the_query_out():
    """Hand-made embeddings with known ranks: the query itself (cosine 1) never counts."""
    pairs = mqp_pairs([("q1", "s1", 1), ("q1", "n1", 0), ("q2", "s2", 1), ("q2", "n2", 0)])
    task = ranking_task(pairs)  # bank: n1, n2, q1, q2, s1, s2
    angle = {"q1": 0, "s1": 30, "n1": 10, "q2": 100, "s2": 105, "n2": 180}
    vectors = circle([angle[text] for text in task.bank])
    relevant, negative = task.ranks(vectors[task.queries] @ vectors.T)
    # q1 at 0: n1 (10 away), s1 (30), q2 (100), s2 (105), n2 (180).
    # q2 at 100: s2 (5 away), s1 (70), n2 (80), n1 (90), q1 (100).
    assert relevant.tolist() == [2, 1] and negative.tolist() == [1, 3]


def test_ranking_task_needs_two_queries():
    with pytest.raises(PipelineError, match="only 1 test question_1s have one similar and one dissimilar"):
        ranking_task(mqp_pairs([("a", "a+", 1), ("a", "a-", 0), ("b", "b+", 1)]))


# --- ranking metrics ----------------------------------------------------------------------------

RANKS = np.array([1, 3, 2, 12, 1, 7, 5, 1])
NEGATIVES = np.array([2, 1, 9, 3, 4, 8, 5, 6])


def test_ranking_values_by_hand():
    values = ranking_values(RANKS, NEGATIVES)
    assert values["recall_at_1"].tolist() == [1, 0, 0, 0, 1, 0, 0, 1]
    assert values["recall_at_5"].tolist() == [1, 1, 1, 0, 1, 0, 1, 1]
    assert values["outrank"].tolist() == [1, 0, 1, 0, 1, 1, 0, 1]  # rank 5 tied with 5 is no win
    assert values["mrr"].mean() == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 12 + 1 + 1 / 7 + 1 / 5 + 1) / 8)


def test_ndcg_matches_scikit_learn():
    """One relevant item per query: sklearn's nDCG@10 of a score list that puts it at that rank."""
    bank = 15
    expected = []
    for rank in RANKS:
        relevance = np.zeros((1, bank))
        relevance[0, rank - 1] = 1
        expected.append(ndcg_score(relevance, np.arange(bank, 0, -1)[None, :], k=10))
    assert ranking_values(RANKS, NEGATIVES)["ndcg_at_10"] == pytest.approx(expected)


def test_ranking_metrics_intervals_match_statsmodels_and_scipy():
    metrics = ranking_metrics(ranking_sums(RANKS, NEGATIVES))
    values = ranking_values(RANKS, NEGATIVES)
    assert metrics["n"] == 8 and metrics["recall_at_5"] == 0.75
    low, high = proportion_confint(6, 8, method="wilson")
    assert (metrics["recall_at_5_ci_low"], metrics["recall_at_5_ci_high"]) == pytest.approx((low, high), abs=1e-6)
    interval = scipy_stats.ttest_1samp(values["mrr"], 0).confidence_interval()
    assert metrics["mrr"] == pytest.approx(values["mrr"].mean(), abs=1e-6)
    assert (metrics["mrr_ci_low"], metrics["mrr_ci_high"]) == pytest.approx((interval.low, interval.high), abs=1e-6)


def test_mean_ci_stays_within_zero_and_one():
    values = np.array([1.0] * 9 + [0.5])
    assert mean_ci(values.sum(), np.square(values).sum(), 10)[1] == 1.0
    assert mean_ci(3.0, 3.0, 3) == (1.0, 1.0)  # no spread


def test_paired_means_is_scipys_paired_t_test():
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50) * 0.8
    result = paired_means((a - b).sum(), np.square(a - b).sum(), 50)
    reference = scipy_stats.ttest_rel(a, b)
    interval = reference.confidence_interval()
    assert result["t_test_p"] == pytest.approx(reference.pvalue, rel=1e-5)
    assert (result["diff"], result["diff_ci_low"], result["diff_ci_high"]) == pytest.approx(
        ((a - b).mean(), interval.low, interval.high), abs=1e-6)


def test_paired_means_without_spread():
    assert paired_means(0.0, 0.0, 5)["t_test_p"] == 1.0
    assert paired_means(1.0, 0.2, 5) == {"diff": 0.2, "diff_ci_low": 0.2, "diff_ci_high": 0.2, "t_test_p": 0.0, "n": 5}


def test_paired_ranking_by_hand():
    """A finds the relevant item first on queries 1 and 3, B on query 2: McNemar on those counts."""
    ranks_a, ranks_b = np.array([1, 2, 1, 1]), np.array([3, 1, 2, 1])
    negatives = np.array([5, 5, 5, 5])
    sums = paired_ranking_sums(ranks_a, negatives, ranks_b, negatives)
    assert (sums["recall_at_1_this_only"], sums["recall_at_1_other_only"]) == (2, 1)
    assert sums["mrr_diff_sum"] == pytest.approx((1 - 1 / 3) + (1 / 2 - 1) + (1 - 1 / 2) + 0)
    result = paired_ranking(sums)
    assert result["recall_at_1"] == paired_counts(2, 1, 4)
    assert result["mrr"]["diff"] == pytest.approx((2 / 3 - 1 / 2 + 1 / 2) / 4, abs=1e-6)


def flat(figures: dict) -> dict:
    """{metric: value} and {metric: {figure: value}} as one level, for pytest.approx."""
    return {(metric, key): value for metric, result in figures.items()
            for key, value in (result.items() if isinstance(result, dict) else [("", result)])}


def test_pool_retrieval_is_the_detail_of_all_queries():
    """Two folds pooled give what one fold of all their queries gives; MRR by hand."""
    fold_1 = {"lora": ([1, 2], [2, 1]), "bm25": ([3, 1], [1, 4])}
    fold_2 = {"lora": ([1, 4], [5, 2]), "bm25": ([1, 2], [2, 1])}
    details = [retrieval_detail(fold, "lora", bank=10) for fold in (fold_1, fold_2)]
    pooled = pool_retrieval(details)
    together = retrieval_detail({m: tuple(fold_1[m][i] + fold_2[m][i] for i in (0, 1)) for m in fold_1}, "lora", 20)
    assert pooled["methods"]["lora"]["mrr"] == (1 + 1 / 2 + 1 + 1 / 4) / 4
    assert pooled["folds"] == 2 and pooled["bank"] == 20
    for part in ("methods", "comparisons"):
        for name, figures in together[part].items():
            assert pooled[part][name].pop("sums") == pytest.approx(figures.pop("sums"))
            assert flat(pooled[part][name]) == pytest.approx(flat(figures))


def test_pool_retrieval_needs_the_same_methods():
    one = retrieval_detail({"lora": ([1, 2], [2, 1]), "bm25": ([1, 2], [2, 1])}, "lora", 5)
    other = retrieval_detail({"lora": ([1, 2], [2, 1])}, "lora", 5)
    with pytest.raises(ValueError, match="same methods"):
        pool_retrieval([one, other])


def test_retrieval_detail_without_a_reference_has_no_comparisons():
    detail = retrieval_detail({"zeroshot": ([1, 2], [2, 1])}, None, 5)
    assert detail["comparisons"] == {} and detail["methods"]["zeroshot"]["mrr"] == 0.75


# --- BM25, HNSW, calibration --------------------------------------------------------------------


def test_bm25_ranks_shared_words_first():
    bank = ["What helps a migraine?", "Is fever contagious?", "Migraine with fever: what helps?", "the and of"]
    scores = bm25_scorer(bank)(["migraine fever", "the of"])
    assert np.argmax(scores[0]) == 2 and scores[0][1] > 0 and scores[0][3] == 0
    assert (scores[1] == 0).all()  # stopwords only


def test_bm25_ranks_a_block_of_queries_at_a_time_as_the_whole_matrix(monkeypatch):
    """The retrieval stage's BM25 scores a block of queries at a time (a large split's queries x bank
    would not fit): the ranks are those of the whole matrix."""
    import mqp.nearest
    from stages.retrieval import bm25_rows

    pairs = mqp_pairs([(f"what helps {topic} pain", f"how to ease {topic} pain", 1) for topic in ("knee", "back", "neck", "tooth")]
                      + [(f"what helps {topic} pain", f"is {topic} pain a sign of flu", 0) for topic in ("knee", "back", "neck", "tooth")])
    task = ranking_task(pairs)
    whole = task.ranks(bm25_scorer(task.bank)([task.bank[i] for i in task.queries]))
    monkeypatch.setattr(mqp.nearest, "SCORE_BLOCK", len(task.bank))  # one query per block
    assert len(mqp.nearest.query_blocks(len(task.queries), len(task.bank))) == len(task.queries) == 4
    blocked = task.ranks_by(bm25_rows(task))
    assert [part.tolist() for part in blocked] == [part.tolist() for part in whole]


def test_hnsw_finds_the_exact_neighbours():
    rng = np.random.default_rng(0)
    bank, queries = unit(rng.standard_normal((500, 16))), unit(rng.standard_normal((20, 16)))
    exact_scores, exact = top_k(bank, queries, 10)
    scores, approximate = hnsw_top_k(build_hnsw(bank, 16, 80), queries, 10, ef_search=200)
    assert recall_at_k(approximate, exact) >= 0.95
    assert scores[:, 0] == pytest.approx(exact_scores[:, 0], abs=1e-5)
    assert recall_at_k(exact[:, ::-1], exact) == 1.0 and recall_at_k(exact[:1], exact[1:2]) < 1


def test_probability_is_the_calibrated_sigmoid():
    calibration = {"scale": 10.0, "bias": -6.0, "threshold": 0.5}
    assert probability([0.6, 0.8], calibration) == pytest.approx([0.5, 1 / (1 + np.exp(-2.0))])


# --- banks and the index on disk ----------------------------------------------------------------


def test_index_round_trip(tmp_path):
    index = Index(circle([0, 45, 90]), ["a", "b", "c"], ["7", "8", "9"])
    save_index(index, tmp_path, {"bank": "x"})
    loaded = load_index(tmp_path)
    assert loaded.texts == index.texts and loaded.ids == index.ids
    assert np.array_equal(loaded.embeddings, index.embeddings)


def test_index_needs_one_row_per_question():
    with pytest.raises(ValueError, match="one embedding row, text and id per question"):
        Index(circle([0, 45]), ["a"], ["1"])


def test_mqp_bank_is_every_distinct_question(tmp_path):
    for split, rows in {"train": [("a", "b", 1)], "validation": [("c", "a", 0)], "test": [("d", "e", 1)]}.items():
        mqp_pairs(rows).to_csv(tmp_path / f"{split}.csv", index=False)
    bank = mqp_bank(tmp_path)
    assert bank["question"].tolist() == ["a", "b", "c", "d", "e"] and bank["id"].tolist() == ["1", "2", "3", "4", "5"]


def test_bank_csv_drops_empty_and_repeated_rows(tmp_path):
    path = tmp_path / "bank.csv"
    path.write_text("id,question\n1,What is flu?\n2,\n3, What is flu? \n4,Is rash contagious?\n5,   \n", encoding="utf-8")
    bank, drops = read_bank_csv(path, "question")
    assert bank.to_dict(orient="list") == {"id": ["1", "4"], "question": ["What is flu?", "Is rash contagious?"]}
    assert drops == {"empty question": [2, 5], "repeats an earlier row's question": [3]}
    assert drop_lines(path, drops) == [
        f"{path}: dropped 2 rows (empty question): rows 2, 5; row 1 is the first after the header",
        f"{path}: dropped 1 row (repeats an earlier row's question): row 3; row 1 is the first after the header"]


def test_drop_lines_name_the_first_rows_only(tmp_path):
    line, = drop_lines(tmp_path / "b.csv", {"empty question": list(range(1, 15))}, shown=3)
    assert line.endswith("rows 1, 2, 3 and 11 more; row 1 is the first after the header")


@pytest.mark.parametrize("content, column, message", [
    (None, "question", "retrieval.bank: {path} not found; set it to a CSV file with a 'question' column, or to data/prepared"),
    (b"text\nWhat is flu?\n", "question", "{path} has no column 'question' (its columns: text); set retrieval.bank_column"),
    (b"question\n\xff\xfeflu\n", "question", "{path} is not UTF-8 text"),
    (b"question\n \n\n", "question", "{path} has no questions in its 'question' column"),
    (b"", "question", "{path} is not a valid CSV"),
])
def test_bad_banks_stop_with_one_line(tmp_path, content, column, message):
    path = tmp_path / "bank.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError) as error:
        read_bank_csv(path, column)
    assert str(error.value).startswith(message.format(path=path)) and "\n" not in str(error.value)
