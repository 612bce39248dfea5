"""The retrieval stages for real on the tiny BERT: `dvc repro` builds the retrieval metrics and the
index; mqp search answers from them with no PEFT importable; a bank of one's own rebuilds the
index alone, and only when it changes; a cross-encoder gets its index skipped and search one line;
bad banks and queries stop with one line."""

import io
import json
import re
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import commit, copy_project, dvc, one_error_line, project_params, read_json, run, set_params
from mqp import paths
from mqp.metrics import p_value_text
from mqp.openset import probability
from mqp.architectures.bi_encoder import BI_ENCODER_NEEDED
from mqp.ranking import ranking_task
from mqp.ranking_metrics import retrieval_detail

# Runs mqp search in a Python where PEFT cannot be imported: search must never need it.
NO_PEFT = """
import runpy, sys
sys.modules["peft"] = None
sys.argv = ["mqp.commands.search", *sys.argv[1:]]
runpy.run_module("mqp.commands.search", run_name="__main__")
"""


def search(project, *args: str, check: bool = True):
    return run([sys.executable, "-c", NO_PEFT, *args], cwd=project, check=check, env={"HF_HUB_OFFLINE": "1"})


METHODS = {"zeroshot", "lora", "wise", "fusion", "bm25"}


def test_repro_writes_the_retrieval_metrics(trained_project):
    project, log = trained_project
    assert "Running stage 'retrieval'" in log and "Running stage 'index'" in log
    detail = read_json(project / paths.RETRIEVAL_REPORT)
    lean = read_json(project / paths.RETRIEVAL_METRICS)
    openset = detail["openset"]
    fusion, versus = openset["methods"]["fusion"], openset["comparisons"]["fusion-zeroshot"]
    assert openset["method"] == "fusion"  # params.yaml's retrieval.method
    assert lean == {"n": fusion["verdicts"], "acc": round(fusion["verdict_accuracy"], 4),
                    "acc_ci": f"{fusion['verdict_accuracy_ci_low']:.3f}-{fusion['verdict_accuracy_ci_high']:.3f}",
                    # the top hit's AUROC, where the tiny model got some top hits right and some wrong
                    **({"auc": round(fusion["top_hit_auroc"], 4)} if fusion["top_hit_auroc"] is not None else {}),
                    "vs_zeroshot": f"{100 * versus['accuracy_diff']:+.1f} p={p_value_text(versus['mcnemar_p'])}"}
    assert set(detail["methods"]) == set(openset["methods"]) == METHODS
    assert set(detail["comparisons"]) == METHODS - {"lora"}
    assert set(openset["comparisons"]) == ({f"{m}-zeroshot" for m in METHODS - {"zeroshot"}}
                                           | {f"{m}-lora" for m in METHODS - {"lora"}})
    weights = yaml.safe_load((project / paths.PARAMS_FILE).read_text())["retrieval"]["fusion_weights"]
    assert fusion["fusion_weight"] in weights
    test = pd.read_csv(project / paths.split_csv("test"), dtype={"question_1": str, "question_2": str})
    assert detail["bank"] == len(set(test["question_1"]) | set(test["question_2"]))
    assert detail["methods"]["bm25"]["n"] == test["question_1"].nunique() and detail["queries_skipped"] == 0
    assert fusion["verdicts"] == 2 * fusion["n"] == 2 * test["question_1"].nunique()


def test_the_verdict_index_and_search_use_is_the_one_chosen_on_validation(trained_project):
    project, _ = trained_project
    openset = read_json(project / paths.RETRIEVAL_REPORT)["openset"]
    chosen = openset["methods"]["fusion"]
    verdict = read_json(project / paths.VERDICT_JSON)
    assert verdict == {"method": "fusion", "fusion_weight": chosen["fusion_weight"], "threshold": chosen["threshold"],
                       "calibration": chosen["calibration"], "false_match_cost": 1.0}
    assert read_json(project / paths.INDEX_DIR / paths.INDEX_META)["verdict"] == verdict


def test_the_ranks_file_gives_the_metrics(trained_project):
    """results/retrieval holds each query's ranks; the detail file is their summary, exactly."""
    project, _ = trained_project
    ranks = pd.read_csv(project / paths.RETRIEVAL_RESULTS / paths.RANKS_FILE, dtype=str, keep_default_na=False)
    task = ranking_task(pd.read_csv(project / paths.split_csv("test"), dtype={"question_1": str, "question_2": str}))
    assert ranks["query"].tolist() == [task.bank[i] for i in task.queries]
    assert ranks["similar"].tolist() == [task.bank[i] for i in task.relevant]
    methods = {m: (ranks[f"{m}_rank_similar"].astype(int).to_numpy(), ranks[f"{m}_rank_dissimilar"].astype(int).to_numpy())
               for m in ("zeroshot", "lora", "wise", "fusion", "bm25")}
    expected = retrieval_detail(methods, "lora", len(task.bank))
    detail = read_json(project / paths.RETRIEVAL_REPORT)
    assert detail["methods"] == expected["methods"] and detail["comparisons"] == expected["comparisons"]
    for method, report in detail["openset"]["methods"].items():  # each query's two verdicts
        found, no_match = ranks[f"{method}_verdict_found"].astype(int), ranks[f"{method}_verdict_no_match"].astype(int)
        assert (found.sum(), no_match.sum()) == (report["sums"]["found"], report["sums"]["no_match"])
        assert (found <= (ranks[f"{method}_rank_similar"].astype(int) == 1)).all()  # found: the rewrite came first


def test_dvc_metrics_show_puts_retrieval_in_the_models_columns(trained_project):
    """The verdict accuracy is the search's accuracy: it shares acc, acc_ci, auc (the top hit's),
    n and vs_zeroshot with the models' rows, so `dvc metrics show` gains a row and no column."""
    project, _ = trained_project
    shown = dvc("metrics", "show", cwd=project).stdout.splitlines()
    lean = read_json(project / paths.RETRIEVAL_METRICS)
    assert shown[0].split() == ["Path", "acc", "acc_ci", "auc", "f1", "n", "n_dropped", "vs_base", "vs_zeroshot"]
    row, = [line.split() for line in shown if line.startswith(str(paths.RETRIEVAL_METRICS))]
    assert row == [str(paths.RETRIEVAL_METRICS), str(lean["acc"]), lean["acc_ci"], str(lean.get("auc", "-")), "-",
                   str(lean["n"]), "-", "-", *lean["vs_zeroshot"].split()]
    assert "detail" not in "\n".join(shown)  # the reports are no metrics files


def test_the_index_holds_every_mqp_question(trained_project):
    project, _ = trained_project
    bank = pd.read_csv(project / paths.INDEX_DIR / paths.INDEX_BANK, dtype=str, keep_default_na=False)
    questions = set()
    for split in paths.SPLITS:
        table = pd.read_csv(project / paths.split_csv(split), dtype=str, keep_default_na=False)
        questions |= set(table["question_1"]) | set(table["question_2"])
    assert bank["question"].tolist() == sorted(questions) and bank["id"].tolist() == [str(i) for i in range(1, len(bank) + 1)]
    # Fusion's vectors: [zero-shot, sqrt(w) LoRA], each part of unit length.
    embeddings = np.load(project / paths.INDEX_DIR / paths.INDEX_EMBEDDINGS)
    weight = read_json(project / paths.VERDICT_JSON)["fusion_weight"]
    assert embeddings.shape[0] == len(bank) and embeddings.shape[1] % 2 == 0
    half = embeddings.shape[1] // 2
    assert np.linalg.norm(embeddings[:, :half], axis=1) == pytest.approx(1, abs=1e-5)
    assert np.linalg.norm(embeddings[:, half:], axis=1) == pytest.approx(np.sqrt(weight), abs=1e-5)


def test_search_finds_a_bank_question_first_without_peft(trained_project):
    """A bank question asked again: its fused score is the highest possible, 1 + w; the verdict
    comes first, each hit's P is the calibration of its score."""
    project, _ = trained_project
    bank = pd.read_csv(project / paths.INDEX_DIR / paths.INDEX_BANK, dtype=str, keep_default_na=False)
    verdict = read_json(project / paths.VERDICT_JSON)
    question = bank["question"][3]
    found = json.loads(search(project, question, "--k", "4", "--json").stdout)
    assert found["query"] == question and len(found["hits"]) == 4
    first = found["hits"][0]
    assert (first["rank"], first["id"], first["question"]) == (1, bank["id"][3], question)
    assert first["score"] == pytest.approx(1 + verdict["fusion_weight"], abs=1e-3)
    for hit in found["hits"]:
        assert hit["p_answered"] == pytest.approx(float(probability(hit["score"], verdict["calibration"])), abs=2e-3)
    assert [hit["score"] for hit in found["hits"]] == sorted((hit["score"] for hit in found["hits"]), reverse=True)
    answered = first["score"] >= verdict["threshold"]
    assert found["verdict"] == ("already answered" if answered else "no match")
    assert found["threshold"] == pytest.approx(float(probability(verdict["threshold"], verdict["calibration"])), abs=1e-4)
    assert (found["match_id"], found["p_answered"]) == ((bank["id"][3] if answered else None), first["p_answered"])
    table = search(project, question, "--k", "2").stdout.splitlines()
    assert table[0] == (f'already answered: "{question}" (id {bank["id"][3]}, P = {first["p_answered"]:.2f})' if answered
                        else f"no match (best P = {first['p_answered']:.2f}, threshold {found['threshold']:.2f})")
    assert table[1] == "rank  P(answered)  score  question (id)" and len(table) == 4
    assert table[2].startswith("   1  ") and table[2].endswith(f"{question} (id {bank['id'][3]})")


def test_search_csv_batch(trained_project, tmp_path):
    project, _ = trained_project
    bank = pd.read_csv(project / paths.INDEX_DIR / paths.INDEX_BANK, dtype=str, keep_default_na=False)
    queries = tmp_path / "queries.csv"
    pd.DataFrame({"question": [bank["question"][0], "Is my cough contagious?"]}).to_csv(queries, index=False)
    out = tmp_path / "found.csv"
    printed = search(project, "--csv", str(queries), "--out", str(out), "--k", "3").stdout
    found = pd.read_csv(out, dtype={"id": str, "match_id": str}, keep_default_na=False)
    answered = found.groupby("query", sort=False)["verdict"].first().eq("already answered").sum()
    assert printed.startswith(f"search: 2 queries, {answered} already answered, {2 - answered} no match; top 3 each")
    assert list(found.columns) == ["query", "verdict", "match_id", "verdict_p", "threshold", "rank", "id", "question",
                                   "score", "p_answered"]
    assert found["rank"].tolist() == [1, 2, 3, 1, 2, 3] and found["question"][0] == bank["question"][0]
    one = json.loads(search(project, "Is my cough contagious?", "--k", "3", "--json").stdout)
    assert found["id"][3:].tolist() == [hit["id"] for hit in one["hits"]]
    assert (found["verdict"][3], found["match_id"][3]) == (one["verdict"], one["match_id"] or "")
    assert found["score"].map(lambda value: len(f"{value:.4f}")).gt(0).all()


def test_search_csv_in_chunks_writes_what_one_chunk_writes(trained_project, in_project, tmp_path):
    """Chunks of 3 queries (the stream a CSV of any size goes through) give the same bytes as all
    9 in one chunk."""
    from mqp.commands.search import write_found_csv
    from mqp.search import Searcher

    project = in_project(trained_project[0])
    bank = pd.read_csv(paths.INDEX_DIR / paths.INDEX_BANK, dtype=str, keep_default_na=False)
    pd.DataFrame({"question": [*bank["question"][:7], "Is my cough contagious?", "asdf"]}).to_csv(tmp_path / "queries.csv", index=False)
    params = project_params(project)
    searcher = Searcher.load(paths.INDEX_DIR, params.eval.batch_size, params.retrieval.hnsw_ef_search)
    outputs = {chunk: io.StringIO() for chunk in (3, 10_000)}
    counts = {chunk: write_found_csv(searcher, str(tmp_path / "queries.csv"), out, 2, chunk) for chunk, out in outputs.items()}
    assert outputs[3].getvalue() == outputs[10_000].getvalue() and counts[3] == counts[10_000]
    assert counts[3][0] == 9 and len(outputs[3].getvalue().splitlines()) == 1 + 9 * 2


@pytest.mark.parametrize("query", ["a", "asdf", "???", "What is the capital of France?", "flu " * 2500,
                                   "¿Puedo tomar alcohol con antibióticos?", "感冒会传染吗？"])
def test_odd_queries_get_a_verdict(trained_project, query):
    """One character, random letters, a question off the topic, 10,000 characters, other languages:
    each gets a verdict line and its hits, never an error."""
    project, _ = trained_project
    lines = search(project, query, "--k", "2").stdout.splitlines()
    assert re.fullmatch(r'(already answered: ".+" \(id \d+, P = \d\.\d\d\)|no match \(best P = \d\.\d\d, threshold \d\.\d\d\))',
                        lines[0]), lines[0]
    assert len(lines) == 4


@pytest.fixture
def own_bank_project(trained_project, tmp_path):
    """A copy of trained_project whose params name a bank CSV of its own, with two bad rows."""
    project = copy_project(trained_project[0], tmp_path / "project")
    (project / "bank.csv").write_text("text,topic\nWhat helps a migraine?,a\n,b\nIs flu contagious?,c\n"
                                      "What helps a migraine?,d\nHow long does a cold last?,e\n", encoding="utf-8")
    set_params(project, {"retrieval.bank": "bank.csv", "retrieval.bank_column": "text"})
    return project


def test_own_bank_rebuilds_the_index_alone_and_only_when_it_changes(own_bank_project):
    project = own_bank_project
    result = dvc("repro", cwd=project)
    assert re.findall(r"Running stage '(\w+)'", result.stdout) == ["index"]
    assert "bank.csv: dropped 1 row (empty question): row 2; row 1 is the first after the header" in result.stderr
    assert "bank.csv: dropped 1 row (repeats an earlier row's question): row 4" in result.stderr
    assert "Batches: 100%" in result.stderr  # the index's progress bar, for a bank of any size
    bank = pd.read_csv(project / paths.INDEX_DIR / paths.INDEX_BANK, dtype=str)
    assert bank.to_dict(orient="list") == {"id": ["1", "3", "5"], "question": [
        "What helps a migraine?", "Is flu contagious?", "How long does a cold last?"]}
    found = json.loads(search(project, "How long does a cold last?", "--json").stdout)["hits"]
    assert len(found) == 3 and found[0]["id"] == "5"  # --k 5 capped at the bank's 3
    commit(project, "own bank")
    set_params(project, {"retrieval.k": 2})  # search's, not the index's
    assert "Running stage" not in dvc("repro", cwd=project).stdout
    with open(project / "bank.csv", "a", encoding="utf-8") as bank_file:
        bank_file.write("Can I drink on antibiotics?,f\n")
    assert re.findall(r"Running stage '(\w+)'", dvc("repro", cwd=project).stdout) == ["index"]
    assert len(pd.read_csv(project / paths.INDEX_DIR / paths.INDEX_BANK)) == 4


def test_a_bad_bank_stops_dvc_repro_with_one_line(own_bank_project):
    project = own_bank_project
    set_params(project, {"retrieval.bank_column": "question"})
    result = dvc("repro", cwd=project, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("index: error: ")]
    assert lines == ["index: error: bank.csv has no column 'question' (its columns: text, topic); "
                     "set retrieval.bank_column to the one holding the questions"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["   "], "search: error: the question is empty: give the question to look up"),
    (["--csv", "{tmp}/queries.csv"], "search: error: {tmp}/queries.csv: row(s) 2 have an empty question; fill or remove them"),
    (["--csv", "{tmp}/nothing.csv"], "search: error: cannot read {tmp}/nothing.csv: "),
    (["--csv", "{tmp}/wrong.csv"], "search: error: {tmp}/wrong.csv has no column 'question' (its columns: query); "
                                   "name the column of questions 'question'"),
])
def test_bad_queries_get_one_line(trained_project, tmp_path, args, message):
    project, _ = trained_project
    (tmp_path / "queries.csv").write_text("question,topic\nWhat is flu?,a\n  ,b\n")
    (tmp_path / "wrong.csv").write_text("query\nWhat is flu?\n")
    result = search(project, *(arg.format(tmp=tmp_path) for arg in args), check=False)
    assert one_error_line(result, "search").startswith(message.format(tmp=tmp_path))


def test_search_without_model_or_index(trained_project, tmp_path):
    project = copy_project(trained_project[0], tmp_path / "project")
    shutil.rmtree(project / paths.MERGED_DIR)
    assert one_error_line(search(project, "What is flu?", check=False), "search") == (
        f"search: error: no exported model in {paths.MERGED_DIR}: run `dvc repro export`")
    shutil.rmtree(project / paths.INDEX_DIR)
    assert one_error_line(search(project, "What is flu?", check=False), "search") == (
        f"search: error: no index in {paths.INDEX_DIR}: run `dvc repro index`")


@pytest.mark.slow
def test_cross_encoder_skips_lora_in_retrieval_and_search_says_why(cross_encoder_project, tmp_path, in_project, capsys):
    """A cross-encoder embeds no question alone: the retrieval stage ranks zero-shot and BM25 only,
    its headline is zero-shot's verdicts, index writes an empty index saying why, and search stops
    with one line."""
    from stages import index, retrieval

    project = in_project(copy_project(cross_encoder_project[0], tmp_path / "project"))
    capsys.readouterr()
    retrieval.main()
    index.main()
    out = capsys.readouterr().out
    detail = read_json(project / paths.RETRIEVAL_REPORT)
    assert set(detail["methods"]) == {"zeroshot", "bm25"} and detail["comparisons"] == {}
    assert detail["openset"]["method"] == "zeroshot" and set(detail["openset"]["comparisons"]) == {"bm25-zeroshot"}
    zeroshot = detail["openset"]["methods"]["zeroshot"]
    assert read_json(project / paths.RETRIEVAL_METRICS) == {
        "n": zeroshot["verdicts"], "acc": round(zeroshot["verdict_accuracy"], 4),
        "acc_ci": f"{zeroshot['verdict_accuracy_ci_low']:.3f}-{zeroshot['verdict_accuracy_ci_high']:.3f}",
        **({"auc": round(zeroshot["top_hit_auroc"], 4)} if zeroshot["top_hit_auroc"] is not None else {})}
    assert f"index: skipped, {BI_ENCODER_NEEDED.format(folder=paths.MERGED_DIR)}" in out
    from mqp.commands import search as search_stage

    with pytest.raises(SystemExit) as exit_:
        search_stage.main(["What is flu?"])
    assert (exit_.value.code, capsys.readouterr().err) == (
        1, f"search: error: {BI_ENCODER_NEEDED.format(folder=paths.MERGED_DIR)}\n")
