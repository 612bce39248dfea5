"""Model resolution, LoRA targets, GPT-2 specifics, and adapters saved and reloaded for real."""

import sys

import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from conftest import make_project, read_json, run
from stages.errors import PipelineError
from stages.modeling import (
    DEFAULT_MODEL,
    add_lora,
    encode_pairs,
    load_classifier,
    load_tokenizer,
    lora_config,
    resolve_model,
)
from stages.params import LoraParams, ModelParams

QUESTIONS_1 = ["Can I drink on antibiotics?", "Is a rash after penicillin an allergy?", "How long does flu last?"]
QUESTIONS_2 = ["Is alcohol safe with azithromycin?", "What does a sunburn look like?", "When is flu over?"]


def test_default_model_resolves_to_offline_copy():
    path = resolve_model(DEFAULT_MODEL)
    assert path != DEFAULT_MODEL and path.endswith("model")
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256((Path(path) / "model.safetensors").read_bytes()).hexdigest()
    assert digest == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_gpt2_reference_config_trainable_params():
    """Full-size GPT-2 small, LoRA r=8 on c_attn + c_proj, plus the score head."""
    config = GPT2Config(num_labels=2, pad_token_id=50256)
    model = add_lora(GPT2ForSequenceClassification(config), LoraParams(r=8, alpha=32, dropout=0.1))
    trainable, total = model.get_nb_trainable_parameters()
    assert (trainable, total) == (812_544, 125_253_888)
    peft_config = model.peft_config["default"]
    assert peft_config.fan_in_fan_out is True
    assert set(peft_config.target_modules) == {"c_attn", "c_proj"}
    assert "score" in peft_config.modules_to_save


def test_gpt2_tokenizer_pads_with_eos_and_separates_questions(tiny_gpt2):
    tokenizer = load_tokenizer(ModelParams(name=str(tiny_gpt2)))
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    ids = encode_pairs(tokenizer, ["Hello world"], ["Hello world"], 32)["input_ids"][0]
    assert ids == [15496, 995, 198, 15496, 995]  # "\n" (198) between the questions
    model = load_classifier(ModelParams(name=str(tiny_gpt2)), tokenizer, seed=0)
    assert model.config.pad_token_id == tokenizer.eos_token_id


def test_bert_auto_targets_encoder_projections_only(tiny_bert):
    params = ModelParams(name=str(tiny_bert))
    model = add_lora(load_classifier(params, load_tokenizer(params), seed=0), LoraParams())
    wrapped = {name for name, module in model.named_modules() if hasattr(module, "lora_A")}
    leaves = {name.rsplit(".", 1)[-1] for name in wrapped}
    assert leaves == {"query", "key", "value", "dense"}
    assert not any("pooler" in name or "classifier" in name for name in wrapped)
    assert len(wrapped) == 2 * 6  # 2 layers x (q, k, v, attention out, intermediate, output)


def test_unknown_target_module_lists_the_models_layers(tiny_bert):
    params = ModelParams(name=str(tiny_bert))
    model = load_classifier(params, load_tokenizer(params), seed=0)
    with pytest.raises(PipelineError, match=r"no module named 'c_attn'; its linear layers are: classifier, dense, key, query, value"):
        lora_config(model, LoraParams(target_modules=["query", "c_attn"]))


def test_unknown_model_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError, match=r"cannot load model 'no-such-org/no-such-model'.*local directory.*all-MiniLM-L6-v2"):
        load_tokenizer(ModelParams(name="no-such-org/no-such-model"))


def test_seeded_head_is_reproducible(tiny_bert):
    params = ModelParams(name=str(tiny_bert))
    tokenizer = load_tokenizer(params)
    first = load_classifier(params, tokenizer, seed=3).classifier.weight
    again = load_classifier(params, tokenizer, seed=3).classifier.weight
    other = load_classifier(params, tokenizer, seed=4).classifier.weight
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.fixture(scope="module")
def gpt2_project(tmp_path_factory, tiny_gpt2):
    """prepare, finetune and evaluate on the tiny GPT-2, run as the stage commands."""
    project = make_project(tmp_path_factory.mktemp("gpt2") / "project", tiny_gpt2)
    for stage in ("prepare", "finetune", "evaluate"):
        run([sys.executable, "-m", f"stages.{stage}"], cwd=project)
    return project


def test_gpt2_adapter_saved_with_head(gpt2_project):
    adapter = gpt2_project / "models" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    config = read_json(adapter / "adapter_config.json")
    assert set(config["target_modules"]) == {"c_attn", "c_proj"} and config["fan_in_fan_out"] is True
    assert "score" in config["modules_to_save"]
    from safetensors import safe_open

    with safe_open(adapter / "adapter_model.safetensors", "pt") as f:
        assert any("score" in key for key in f.keys())
    assert not list((gpt2_project / ".tmp").glob("*"))  # no scratch left behind


def test_reloaded_adapter_reproduces_saved_predictions(gpt2_project, monkeypatch):
    """A fresh process reload of the adapter gives the probabilities evaluate wrote."""
    monkeypatch.chdir(gpt2_project)
    from stages.modeling import load_trained, predict_proba
    from stages.params import load_params

    params = load_params()
    model, tokenizer = load_trained(params.model, params.train.seed)
    saved = pd.read_csv("results/lora/predictions.csv")
    probs = predict_proba(model, tokenizer, saved["question_1"], saved["question_2"], params.model.max_length, 4,
                          both_orders=params.eval.average_orders)
    assert probs.round(6).tolist() == pytest.approx(saved["prob_similar"].tolist(), abs=2e-6)


def test_predict_cli_answers_a_pair_and_a_csv(gpt2_project, tmp_path):
    out = run([sys.executable, "-m", "stages.predict", "Can I drink on antibiotics?", "Is alcohol safe with azithromycin?"],
              cwd=gpt2_project).stdout
    assert out.startswith(("similar (label 1", "different (label 0")) and "P(similar) = 0." in out
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"question_1": ["a cold", "a rash"], "question_2": ["a flu", "a burn"]}).to_csv(pairs, index=False)
    run([sys.executable, "-m", "stages.predict", "--csv", str(pairs), "--out", str(tmp_path / "scored.csv")], cwd=gpt2_project)
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert list(scored.columns) == ["question_1", "question_2", "prob_similar", "label"] and len(scored) == 2


def test_predict_without_adapter_says_run_dvc_repro(tmp_path):
    project = make_project(tmp_path / "project")
    result = run([sys.executable, "-m", "stages.predict", "a", "b"], cwd=project, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "predict: error: no trained adapter in models/adapter: run `dvc repro` first"


def test_model_dropout_param_sets_every_dropout_layer(tiny_bert):
    params = ModelParams(name=str(tiny_bert), dropout=0.0)
    tokenizer = load_tokenizer(params)
    model = load_classifier(params, tokenizer, seed=0).train()
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    batch = tokenizer(QUESTIONS_1, QUESTIONS_2, padding=True, return_tensors="pt")
    with torch.no_grad():  # no dropout left: training mode is deterministic
        assert torch.equal(model(**batch).logits, model(**batch).logits)
    kept = load_classifier(ModelParams(name=str(tiny_bert)), tokenizer, seed=0)
    assert {m.p for m in kept.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}  # the config's


def test_both_orders_average_is_symmetric(tiny_bert):
    from stages.modeling import predict_proba

    params = ModelParams(name=str(tiny_bert))
    tokenizer = load_tokenizer(params)
    model = load_classifier(params, tokenizer, seed=0)
    forward = predict_proba(model, tokenizer, QUESTIONS_1, QUESTIONS_2, 32, 2)
    backward = predict_proba(model, tokenizer, QUESTIONS_2, QUESTIONS_1, 32, 2)
    assert not forward == pytest.approx(backward)  # a cross-encoder is not symmetric by itself
    both = predict_proba(model, tokenizer, QUESTIONS_1, QUESTIONS_2, 32, 2, both_orders=True)
    assert both == pytest.approx((forward + backward) / 2)
    assert both == pytest.approx(predict_proba(model, tokenizer, QUESTIONS_2, QUESTIONS_1, 32, 2, both_orders=True))


def test_pair_collator_shows_each_pair_in_a_seeded_random_order(tiny_bert, monkeypatch, tmp_path):
    from stages.finetune import PairCollator, tokenized

    monkeypatch.chdir(tmp_path)
    split = tmp_path / "data" / "prepared"
    split.mkdir(parents=True)
    n = 200
    pd.DataFrame({"dr_id": 1, "question_1": [f"first question {i}" for i in range(n)],
                  "question_2": [f"second one {i} here" for i in range(n)], "label": [i % 2 for i in range(n)]}
                 ).to_csv(split / "train.csv", index=False)
    tokenizer = load_tokenizer(ModelParams(name=str(tiny_bert)))
    dataset = tokenized("train", tokenizer, 48, swapped=True)
    features = [dataset[i] for i in range(n)]

    def firsts(seed):
        batch = PairCollator(tokenizer, seed)(features)
        assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
        assert batch["labels"].tolist() == [i % 2 for i in range(n)]
        return [tokenizer.decode(ids[1:3]) for ids in batch["input_ids"]]  # the first question's first words

    first = firsts(seed=1)
    assert 60 < first.count("second one") < 140 and first.count("second one") + first.count("first question") == n
    assert firsts(seed=1) == first and firsts(seed=2) != first
    # Without swapped columns (validation), the pairs pass through in their order.
    plain = PairCollator(tokenizer, 1)([{k: v for k, v in f.items() if not k.startswith("swapped_")} for f in features])
    assert all(tokenizer.decode(ids[1:3]) == "first question" for ids in plain["input_ids"])
