"""SMART adversarial regularisation (Jiang et al. 2020), as upstream ``mt_dnn/perturbation.py``.

The perturbation lives on the embedding output (after LayerNorm and dropout) and is fed to the
encoder layers without re-embedding; see SPEC §6 for every step.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from data_utils.errors import MTDNNInputError
from mt_dnn.distributed import DistContext, global_batch_randn
from mt_dnn.loss import Criterion
from mt_dnn.options import AdvOptions
from mt_dnn.tasks import TaskHandler

if TYPE_CHECKING:
    from mt_dnn.batch import Batch
    from mt_dnn.matcher import SANBertNetwork

logger = logging.getLogger(__name__)
NORMS = ("inf", "l2", "l1")


def normalize_delta(delta: torch.Tensor, p_norm: str, per_sentence: bool, epsilon: float) -> torch.Tensor:
    """Scale a perturbation per token (or per sentence) to unit ``inf``/``l2`` norm, or take its sign (``l1``)."""
    if p_norm == "l1":
        return delta.sign()
    if per_sentence:
        flat = delta.reshape(delta.size(0), -1)
        size = flat.abs().max(dim=-1).values if p_norm == "inf" else flat.norm(dim=-1)
        size = size.view(-1, *([1] * (delta.dim() - 1)))
    else:
        size = delta.abs().max(dim=-1, keepdim=True).values if p_norm == "inf" else delta.norm(dim=-1, keepdim=True)
    return delta / (size + epsilon)


def check_p_norm(p_norm: str) -> None:
    """One line naming the choices when ``--adv_p_norm`` is not a known norm."""
    if p_norm not in NORMS:
        raise MTDNNInputError(f"--adv_p_norm must be one of {', '.join(NORMS)}, got {p_norm!r}")


class SmartPerturbation:
    """Builds the adversarial term of one batch from its clean logits and embedding output."""

    def __init__(self, opts: AdvOptions, dist_ctx: DistContext = DistContext()):
        check_p_norm(opts.adv_p_norm)
        self.opts = opts
        # Under torchrun the noise of each example is the one it gets in one process (see global_batch_randn).
        self.dist = dist_ctx

    def adversarial_loss(
        self,
        network: SANBertNetwork,
        batch: Batch,
        task_id: int,
        clean_logits: torch.Tensor,
        embedding: torch.Tensor,
        handler: TaskHandler,
        adv_criterion: Criterion,
    ) -> torch.Tensor | None:
        """``adv_alpha × adv_loss(clean, perturbed)``, or None when the ascent gradient is not finite.

        ``embedding`` is the embedding output of the clean pass (``network(..., return_embedding=True)``);
        the ascent objective is the task type's (``handler.adversarial_ascent_loss``).
        """
        opts = self.opts
        mask = batch.attention_mask.unsqueeze(-1).to(embedding.dtype)
        clean_view = handler.distill_targets_view(clean_logits, batch).detach()

        def logits_with(delta: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
            return network(
                batch.input_ids, batch.token_type_ids, batch.attention_mask, task_id, embedding_output=base + delta
            )

        delta = (global_batch_randn(embedding, self.dist) * opts.adv_noise_var * mask).requires_grad_()
        for _ in range(opts.adv_k):
            # Only the perturbation needs a gradient in the ascent steps.
            adv_logits = logits_with(delta, embedding.detach())
            ascent = handler.adversarial_ascent_loss(handler.distill_targets_view(adv_logits, batch), clean_view)
            (grad,) = torch.autograd.grad(ascent, delta)
            if not torch.isfinite(grad.norm()):
                logger.warning("SMART: non-finite perturbation gradient on %s; adversarial term skipped", batch.dataset)
                return None
            delta = normalize_delta(
                delta + opts.adv_step_size * grad, opts.adv_p_norm, opts.adv_norm_level == 1, opts.adv_epsilon
            )
            delta = (delta * mask).detach().requires_grad_()
        adv_logits = logits_with(delta.detach(), embedding)
        clean, adv = handler.adversarial_pair(
            handler.distill_targets_view(clean_logits, batch), handler.distill_targets_view(adv_logits, batch)
        )
        return opts.adv_alpha * adv_criterion(clean, adv, ignore_index=-1)
