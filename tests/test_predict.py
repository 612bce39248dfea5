"""mqp predict, the inference CLI: one pair, or a CSV to a file or stdout, scored by the trained
adapter reloaded from disk (the probabilities evaluate wrote); errors are one line."""

import io
import re

import pandas as pd
import pytest

from helpers import command, project_params, repo_params_raw, run, write_params
from mqp import paths
from mqp.reports import read_predictions


@pytest.fixture
def no_project(tmp_path, in_project):
    """The current folder: params.yaml and no trained adapter."""
    write_params(tmp_path, repo_params_raw())
    return in_project(tmp_path)


@pytest.mark.slow
def test_predict_answers_a_pair(trained_project):
    project, _ = trained_project
    saved = read_predictions(project / paths.LORA_RESULTS).iloc[0]
    result = command("predict", project, saved["question_1"], saved["question_2"])
    verdict = "similar (label 1" if saved["predicted"] else "different (label 0"
    assert result.stdout == f"{verdict}, P(similar) = {saved['prob_similar']:.4f})\n"
    # Which model answered, on stderr: the trained project's adapter, committed in HEAD.
    params, head = project_params(project), run(["git", "rev-parse", "--short=7", "HEAD"], cwd=project).stdout.strip()
    assert result.stderr == (f"predict: model {paths.ADAPTER_DIR}: LoRA r={params.lora.r} on {params.model.name} "
                             f"({params.model.architecture}), from git {head}\n")


@pytest.mark.slow
def test_predict_csv_reproduces_evaluates_probabilities(trained_project, tmp_path):
    """The adapter reloaded by predict scores the test pairs as evaluate did."""
    project, _ = trained_project
    saved = read_predictions(project / paths.LORA_RESULTS)
    pairs = tmp_path / "pairs.csv"
    saved[["question_1", "question_2"]].to_csv(pairs, index=False)
    out = command("predict", project, "--csv", str(pairs), "--out", str(tmp_path / "scored.csv")).stdout
    assert out == f"predict: {len(saved)} pairs scored, {saved['predicted'].sum()} similar -> {tmp_path / 'scored.csv'}\n"
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert list(scored.columns) == ["question_1", "question_2", "prob_similar", "label"]
    assert scored["prob_similar"].tolist() == pytest.approx(saved["prob_similar"].round(4).tolist(), abs=1e-4)
    assert scored["label"].tolist() == saved["predicted"].tolist()



@pytest.mark.slow
def test_predict_csv_to_stdout(trained_project, tmp_path, in_project, capsys):
    """Without --out, the table on stdout (predict's main in this process: quicker than a new one)."""
    from mqp.commands import predict

    project = in_project(trained_project[0])
    saved = read_predictions(project / paths.LORA_RESULTS)
    pairs = tmp_path / "pairs.csv"
    saved[["question_1", "question_2"]].to_csv(pairs, index=False)
    capsys.readouterr()
    predict.main(["--csv", str(pairs)])
    text = capsys.readouterr().out
    printed = pd.read_csv(io.StringIO(text))
    # 4 decimals as the README says, trailing zeros kept (0.9930, not 0.993)
    assert all(re.fullmatch(r"[01]\.\d{4}", row.split(",")[-2]) for row in text.splitlines()[1:]), text[:300]
    assert list(printed.columns) == ["question_1", "question_2", "prob_similar", "label"]
    assert printed["prob_similar"].tolist() == pytest.approx(saved["prob_similar"].round(4).tolist(), abs=1e-4)
    assert printed["label"].tolist() == saved["predicted"].tolist()


def error_of(argv, capsys) -> tuple[int, str]:
    """predict's main in this process (quicker than a new one): exit code and stderr."""
    from mqp.commands import predict

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        predict.main(argv)
    return exit_.value.code, capsys.readouterr().err


def test_predict_without_adapter_says_run_dvc_repro(no_project, capsys):
    assert error_of(["a", "b"], capsys) == (
        1, f"predict: error: no trained adapter in {paths.ADAPTER_DIR}: run `dvc repro` first\n")


def test_predict_csv_without_question_columns(no_project, capsys):
    (no_project / "pairs.csv").write_text("first,second\na,b\n")
    assert error_of(["--csv", "pairs.csv"], capsys) == (
        1, "predict: error: pairs.csv lacks column(s) question_1, question_2; its header must name question_1 and "
           "question_2\n")


def test_predict_needs_two_questions_or_a_csv(no_project, capsys):
    code, err = error_of(["only one"], capsys)
    assert code == 2 and err.endswith("error: give two questions, or --csv FILE\n")


@pytest.mark.parametrize("pair", [("", ""), ("Can I drink on antibiotics?", "   ")])
def test_predict_empty_question_is_one_line(no_project, capsys, pair):
    assert error_of(list(pair), capsys) == (1, "predict: error: a question is empty: give two questions to compare\n")


def test_predict_csv_with_empty_questions_names_the_rows(no_project, capsys):
    (no_project / "pairs.csv").write_text("question_1,question_2\na,b\n,b\nc, \nd,e\n")
    assert error_of(["--csv", "pairs.csv"], capsys) == (
        1, "predict: error: pairs.csv: row(s) 2, 3 (after the header) have an empty question; fill or remove them\n")


def test_predict_csv_bad_last_row_of_a_large_file_is_one_line_and_nothing_is_lost(no_project, capsys):
    """50,000 pairs read in chunks: a row with a third field, or an empty question, in the last line
    stops predict before anything is scored, naming the line, as in a small file; an --out file an
    earlier run wrote stays as it was."""
    good = "".join(f"question {i}?,rewrite {i}?\n" for i in range(50_000))
    (no_project / "extra.csv").write_text("question_1,question_2\n" + good + "a,b,c\n")
    (no_project / "blank.csv").write_text("question_1,question_2\n" + good + "a, \n")
    (no_project / "scored.csv").write_text("an earlier run's output\n")
    code, err = error_of(["--csv", "extra.csv", "--out", "scored.csv"], capsys)
    assert (code, err) == (1, "predict: error: cannot read extra.csv: Error tokenizing data. C error: Expected 2 fields "
                              "in line 50002, saw 3\n")
    assert error_of(["--csv", "blank.csv", "--out", "scored.csv"], capsys) == (
        1, "predict: error: blank.csv: row(s) 50001 (after the header) have an empty question; fill or remove them\n")
    assert (no_project / "scored.csv").read_text() == "an earlier run's output\n"


@pytest.mark.slow
def test_predict_csv_in_chunks_writes_what_one_chunk_writes(trained_project, in_project, tmp_path):
    """Chunks of 7 pairs (the stream a CSV of any size goes through) give the same bytes as the
    whole test split in one chunk."""
    from mqp.commands.predict import write_scored_csv
    from mqp.lora import load_trained
    from mqp.models import load_tokenizer

    project = in_project(trained_project[0])
    pairs = tmp_path / "pairs.csv"
    read_predictions(project / paths.LORA_RESULTS)[["question_1", "question_2"]].to_csv(pairs, index=False)
    params = project_params(project)
    tokenizer = load_tokenizer(params.model)
    model = load_trained(params, tokenizer, paths.ADAPTER_DIR)
    outputs = {}
    for chunk_pairs in (7, 100_000):
        outputs[chunk_pairs] = io.StringIO()
        counts = write_scored_csv(str(pairs), outputs[chunk_pairs], model, tokenizer, params, chunk_pairs)
    assert outputs[7].getvalue() == outputs[100_000].getvalue()
    assert counts[0] == len(outputs[7].getvalue().splitlines()) - 1
