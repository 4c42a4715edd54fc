"""SMART against a hand-written reference at a step size where the ascent direction matters."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from data_utils.task_def import LossCriterion
from mt_dnn.loss import build_criterion, stable_kl
from mt_dnn.options import AdvOptions
from mt_dnn.perturbation import SmartPerturbation
from mt_dnn.tasks import get_task_handler


def reference_term(network, batch, logits, embedding, step_size: float, final_criterion) -> torch.Tensor:
    """SPEC §6 written out: noise, one ascent step on the stable KL, inf-normalise per token, final loss."""
    mask = batch.attention_mask.unsqueeze(-1).float()
    delta = (torch.randn_like(embedding) * 1e-5 * mask).requires_grad_()
    perturbed = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0,
                        embedding_output=embedding.detach() + delta)
    ascent = stable_kl(perturbed, logits.detach(), reduce=False)
    (grad,) = torch.autograd.grad(ascent, delta)
    moved = delta + step_size * grad  # ascent: along the gradient
    delta = moved / (moved.abs().max(dim=-1, keepdim=True).values + 1e-6) * mask
    adv_logits = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0,
                         embedding_output=embedding + delta.detach())
    return final_criterion(logits, adv_logits, ignore_index=-1)


@pytest.mark.parametrize("adv_loss", [LossCriterion.SymKlCriterion, LossCriterion.MseCriterion])
def test_smart_term_matches_the_reference_and_its_ascent_matters(adv_loss, task_defs, make_batch, build_network):
    # A classification task whose YAML sets adv_loss MseCriterion still ascends on the KL (by task type).
    cola = dataclasses.replace(task_defs["cola"], dropout_p=0.0, adv_loss=adv_loss)
    network = build_network([cola], bert_dropout_p=0.0).eval()
    batch = make_batch("cola", 4, task_def=cola)
    logits, embedding = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0, return_embedding=True)
    step = 50.0
    smart = SmartPerturbation(AdvOptions(adv_train=True, adv_step_size=step))
    criterion = build_criterion(adv_loss)
    torch.manual_seed(7)
    ours = smart.adversarial_loss(network, batch, 0, logits, embedding, get_task_handler(cola.task_type), criterion)
    torch.manual_seed(7)
    expected = reference_term(network, batch, logits, embedding, step, criterion)
    torch.manual_seed(7)
    descended = reference_term(network, batch, logits, embedding, -step, criterion)
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-9)
    # The step size is large enough that the sign of the step shows in the term.
    assert abs(descended.item() - expected.item()) > 1e-3 * abs(expected.item())


def test_no_noise_and_no_step_give_no_term_and_the_term_trains_the_encoder(task_defs, make_batch, build_network):
    cola = dataclasses.replace(task_defs["cola"], dropout_p=0.0)
    network = build_network([cola], bert_dropout_p=0.0).eval()
    batch = make_batch("cola", 4, task_def=cola)
    handler, criterion = get_task_handler(cola.task_type), build_criterion(LossCriterion.SymKlCriterion)
    logits, embedding = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0, return_embedding=True)
    still = SmartPerturbation(AdvOptions(adv_train=True, adv_noise_var=0.0, adv_step_size=0.0))
    assert still.adversarial_loss(network, batch, 0, logits, embedding, handler, criterion).abs().item() < 1e-12
    torch.manual_seed(3)
    term = SmartPerturbation(AdvOptions(adv_train=True, adv_step_size=50.0)).adversarial_loss(
        network, batch, 0, logits, embedding, handler, criterion
    )
    assert term.item() > 0
    network.zero_grad()
    term.backward()
    layer = network.bert.encoder.layer[0].attention.self.query.weight
    assert layer.grad is not None and layer.grad.abs().sum() > 0
