"""mqp.lora: which layers LoRA adapts (GPT-2, BERT-like, a list), wrapping either architecture, and
adapters saved and reloaded (safetensors, the heads with them) to the same scores."""

import pytest
import torch
from safetensors import safe_open
from transformers import GPT2Config, GPT2ForSequenceClassification

from helpers import (PROJECT_OF, QUESTIONS_1, QUESTIONS_2, make_workdir, project_params, read_json,
                     repo_params, set_params, tiny_params)
from mqp.biencoder import INITIAL_BIAS, INITIAL_SCALE, BiEncoder
from mqp.architectures import architecture_for, base_model, bi_encoder
from mqp.errors import PipelineError
from mqp.inference import score_pairs
from mqp.lora import adapted_layers, add_lora, for_training, load_trained, lora_config, save_trained, with_lora
from mqp.models import load_classifier, load_tokenizer
from mqp.paths import ADAPTER_DIR, DVCLIVE_PLOTS, HEAD_FILE, LORA_REPORT, LORA_RESULTS, MERGED_DIR, TRAIN_REPORT
from mqp.reports import read_predictions
from mqp.train_records import trainable_parameters

REFERENCE_LORA = {"lora.r": 8, "lora.alpha": 32, "lora.dropout": 0.1, "lora.target_modules": "auto"}


@pytest.mark.slow
def test_gpt2_reference_config_trainable_params():
    """Full-size GPT-2 small, the reference recipe's LoRA (r=8, alpha 32, dropout 0.1) on c_attn +
    c_proj, plus the score head: the count the README quotes."""
    config = GPT2Config(num_labels=2, pad_token_id=50256)
    model = add_lora(GPT2ForSequenceClassification(config), repo_params(REFERENCE_LORA).lora)
    trainable, total = model.get_nb_trainable_parameters()
    assert (trainable, total) == (812_544, 125_253_888)
    peft_config = model.peft_config["default"]
    assert peft_config.fan_in_fan_out is True
    assert set(peft_config.target_modules) == {"c_attn", "c_proj"}
    assert "score" in peft_config.modules_to_save


def test_bert_auto_targets_encoder_projections_only(tiny_bert):
    params = tiny_params(tiny_bert)
    model = add_lora(load_classifier(params.model, load_tokenizer(params.model), seed=0), params.lora)
    wrapped = {name for name, module in model.named_modules() if hasattr(module, "lora_A")}
    leaves = {name.rsplit(".", 1)[-1] for name in wrapped}
    assert leaves == {"query", "key", "value", "dense"}
    assert adapted_layers(model) == ["dense", "key", "query", "value"]  # what the model card names
    assert not any("pooler" in name or "classifier" in name for name in wrapped)
    assert len(wrapped) == 2 * 6  # 2 layers x (q, k, v, attention out, intermediate, output)


def test_target_modules_list_is_used_as_given(tiny_bert):
    params = tiny_params(tiny_bert, {"lora.target_modules": ["query", "value"]})
    model = with_lora(base_model(params, load_tokenizer(params.model)), params)
    wrapped = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert wrapped == {"query", "value"}
    assert adapted_layers(model) == ["query", "value"]  # through the bi-encoder's encoder too


def test_unknown_target_module_lists_the_models_layers(tiny_bert):
    params = tiny_params(tiny_bert, {"lora.target_modules": ["query", "c_attn"]})
    model = load_classifier(params.model, load_tokenizer(params.model), seed=0)
    with pytest.raises(PipelineError, match=r"no module named 'c_attn'; its linear layers are: classifier, dense, key, query, value$"):
        lora_config(model, params.lora)


def test_finetune_unknown_target_module_is_one_line(tmp_path, tiny_bert, in_project, capsys):
    """Through the stage: the one line, and no adapter or train.json written."""
    from stages import finetune, prepare

    project = in_project(make_workdir(tmp_path / "project", tiny_bert, overrides={"model.architecture": "cross-encoder"}))
    prepare.main()
    set_params(project, {"lora.target_modules": ["nope"]})
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        finetune.main()
    assert exit_.value.code == 1
    assert capsys.readouterr().err == ("finetune: error: lora.target_modules: bert model has no module named 'nope'; "
                                       "its linear layers are: classifier, dense, key, query, value\n")
    assert not (project / ADAPTER_DIR).exists() and not (project / TRAIN_REPORT).exists()


def perturb(model) -> None:
    """Move every trainable weight (LoRA's B starts at zero: an untouched adapter changes nothing)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)


@pytest.mark.parametrize("model_dir, architecture", [("tiny_gpt2", "cross-encoder"), ("tiny_bert", "bi-encoder")])
def test_saved_adapter_reloads_to_the_same_scores(request, tmp_path, model_dir, architecture):
    params = tiny_params(request.getfixturevalue(model_dir), {"model.architecture": architecture})
    tokenizer = load_tokenizer(params.model)
    model = with_lora(base_model(params, tokenizer), params)
    perturb(model)
    expected = score_pairs(model.eval(), tokenizer, QUESTIONS_1, QUESTIONS_2, params)
    folder = tmp_path / "adapter"
    folder.mkdir()
    save_trained(model, params, folder)

    config = read_json(folder / "adapter_config.json")
    assert config["base_model_name_or_path"] == params.model.name
    assert not list(folder.glob("*.bin"))  # safetensors only
    reloaded = load_trained(params, tokenizer, folder)
    assert not reloaded.training  # ready for inference
    assert score_pairs(reloaded, tokenizer, QUESTIONS_1, QUESTIONS_2, params) == pytest.approx(expected, abs=1e-6)
    untrained = score_pairs(base_model(params, tokenizer).eval(), tokenizer, QUESTIONS_1, QUESTIONS_2, params)
    assert untrained != pytest.approx(expected, abs=1e-3)  # the adapter and head were applied

    if architecture == "cross-encoder":  # GPT-2: Conv1D projections, the score head saved with the adapter
        assert set(config["target_modules"]) == {"c_attn", "c_proj"} and config["fan_in_fan_out"] is True
        assert "score" in config["modules_to_save"] and config["task_type"] == "SEQ_CLS"
        with safe_open(folder / "adapter_model.safetensors", "pt") as f:
            assert any("score" in key for key in f.keys())
    else:  # the bi-encoder's scale and bias beside the adapter
        assert config["task_type"] == "FEATURE_EXTRACTION"
        assert isinstance(reloaded, BiEncoder)
        assert (reloaded.scale.item(), reloaded.bias.item()) == (model.scale.item(), model.bias.item())
        with safe_open(folder / HEAD_FILE, "pt") as f:
            assert set(f.keys()) == {"scale", "bias"}


@pytest.mark.parametrize("architecture", ["cross-encoder", "bi-encoder"])
def test_lora_init_is_seeded_by_train_seed(tiny_bert, architecture):
    """The same params give the same untrained adapter in any process: finetune's results depend
    on train.seed, not on the state of torch's global generator (seeded from the OS at start)."""
    params = tiny_params(tiny_bert, {"model.architecture": architecture})
    tokenizer = load_tokenizer(params.model)
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # as if a fresh process
        model = with_lora(base_model(params, tokenizer), params)
        states.append({name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad})
    assert states[0].keys() == states[1].keys() and any("lora_A" in name for name in states[0])
    different = [name for name in states[0] if not torch.equal(states[0][name], states[1][name])]
    assert not different, f"{len(different)} LoRA/head tensors depend on the global RNG, e.g. {different[0]}"


def test_load_trained_without_adapter_says_run_dvc_repro(tmp_path, tiny_bert):
    params = tiny_params(tiny_bert)
    with pytest.raises(PipelineError, match=f"^no trained adapter in {tmp_path}: run `dvc repro` first$"):
        load_trained(params, load_tokenizer(params.model), tmp_path)


def test_adapter_of_the_other_architecture_is_refused(tmp_path, tiny_bert):
    cross = tiny_params(tiny_bert, {"model.architecture": "cross-encoder"})
    tokenizer = load_tokenizer(cross.model)
    save_trained(with_lora(base_model(cross, tokenizer), cross), cross, tmp_path)
    bi = tiny_params(tiny_bert, {"model.architecture": "bi-encoder"})
    with pytest.raises(PipelineError, match=r"is not a bi-encoder's \(task type SEQ_CLS\); run `dvc repro`"):
        load_trained(bi, tokenizer, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(PROJECT_OF))
def test_reloaded_adapter_reproduces_evaluates_predictions(request, architecture, monkeypatch):
    """The adapter a `dvc repro` saved, reloaded in a fresh model, gives the probabilities that
    evaluate wrote."""
    project, _ = request.getfixturevalue(PROJECT_OF[architecture])
    monkeypatch.chdir(project)
    params = project_params(project)
    tokenizer = load_tokenizer(params.model)
    model = load_trained(params, tokenizer, ADAPTER_DIR)
    config = read_json(ADAPTER_DIR / "adapter_config.json")
    if params.model.architecture == "bi-encoder":  # the trained head, not the initial one
        assert config["task_type"] == "FEATURE_EXTRACTION" and (ADAPTER_DIR / HEAD_FILE).exists()
        assert (model.scale.item(), model.bias.item()) != (INITIAL_SCALE, INITIAL_BIAS)
    else:  # the classifier head saved with the adapter
        assert config["task_type"] == "SEQ_CLS" and "classifier" in config["modules_to_save"]
    saved = read_predictions(LORA_RESULTS)
    probs = score_pairs(model, tokenizer, saved["question_1"], saved["question_2"], params)
    assert probs.round(6).tolist() == pytest.approx(saved["prob_similar"].tolist(), abs=2e-6)


@pytest.mark.parametrize("architecture", ["cross-encoder", "bi-encoder"])
def test_full_fine_tuning_trains_every_weight_and_reloads_to_the_same_scores(tmp_path, tiny_bert, architecture):
    """train.method full: no LoRA, every weight trainable; saved as a whole model (no adapter config)
    that load_trained reloads to the same scores, export's merge leaves as it is, and the other
    architecture refuses."""
    params = tiny_params(tiny_bert, {"model.architecture": architecture, "train.method": "full"})
    tokenizer = load_tokenizer(params.model)
    model = for_training(base_model(params, tokenizer), params)
    assert not adapted_layers(model) and all(p.requires_grad for p in model.parameters())
    perturb(model)
    expected = score_pairs(model.eval(), tokenizer, QUESTIONS_1, QUESTIONS_2, params)
    save_trained(model, params, tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "adapter_config.json").exists()
    reloaded = load_trained(params, tokenizer, tmp_path)
    assert not reloaded.training
    assert score_pairs(reloaded, tokenizer, QUESTIONS_1, QUESTIONS_2, params) == pytest.approx(expected, abs=1e-6)
    assert score_pairs(architecture_for(params).merge(reloaded), tokenizer, QUESTIONS_1, QUESTIONS_2, params) == pytest.approx(expected, abs=1e-6)
    other = "cross-encoder" if architecture == "bi-encoder" else "bi-encoder"
    with pytest.raises(PipelineError, match=f"the model in {tmp_path} is not a {other}'s; run `dvc repro`"):
        load_trained(tiny_params(tiny_bert, {"model.architecture": other}), tokenizer, tmp_path)


def test_finetune_full_writes_a_whole_model_and_its_card(tmp_path, tiny_bert, in_project):
    """Through the stages: finetune with train.method full, then evaluate and export read the whole model."""
    from stages import baseline, evaluate, export, finetune, prepare, zeroshot

    project = in_project(make_workdir(tmp_path / "project", tiny_bert,
                                      overrides={"train.method": "full", "train.learning_rate": 1e-3, "train.epochs": 1}))
    for stage_ in (prepare, baseline, zeroshot, finetune, evaluate, export):
        stage_.main()
    summary = read_json(project / TRAIN_REPORT)
    assert summary["trainable_params"] == summary["total_params"]  # every weight, the head's two included
    card = (project / ADAPTER_DIR / "README.md").read_text()
    assert card.count("Full fine-tuning (`train.method: full`)") == 1 and "LoRA (PEFT)" not in card
    assert (project / LORA_RESULTS / "validation_predictions.csv").exists()
    assert "fully fine-tuned" in (project / MERGED_DIR / "README.md").read_text()


def merged_weights(model) -> dict[str, torch.Tensor]:
    """The encoder's weights with its LoRA update folded in (PEFT's merge, on a copy)."""
    import copy

    return {name: value.clone() for name, value in copy.deepcopy(model.encoder).merge_and_unload().state_dict().items()}


def test_soup_is_the_exact_mean_of_the_members(tmp_path, tiny_bert):
    """train.members: the soup's merged weights are the mean of the members' merged weights (its
    LoRA update the mean of theirs), its head the mean of theirs, and it saves and reloads as one
    adapter of rank members × r."""
    params = tiny_params(tiny_bert, {"train.members": 3})
    tokenizer = load_tokenizer(params.model)
    members, folders = [], []
    for member in range(3):
        member_params = params.model_copy(update={"train": params.train.model_copy(update={"seed": 42 + member})})
        model = with_lora(base_model(member_params, tokenizer), member_params)
        torch.manual_seed(member)
        perturb(model)
        members.append(model.eval())
        folders.append(tmp_path / f"member_{member}")
        save_trained(model, member_params, folders[-1])
    souped = bi_encoder.soup(base_model(params, tokenizer), folders)

    expected = {name: torch.stack([merged_weights(m)[name] for m in members]).mean(0) for name in merged_weights(members[0])}
    got = merged_weights(souped)
    assert got.keys() == expected.keys()
    assert all(torch.allclose(got[name], expected[name], atol=1e-6) for name in expected)
    assert not torch.allclose(got["encoder.layer.0.attention.self.query.weight"],
                              merged_weights(members[0])["encoder.layer.0.attention.self.query.weight"], atol=1e-3)
    assert souped.scale.item() == pytest.approx(sum(m.scale.item() for m in members) / 3)
    assert souped.bias.item() == pytest.approx(sum(m.bias.item() for m in members) / 3)

    save_trained(souped, params, tmp_path / "soup")
    assert read_json(tmp_path / "soup" / "adapter_config.json")["r"] == 3 * params.lora.r
    assert not (tmp_path / "soup" / "member_0").exists()  # one adapter, not the members beside it
    reloaded = load_trained(params, tokenizer, tmp_path / "soup")
    assert score_pairs(reloaded, tokenizer, QUESTIONS_1, QUESTIONS_2, params) == pytest.approx(
        score_pairs(souped.eval(), tokenizer, QUESTIONS_1, QUESTIONS_2, params), abs=1e-6)


def test_finetune_soup_trains_each_member_and_saves_their_mean(tmp_path, tiny_bert, in_project):
    """Through the stage: train.members=2 trains seeds 42 and 43 (their curves one after the other
    in dvclive/), and train.json gives each member's best epoch and the soup's validation metrics,
    which evaluate's validation figures equal."""
    from stages import baseline, evaluate, finetune, prepare, zeroshot
    from mqp.commands import predict

    project = in_project(make_workdir(tmp_path / "project", tiny_bert, overrides={"train.members": 2, "train.epochs": 2}))
    prepare.main()
    finetune.main()
    train = read_json(project / TRAIN_REPORT)
    assert [m["seed"] for m in train["members"]] == [42, 43]
    assert train["best_epoch"] == [m["best_epoch"] for m in train["members"]]
    one = with_lora(base_model(project_params(project), load_tokenizer(project_params(project).model)), project_params(project))
    assert train["trainable_params"] == 2 * trainable_parameters(one)[0]
    assert read_json(project / ADAPTER_DIR / "adapter_config.json")["r"] == 2 * 8
    steps = (project / DVCLIVE_PLOTS / "metrics" / "eval" / "f1.tsv").read_text().splitlines()[1:]
    assert len(steps) == 4  # 2 members x 2 epochs, logged one after another
    assert "A model soup (`train.members: 2`)" in (project / ADAPTER_DIR / "README.md").read_text()
    assert predict.adapter_kind() == "a soup of 2 LoRA r=8 adapters on"
    baseline.main()
    zeroshot.main()
    evaluate.main()
    validation = read_json(project / LORA_REPORT)["validation"]
    assert validation["accuracy"] == pytest.approx(train["validation"]["accuracy"])
    assert validation["f1"] == pytest.approx(train["validation"]["f1"])
