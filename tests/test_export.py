"""stages.export, mqp.export and mqp.card: the adapter merged into a standalone model that scores like
the adapter with no PEFT in sight (BERT and GPT-2, both architectures), loaded and scored with the
very lines its model card shows; the cards' numbers; one-line errors without an adapter or metrics."""

import json
import sys

import pytest
import yaml

from helpers import (PROJECT_OF, QUESTIONS_1, QUESTIONS_2, REPO, make_workdir, one_error_line,
                     project_params, read_json, run, stage, tiny_params)
from mqp import paths
from mqp.card import CARD_FILE, base_license, merged_usage
from mqp.architectures import architecture_for, base_model
from mqp.architectures.cross_encoder import LABELS
from mqp.inference import score_pairs
from mqp.lora import load_trained, save_trained, with_lora
from mqp.models import DEFAULT_MODEL, load_tokenizer
from mqp.splits import load_split
from test_lora import perturb

# Runs a card's usage lines in a fresh Python where PEFT is not installed, as far as anything can
# tell (find_spec finds nothing, import fails): all but the last line load the model once, the last
# sets p_similar for one pair (question_1, question_2).
CARD_RUNNER = """
import json, sys
sys.modules["peft"] = None
lines, pairs = json.loads(sys.argv[1])
namespace = {}
exec("\\n".join(lines[:-1]), namespace)
probs = []
for namespace["question_1"], namespace["question_2"] in pairs:
    exec(lines[-1], namespace)
    probs.append(float(namespace["p_similar"]))
print(json.dumps(probs))
"""


def usage_lines(markdown: str) -> list[str]:
    """The Python block of a card's "## Use it" section."""
    section = markdown.split("## Use it", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0].splitlines()


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def run_card(project, lines: list[str], pairs: list[tuple[str, str]]) -> list[float]:
    """CARD_RUNNER in a subprocess, in the project (the card's paths are relative to it)."""
    result = run([sys.executable, "-c", CARD_RUNNER, json.dumps([lines, pairs])], cwd=project, check=False,
                 env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_test_split(project):
    """The project's test pairs, read as the stages read them (paths relative to the project)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        return load_split("test")


def merged_probs(project, lines, params, question_1, question_2) -> list[float]:
    """P(similar) from the merged model through the card's lines, without PEFT, in both question
    orders where evaluate averages them."""
    pairs = list(zip(question_1, question_2))
    averaged = params.model.architecture == "cross-encoder" and params.eval.average_orders
    probs = run_card(project, lines, pairs + ([(b, a) for a, b in pairs] if averaged else []))
    if averaged:
        probs = [(p + q) / 2 for p, q in zip(probs[:len(pairs)], probs[len(pairs):])]
    return probs


@pytest.mark.parametrize("model_dir, architecture, pooling", [
    ("tiny_bert", "cross-encoder", "mean"), ("tiny_bert", "bi-encoder", "mean"),
    ("tiny_gpt2", "cross-encoder", "mean"),  # Conv1D projections: fan_in_fan_out in the merge
    ("tiny_gpt2", "bi-encoder", "last"),
])
def test_merged_model_scores_like_the_adapter(request, tmp_path, model_dir, architecture, pooling):
    """An adapter with every trainable weight moved (LoRA's B included, so the merge matters),
    saved, reloaded, merged and exported: the card's lines score like the adapter, without PEFT."""
    params = tiny_params(request.getfixturevalue(model_dir), {"model.architecture": architecture,
                                                              "model.pooling": pooling})
    tokenizer = load_tokenizer(params.model)
    trained = with_lora(base_model(params, tokenizer), params)
    perturb(trained)
    save_trained(trained, params, tmp_path / paths.ADAPTER_DIR)
    expected = score_pairs(load_trained(params, tokenizer, tmp_path / paths.ADAPTER_DIR), tokenizer,
                           QUESTIONS_1, QUESTIONS_2, params)
    exporter = architecture_for(params)
    merged_model = exporter.merge(load_trained(params, tokenizer, tmp_path / paths.ADAPTER_DIR)).cpu()
    calibration = exporter.save_merged(merged_model, tokenizer, tmp_path / paths.MERGED_DIR, params.model.max_length,
                                       params.eval.threshold)

    lines = usage_lines(merged_usage(params, paths.MERGED_DIR, tokenizer.sep_token, calibration))
    assert merged_probs(tmp_path, lines, params, QUESTIONS_1, QUESTIONS_2) == pytest.approx(expected, abs=1e-5)
    untrained = score_pairs(base_model(params, tokenizer).eval(), tokenizer, QUESTIONS_1, QUESTIONS_2, params)
    assert untrained != pytest.approx(expected, abs=1e-3)  # the adapter did change the scores
    merged = tmp_path / paths.MERGED_DIR
    assert (merged / "model.safetensors").exists() and not list(merged.glob("*.bin"))
    assert not (merged / "adapter_config.json").exists()
    assert "local_files_only" not in read_json(merged / "tokenizer_config.json")  # the same bytes online and offline
    config = read_json(merged / "config.json")
    if architecture == "cross-encoder":
        assert config["id2label"] == {str(k): v for k, v in LABELS.items()}
        assert config["label2id"] == {v: k for k, v in LABELS.items()}
    else:
        assert read_json(merged / paths.CALIBRATION_JSON) == {
            "scale": pytest.approx(trained.scale.item()), "bias": pytest.approx(trained.bias.item()),
            "threshold": params.eval.threshold}
        pooling_config = read_json(merged / "1_Pooling" / "config.json")
        assert [key for key, on in pooling_config.items() if on is True and key.startswith("pooling_mode")] == [
            {"mean": "pooling_mode_mean_tokens", "last": "pooling_mode_lasttoken"}[pooling]]
        assert [m["path"] for m in read_json(merged / "modules.json")] == ["", "1_Pooling", "2_Normalize"]


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(PROJECT_OF))
def test_exported_project_model_scores_its_test_split_like_the_adapter(request, architecture):
    """The export stage's folder in a trained project: its card's lines give the adapter's
    probabilities on the test split, and its front matter carries metrics/detail/lora.json's numbers."""
    project = request.getfixturevalue(PROJECT_OF[architecture])[0]
    params = project_params(project)
    tokenizer = load_tokenizer(params.model)
    test = read_test_split(project)
    expected = score_pairs(load_trained(params, tokenizer, project / paths.ADAPTER_DIR), tokenizer,
                           test["question_1"], test["question_2"], params)
    card = (project / paths.MERGED_DIR / CARD_FILE).read_text(encoding="utf-8")
    probs = merged_probs(project, usage_lines(card), params, list(test["question_1"]), list(test["question_2"]))
    assert probs == pytest.approx(expected, abs=1e-5)

    lora = read_json(project / paths.LORA_REPORT)
    meta = front_matter(card)
    assert meta["base_model"] == params.model.name and meta["datasets"] == ["curaihealth/medical_questions_pairs"]
    assert meta["library_name"] == {"cross-encoder": "transformers", "bi-encoder": "sentence-transformers"}[architecture]
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"]["split"] == "test"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        key: lora["test"][key] for key in ("accuracy", "f1", "precision", "recall", "roc_auc")}
    test_metrics, vs_zeroshot = lora["test"], lora["vs_zeroshot"]
    assert (f"| accuracy | {test_metrics['accuracy']:.4f} | [{test_metrics['accuracy_ci_low']:.4f}, "
            f"{test_metrics['accuracy_ci_high']:.4f}] |") in card
    assert f"{vs_zeroshot['accuracy_diff']:+.4f} [{vs_zeroshot['diff_ci_low']:+.4f}" in card
    assert "not be used for medical decisions" in card
    assert "on the dense, key, query, value layers" in card


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(PROJECT_OF))
def test_adapter_card_holds_the_kept_epochs_validation_metrics(request, architecture):
    """finetune's README.md in the adapter folder: PEFT's front matter with the run's numbers, the
    split protocol, no test figure (finetune never reads the test split)."""
    project = request.getfixturevalue(PROJECT_OF[architecture])[0]
    params, train = project_params(project), read_json(project / paths.TRAIN_REPORT)
    card = (project / paths.ADAPTER_DIR / CARD_FILE).read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["library_name"] == "peft" and meta["base_model"] == params.model.name
    assert meta["pipeline_tag"] == {"cross-encoder": "text-classification", "bi-encoder": "sentence-similarity"}[architecture]
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"]["split"] == "validation"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        key: train["validation"][key] for key in ("accuracy", "f1", "precision", "recall", "roc_auc")}
    assert f"Kept epoch {train['best_epoch']} of {train['epochs']}" in card
    assert f"grouped {params.data.folds}-fold split by `question_1`: fold {params.data.fold}" in card
    assert f"r={params.lora.r}, alpha={params.lora.alpha:g}" in card
    assert "on the dense, key, query, value layers (chosen by `lora.target_modules: auto`)" in card  # tiny BERT's
    assert "test split" not in card.lower() and "| test" not in card


def test_base_license_comes_from_the_base_models_card(tiny_bert):
    assert base_license(DEFAULT_MODEL) == "apache-2.0"  # the offline copy's own README.md
    assert base_license(str(tiny_bert)) is None  # no card, no claim


def test_export_without_metrics_or_adapter_is_one_line(tmp_path, tiny_bert, in_project, capsys):
    """In its own process first (nothing but the line on stderr), then in this one (quicker)."""
    from stages import export

    workdir = make_workdir(tmp_path / "project", tiny_bert)
    line = one_error_line(stage("export", workdir, check=False, env={"PYTHONPATH": str(REPO)}), "export")
    assert line == f"export: error: {paths.LORA_REPORT} not found: run `dvc repro` first"
    for path in (paths.LORA_REPORT, paths.DATA_REPORT):
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text("{}")
    in_project(workdir)
    with pytest.raises(SystemExit) as exit_:
        export.main()
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"export: error: no trained adapter in {paths.ADAPTER_DIR}: run `dvc repro` first\n"
    assert not (workdir / paths.MERGED_DIR).exists()


def test_the_cards_name_each_training_loss_that_is_on():
    from helpers import repo_params
    from mqp.card import extras

    assert extras(repo_params()) == ""  # the defaults: BCE alone
    text = extras(repo_params({"train.ranking_weight": 0.5, "train.anchor_weight": 1}))
    assert text.splitlines() == ["- A ranking loss beside the head's (`train.ranking_weight: 0.5`).",
                                 "- A term holding each question's embedding near the base model's (`train.anchor_weight: 1`)."]
