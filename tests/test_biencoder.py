"""The bi-encoder (model.architecture: bi-encoder): mqp.biencoder's pooling and similarity head,
symmetric scores, and the pipeline on GPT-2 with last-token pooling. (Its `dvc repro`, reload and
train.epochs=0 runs are test_untrained.py's and test_lora.py's, for both architectures.)"""

import numpy as np
import pytest
import torch

from helpers import QUESTIONS_1, QUESTIONS_2, STAGES, read_json, tiny_params
from mqp import paths
from mqp.biencoder import RANKING_SCALE, BiEncoder, anchor_loss, batch_negatives_loss, pool, ranking_loss
from mqp.inference import score_pairs
from mqp.architectures import base_model
from mqp.lora import with_lora
from mqp.models import load_tokenizer
from mqp.paths import HEAD_FILE


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    pooled = pool(hidden, torch.tensor([[1, 1, 0]]), "mean")
    assert pooled.tolist() == [[1.0, 0.0]]  # mean (2, 0) of the real tokens, normalised


def test_last_pooling_takes_the_last_real_token():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [100.0, 0.0]], [[0.0, 2.0], [5.0, 0.0], [7.0, 7.0]]])
    pooled = pool(hidden, torch.tensor([[1, 1, 0], [1, 1, 1]]), "last")
    torch.testing.assert_close(pooled, torch.tensor([[0.0, 1.0], [2 ** -0.5, 2 ** -0.5]]))


def test_forward_is_a_sigmoid_of_the_scaled_cosine(tiny_bert):
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder"})
    tokenizer = load_tokenizer(params.model)
    model = base_model(params, tokenizer).eval()
    sides = [tokenizer(questions, padding=True, return_tensors="pt") for questions in (QUESTIONS_1, QUESTIONS_2)]
    inputs = {f"{key}_{side}": value for side, encoded in zip("12", sides) for key, value in encoded.items()}
    labels = torch.tensor([1, 0, 1])
    with torch.no_grad():
        out = model(labels=labels, **inputs)
        cosine = (model.embed(**sides[0]) * model.embed(**sides[1])).sum(-1)
        logit = model.scale * cosine + model.bias
        torch.testing.assert_close(torch.softmax(out.logits, -1)[:, 1], torch.sigmoid(logit))
        torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(logit, labels.float()))


def test_ranking_loss_ranks_each_similar_rewrite_among_the_batch():
    """Rows: (q1=a, similar), (q1=a, dissimilar), (q1=b, similar). Anchors are the similar rows; each
    scores every question_2 of the batch, and its own rewrite is the target."""
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    second = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [1.0, 0.5], [0.1, 1.0]]), dim=-1)
    labels = torch.tensor([1, 0, 1])
    scores = RANKING_SCALE * torch.stack([first[0] @ second.T, first[2] @ second.T])
    by_hand = -(torch.log_softmax(scores[0], -1)[0] + torch.log_softmax(scores[1], -1)[2]) / 2
    torch.testing.assert_close(ranking_loss(first, second, labels), by_hand)
    assert ranking_loss(first, second, torch.tensor([0, 0, 0])) == 0  # no similar pair: nothing to rank


@pytest.mark.parametrize("weight, extra_loss", [
    ("train.ranking_weight", lambda model, first, second, labels: ranking_loss(first, second, labels)),
    ("train.batch_negatives_weight", lambda model, first, second, labels: batch_negatives_loss(first, second, model.logit)),
])
def test_a_weighted_loss_is_added_while_training_only(tiny_bert, weight, extra_loss):
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder", weight: 0.5})
    tokenizer = load_tokenizer(params.model)
    model = base_model(params, tokenizer)
    sides = [tokenizer(questions, padding=True, return_tensors="pt") for questions in (QUESTIONS_1, QUESTIONS_2)]
    inputs = {f"{key}_{side}": value for side, encoded in zip("12", sides) for key, value in encoded.items()}
    labels = torch.tensor([1, 0, 1])
    with torch.no_grad():
        first, second = model.embed(**sides[0]), model.embed(**sides[1])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(model.logit((first * second).sum(-1)), labels.float())
        model.eval()
        torch.testing.assert_close(model(labels=labels, **inputs).loss, bce)  # validation: the log loss alone
        model.train()
        model.encoder.eval()  # no dropout, so the embeddings above are the training pass's
        torch.testing.assert_close(model(labels=labels, **inputs).loss, bce + 0.5 * extra_loss(model, first, second, labels))


def test_the_anchor_holds_lora_embeddings_to_the_base_models(tiny_bert):
    """train.anchor_weight: 1 - cosine of each question's LoRA embedding with the base model's (the
    adapter off), averaged over the batch's questions; zero for an untrained adapter, whose update
    is zero; the base side takes no gradient."""
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder", "train.anchor_weight": 0.5})
    tokenizer = load_tokenizer(params.model)
    model = with_lora(base_model(params, tokenizer), params)
    sides = [tokenizer(questions, padding=True, return_tensors="pt") for questions in (QUESTIONS_1, QUESTIONS_2)]
    inputs = {f"{key}_{side}": value for side, encoded in zip("12", sides) for key, value in encoded.items()}
    labels = torch.tensor([1, 0, 1])

    def bce_and_anchor():
        with torch.no_grad():
            trained = torch.cat([model.embed(**side) for side in sides])
            with model.encoder.disable_adapter():
                base = torch.cat([model.embed(**side) for side in sides])
            logit = model.logit((trained[:3] * trained[3:]).sum(-1))
        return torch.nn.functional.binary_cross_entropy_with_logits(logit, labels.float()), anchor_loss(trained, base)

    model.train()
    model.encoder.eval()  # no dropout
    bce, anchor = bce_and_anchor()
    assert anchor.abs() < 1e-6  # LoRA's B starts at zero: the same embeddings
    torch.testing.assert_close(model(labels=labels, **inputs).loss, bce)
    with torch.no_grad():
        for name, weight in model.encoder.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    bce, anchor = bce_and_anchor()
    assert anchor > 1e-3
    loss = model(labels=labels, **inputs).loss
    torch.testing.assert_close(loss, bce + 0.5 * anchor)
    loss.backward()
    grads = {name: weight.grad for name, weight in model.named_parameters() if weight.grad is not None}
    assert grads and all("lora_" in name or name in ("scale", "bias") for name in grads)


def test_anchor_loss_by_hand():
    trained = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=-1)
    base = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(anchor_loss(trained, base), torch.tensor((0 + (1 - 2 ** -0.5)) / 2))


def test_batch_negatives_loss_by_hand():
    """Each question_1 against the other question_1s' rewrites, labelled dissimilar; a question_1's
    own two pairs (one embedding, embed_each_once) are left out."""
    first = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    second = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 1.0]]), dim=-1)
    logit = lambda cosine: 2 * cosine - 1  # noqa: E731
    cosines = torch.tensor([first[0] @ second[2], first[1] @ second[2], first[2] @ second[0], first[2] @ second[1]])
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(logit(cosines), torch.zeros(4))
    torch.testing.assert_close(batch_negatives_loss(first, second, logit), by_hand)
    assert batch_negatives_loss(first[:2], second[:2], logit) == 0  # one question_1: no random pair


def test_a_question_repeated_in_a_batch_is_encoded_once_with_the_same_loss_and_gradients(tiny_bert):
    """Both pairs of a question_1 in one batch (QuestionGroupedSampler): the encoder sees it once,
    and training is unchanged: the loss and every gradient are those of encoding each copy."""
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder"})
    tokenizer = load_tokenizer(params.model)
    model = with_lora(base_model(params, tokenizer), params)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    first = [QUESTIONS_1[0], QUESTIONS_1[0], QUESTIONS_1[1], QUESTIONS_1[1], QUESTIONS_1[2]]
    sides = [tokenizer(questions, padding=True, return_tensors="pt") for questions in (first, QUESTIONS_2 + QUESTIONS_1[:2])]
    inputs = {f"{key}_{side}": value for side, encoded in zip("12", sides) for key, value in encoded.items()}
    labels = torch.tensor([1, 0, 1, 0, 1])
    rows = []
    hook = model.encoder.register_forward_hook(lambda module, args, kwargs, out: rows.append(len(kwargs["input_ids"])),
                                               with_kwargs=True)
    model(labels=labels, **inputs).loss.backward()
    hook.remove()
    assert rows == [3, 5]  # question_1: three distinct of five
    once = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    logit = model.logit((model.embed(**sides[0]) * model.embed(**sides[1])).sum(-1))
    torch.nn.functional.binary_cross_entropy_with_logits(logit, labels.float()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(once[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_head_state_round_trips(tiny_bert):
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder"})
    model = base_model(params, load_tokenizer(params.model))
    other = BiEncoder(model.encoder, "mean")
    with torch.no_grad():
        model.scale.fill_(3.5), model.bias.fill_(-1.25)
    other.load_head_state(model.head_state())
    assert (other.scale.item(), other.bias.item()) == (3.5, -1.25)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_score_pairs_is_symmetric_in_the_two_questions(tiny_bert, pooling):
    params = tiny_params(tiny_bert, {"model.architecture": "bi-encoder", "model.pooling": pooling})
    tokenizer = load_tokenizer(params.model)
    model = with_lora(base_model(params, tokenizer), params)
    with torch.no_grad():  # a trained-looking adapter: LoRA's B moved off zero
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    model.eval()
    forward = score_pairs(model, tokenizer, QUESTIONS_1, QUESTIONS_2, params)
    assert score_pairs(model, tokenizer, QUESTIONS_2, QUESTIONS_1, params) == pytest.approx(forward, abs=1e-6)
    assert len(set(np.round(forward, 6))) == 3  # and it does tell the pairs apart


# --- the pipeline with model.architecture=bi-encoder ---------------------------------------------


@pytest.mark.slow
def test_gpt2_biencoder_with_last_token_pooling_runs(gpt2_biencoder_project):
    """Every stage on the tiny GPT-2 as a bi-encoder with model.pooling=last."""
    project, output, _ = gpt2_biencoder_project
    assert all(any(line.startswith(f"{name}: ") for line in output.splitlines()) for name in STAGES)
    adapter = project / paths.ADAPTER_DIR
    config = read_json(adapter / "adapter_config.json")
    assert set(config["target_modules"]) == {"c_attn", "c_proj"} and config["fan_in_fan_out"] is True
    assert config["task_type"] == "FEATURE_EXTRACTION" and (adapter / HEAD_FILE).exists()
    lora = read_json(project / paths.LORA_REPORT)
    assert lora["test"]["n"] > 0 and 0 <= lora["test"]["accuracy"] <= 1 and "vs_zeroshot" in lora
