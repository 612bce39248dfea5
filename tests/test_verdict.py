"""The verdict with the real default model (all-MiniLM-L6-v2, zero-shot, from its PyPI copy): a
threshold chosen on MQP questions as the retrieval stage chooses it, an index of other MQP
questions, and the two lines a service writes. A question already in the bank is answered;
nonsense gets "no match"; every odd query gets a verdict; an empty one gets one line."""

import pandas as pd
import pytest

from helpers import SHARED_CSV
from mqp.errors import PipelineError
from mqp.files import write_json
from mqp.models import DEFAULT_MODEL
from mqp.openset import calibration, choose_threshold, top_hits
from mqp.paths import INDEX_META
from mqp.banks import Index, save_index
from mqp.ranking import ranking_task
from mqp.search import Searcher, base_model, encode

ENCODER = {"name": DEFAULT_MODEL, "pooling": "mean", "max_length": 128}
NONSENSE = ["asdf", "???", "a", "qwertyuiop zxcvbnm", "x" * 10_000]


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory):
    """The first 150 question_1s of MQP choose the threshold (cost 1); the next 300's questions are
    the bank."""
    pairs = pd.read_csv(SHARED_CSV, header=None, names=["dr_id", "question_1", "question_2", "label"], dtype=str,
                        keep_default_na=False).astype({"label": int})
    firsts = pairs["question_1"].drop_duplicates().tolist()
    validation = pairs[pairs["question_1"].isin(firsts[:150])]
    bank_pairs = pairs[pairs["question_1"].isin(firsts[150:450])]
    model = base_model(**ENCODER)
    task = ranking_task(validation)
    vectors = encode(model, task.bank, 32)
    hits = top_hits(lambda start, stop: vectors[task.queries[start:stop]] @ vectors.T, task.queries, task.relevant,
                    task.negative, len(task.bank))
    verdict = {"method": "zeroshot", "fusion_weight": None, "threshold": choose_threshold(hits, task.relevant, 1.0),
               "calibration": calibration(hits, task.relevant), "false_match_cost": 1.0}
    bank = sorted(set(bank_pairs["question_1"]) | set(bank_pairs["question_2"]))
    folder = tmp_path_factory.mktemp("index")
    save_index(Index(encode(model, bank, 32), bank, [str(i) for i in range(1, len(bank) + 1)]), folder,
               {"architecture": "bi-encoder", "search": "exact", "encoders": {"zeroshot": ENCODER},
                "parts": [["zeroshot", 1.0]], "verdict": verdict})
    return folder, bank


def test_a_question_in_the_bank_is_already_answered(index_folder):
    folder, bank = index_folder
    verdict = Searcher.load(folder).verdict(bank[7])  # the two lines a service writes
    assert verdict.answered and (verdict.match_id, verdict.match_question) == ("8", bank[7])
    assert verdict.text() == f'already answered: "{bank[7]}" (id 8, P = {verdict.p_answered:.2f})'
    assert verdict.p_answered >= verdict.threshold


@pytest.mark.parametrize("query", NONSENSE)
def test_nonsense_gets_no_match(index_folder, query):
    verdict = Searcher.load(index_folder[0]).verdict(query)
    assert not verdict.answered and verdict.match_id is None
    assert verdict.text() == f"no match (best P = {verdict.p_answered:.2f}, threshold {verdict.threshold:.2f})"


@pytest.mark.parametrize("query", ["What is the capital of France?", "¿Puedo tomar alcohol con antibióticos?",
                                   "感冒会传染吗？", "Can I take ibuprofen with a cold?"])
def test_other_odd_queries_get_a_verdict(index_folder, query):
    verdict = Searcher.load(index_folder[0]).verdict(query)
    assert verdict.answered == (verdict.p_answered >= verdict.threshold)


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_an_empty_question_gets_one_line(index_folder, query):
    with pytest.raises(PipelineError, match="^the question is empty: give the question to look up$"):
        Searcher.load(index_folder[0]).verdict(query)


def test_an_index_without_a_verdict_says_to_rebuild_it(index_folder, tmp_path):
    import json
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(index_folder[0], folder)
    meta = json.loads((folder / INDEX_META).read_text())
    del meta["verdict"]
    write_json(folder / INDEX_META, meta)
    with pytest.raises(PipelineError, match=r"has no verdict \(built by an older version\): run `dvc repro index`"):
        Searcher.load(folder)


def test_hnsw_search_gives_the_exact_verdicts(index_folder, tmp_path):
    """The same index searched through a faiss HNSW graph: the same verdicts as exact search."""
    import json
    import shutil

    from mqp.banks import load_index
    from mqp.nearest import build_hnsw

    exact_folder, bank = index_folder
    folder = tmp_path / "hnsw"
    shutil.copytree(exact_folder, folder)
    index = load_index(folder)
    meta = json.loads((folder / INDEX_META).read_text())
    save_index(index, folder, {**meta, "search": "hnsw", "hnsw_ef_search": 64}, build_hnsw(index.embeddings, 16, 80))
    queries = [bank[3], bank[40], "asdf", "Can I take ibuprofen with a cold?"]
    exact, approximate = Searcher.load(exact_folder), Searcher.load(folder, ef_search=200)
    for ours, theirs in zip(exact.search(queries, 1)[1], approximate.search(queries, 1)[1]):
        assert (ours.answered, ours.match_id) == (theirs.answered, theirs.match_id)
        assert ours.p_answered == pytest.approx(theirs.p_answered, abs=1e-3)
