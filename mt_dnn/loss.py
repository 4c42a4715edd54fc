"""Training criteria (SPEC §5), keeping the original toolkit's class names and call signature.

Every criterion is called as ``criterion(input, target, weight=None, ignore_index=-1)``
(``RankCeCriterion`` also takes ``pairwise_size``) and returns ``alpha`` × the loss.
``input`` are logits; for the distribution losses (Kl, SymKl, NsKl, NsSymKl, JS, HL) ``target``
are logits too: p = softmax(input), q = softmax(target). Their leading dimensions are flattened,
so [B, C] and [B, L, C] both give N rows and "batchmean" divides by N.

For knowledge distillation the teacher's targets are probabilities: ``criterion.distill(logits,
soft_labels)`` uses them directly as q (Mse compares softmax(logits) with them; a single-output
regression head compares its raw score with the teacher's).

``weight`` holds per-sample weights: the loss is Σ w_i·loss_i / N, so all-ones weights give the
plain mean. Losses are computed in float32 whatever the logits' dtype.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from data_utils.task_def import LossCriterion

# ---------------------------------------------------------------- registry

LOSS_REGISTRY: dict[LossCriterion, type[Criterion]] = {}


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: make a criterion available under the ``LossCriterion`` member of its class name."""
    try:
        LOSS_REGISTRY[LossCriterion[cls.__name__]] = cls
    except KeyError:
        raise ValueError(f"{cls.__name__} is not a LossCriterion name") from None
    return cls


# Floor for probabilities given as numbers (soft labels, JS's mixture) before taking a log.
_TINY = 1e-30


class Criterion(nn.Module):
    """Base of all criteria: a named loss scaled by ``alpha``."""

    def __init__(self, alpha: float = 1.0, name: str = "criterion"):
        super().__init__()
        self.alpha = alpha
        self.name = name

    def distill(self, input: torch.Tensor, soft_labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of logits against teacher probabilities; criteria that cannot do this raise TypeError."""
        raise TypeError(f"{type(self).__name__} cannot be used as kd_loss (no soft-label form)")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, name={self.name!r}"


# ---------------------------------------------------------------- shared helpers


def _row_weights(weight: torch.Tensor | None, n_rows: int, leading: Sequence[int]) -> torch.Tensor | None:
    """Per-row weights as a flat float vector: one per row, or one per example spread over its tokens."""
    if weight is None:
        return None
    weight = weight.float()
    if weight.numel() == n_rows:
        return weight.reshape(n_rows)
    if len(leading) > 1 and weight.numel() == leading[0]:
        return weight.reshape(leading[0], *([1] * (len(leading) - 1))).expand(*leading).reshape(n_rows)
    raise ValueError(f"weight has {weight.numel()} values for {n_rows} rows (leading shape {tuple(leading)})")


def _weighted_mean(rows: torch.Tensor, weight: torch.Tensor | None, count: torch.Tensor | int | None = None) -> torch.Tensor:
    """Σ w_i·rows_i / count (count defaults to the number of rows; never below 1)."""
    if weight is not None:
        rows = rows * weight
    if count is None:
        count = rows.numel()
    if isinstance(count, torch.Tensor):
        return rows.sum() / count.clamp_min(1)
    return rows.sum() / max(count, 1)


def _cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, ignore_index: int
) -> torch.Tensor:
    """Mean cross-entropy of [N, C] logits over the N rows whose target is not ``ignore_index``."""
    if logits.dim() != 2:
        raise ValueError(f"expected logits [N, C], got shape {tuple(logits.shape)}")
    target = target.reshape(-1).long()
    if target.numel() != logits.size(0):
        raise ValueError(f"{target.numel()} targets for {logits.size(0)} rows of logits")
    rows = F.cross_entropy(logits.float(), target, reduction="none", ignore_index=ignore_index)
    weight = _row_weights(weight, logits.size(0), [logits.size(0)])
    return _weighted_mean(rows, weight, (target != ignore_index).sum())


class _Dist(NamedTuple):
    """A categorical distribution over the last axis, rows flattened: log-probabilities and probabilities."""

    log: torch.Tensor
    prob: torch.Tensor

    @staticmethod
    def from_logits(logits: torch.Tensor) -> _Dist:
        """Distribution softmax(logits), as [N, C]."""
        log = F.log_softmax(logits.float().reshape(-1, logits.size(-1)), dim=-1)
        return _Dist(log, log.exp())

    @staticmethod
    def from_probs(probs: torch.Tensor) -> _Dist:
        """Distribution given by probabilities (e.g. a teacher's soft labels), as [N, C]."""
        prob = probs.float().reshape(-1, probs.size(-1))
        return _Dist(prob.clamp_min(_TINY).log(), prob)

    def detach(self) -> _Dist:
        """The same distribution with no gradient."""
        return _Dist(self.log.detach(), self.prob.detach())

    def sqrt(self) -> torch.Tensor:
        """Element-wise √prob, computed from the log so its gradient stays finite at tiny probabilities."""
        return torch.exp(0.5 * self.log)


def _kl_rows(target: _Dist, log_input: torch.Tensor) -> torch.Tensor:
    """Per-row KL(target ‖ input) = Σ_c t·(log t − log x), as ``kl_div(log x, t)`` computes it."""
    return (target.prob * (target.log - log_input)).sum(dim=-1)


def _log_odds(prob: torch.Tensor, epsilon: float) -> torch.Tensor:
    """r(z) = −log(1/(z + ε) − 1 + ε), a numerically safe logit of a probability."""
    return -torch.log(1.0 / (prob + epsilon) - 1.0 + epsilon)


def _stable_kl_rows(p_a: torch.Tensor, p_b: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Per-row 2·Σ_c p_a·(r(p_a) − r(p_b)) with both r terms detached: the gradient goes through p_a only."""
    gap = (_log_odds(p_a, epsilon) - _log_odds(p_b, epsilon)).detach()
    return 2.0 * (p_a * gap).sum(dim=-1)


def stable_kl(logit: torch.Tensor, target: torch.Tensor, epsilon: float = 1e-6, reduce: bool = True) -> torch.Tensor:
    """SMART's KL on log-odds between softmax(logit) and softmax(target): mean over rows, or the sum if not ``reduce``."""
    p_a = _Dist.from_logits(logit).prob
    p_b = _Dist.from_logits(target).prob
    rows = _stable_kl_rows(p_a, p_b, epsilon)
    return rows.mean() if reduce else rows.sum()


def _check_same_shape(input: torch.Tensor, target: torch.Tensor) -> None:
    """Targets (logits or soft labels) must have one value per input logit."""
    if input.shape != target.shape:
        raise ValueError(f"target of shape {tuple(target.shape)} for logits of shape {tuple(input.shape)}")


# ---------------------------------------------------------------- label criteria


@register_criterion
class CeCriterion(Criterion):
    """Cross-entropy of logits [B, C] against class indices [B]; distills with soft-target CE −Σ q·log p."""

    def __init__(self, alpha: float = 1.0, name: str = "Cross Entropy Criterion"):
        super().__init__(alpha, name)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -1
    ) -> torch.Tensor:
        """α · Σ w_i·CE_i / (number of non-ignored samples)."""
        return self.alpha * _cross_entropy(input, target, weight, ignore_index)

    def distill(self, input: torch.Tensor, soft_labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """α · mean over rows of −Σ_c q_c·log p_c."""
        _check_same_shape(input, soft_labels)
        p, q = _Dist.from_logits(input), _Dist.from_probs(soft_labels)
        rows = -(q.prob * p.log).sum(dim=-1)
        return self.alpha * _weighted_mean(rows, _row_weights(weight, rows.numel(), input.shape[:-1]))


@register_criterion
class SeqCeCriterion(Criterion):
    """Token cross-entropy of logits [B, L, C] (or [N, C]) against labels [B, L], ignoring ``ignore_index``."""

    def __init__(self, alpha: float = 1.0, name: str = "Seq Cross Entropy Criterion"):
        super().__init__(alpha, name)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -1
    ) -> torch.Tensor:
        """α · mean CE over the tokens whose label is not ``ignore_index`` (per-example weights spread over tokens)."""
        logits = input.reshape(-1, input.size(-1))
        target = target.reshape(-1).long()
        if target.numel() != logits.size(0):
            raise ValueError(f"{target.numel()} token labels for {logits.size(0)} token logits")
        rows = F.cross_entropy(logits.float(), target, reduction="none", ignore_index=ignore_index)
        weights = _row_weights(weight, rows.numel(), input.shape[:-1])
        return self.alpha * _weighted_mean(rows, weights, (target != ignore_index).sum())


@register_criterion
class SpanCeCriterion(Criterion):
    """½(CE(start) + CE(end)) for extractive QA: input (start_logits, end_logits), target (start, end)."""

    def __init__(self, alpha: float = 1.0, name: str = "Span Cross Entropy Criterion"):
        super().__init__(alpha, name)

    def forward(
        self,
        input: Sequence[torch.Tensor],
        target: Sequence[torch.Tensor] | torch.Tensor,
        weight: torch.Tensor | None = None,
        ignore_index: int = -1,
    ) -> torch.Tensor:
        """α · ½(CE(start_logits, start) + CE(end_logits, end)); target may be a pair or a [B, 2] tensor."""
        if len(input) != 2:
            raise ValueError("SpanCeCriterion expects input = (start_logits, end_logits)")
        start_logits, end_logits = input
        if isinstance(target, torch.Tensor):
            if target.dim() != 2 or target.size(1) != 2:
                raise ValueError(f"span target tensor must be [B, 2], got {tuple(target.shape)}")
            start, end = target[:, 0], target[:, 1]
        else:
            start, end = target
        loss = _cross_entropy(start_logits, start, weight, ignore_index) + _cross_entropy(
            end_logits, end, weight, ignore_index
        )
        return self.alpha * 0.5 * loss


@register_criterion
class RankCeCriterion(Criterion):
    """Cross-entropy over the k candidates of each sample: scores [B·k] or [B·k, 1] are viewed as [B, k]."""

    def __init__(self, alpha: float = 1.0, name: str = "Ranking Cross Entropy Criterion"):
        super().__init__(alpha, name)

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        ignore_index: int = -1,
        pairwise_size: int = 1,
    ) -> torch.Tensor:
        """α · CE of the [B, k] scores against the positive's index; target/weight have B values (or B·k, one per candidate)."""
        if input.numel() % pairwise_size:
            raise ValueError(f"{input.numel()} scores are not a multiple of pairwise_size {pairwise_size}")
        scores = input.reshape(-1, pairwise_size)
        return self.alpha * _cross_entropy(
            scores,
            self._per_sample(target, scores.size(0), pairwise_size, "target"),
            None if weight is None else self._per_sample(weight, scores.size(0), pairwise_size, "weight"),
            ignore_index,
        )

    @staticmethod
    def _per_sample(values: torch.Tensor, batch: int, pairwise_size: int, what: str) -> torch.Tensor:
        """One value per sample; a per-candidate layout (the sample's value repeated k times) is accepted."""
        if values.numel() == batch:
            return values.reshape(batch)
        if values.numel() == batch * pairwise_size:
            return values.reshape(batch, pairwise_size)[:, 0]
        raise ValueError(f"ranking {what} has {values.numel()} values for {batch} samples of {pairwise_size} candidates")


@register_criterion
class MseCriterion(Criterion):
    """Mean squared error with shapes matched explicitly ([B, 1] and [B] pair up; nothing else broadcasts)."""

    def __init__(self, alpha: float = 1.0, name: str = "MSE Regression Criterion"):
        super().__init__(alpha, name)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -1
    ) -> torch.Tensor:
        """α · Σ w_i·(x_i − y_i)² / B (rows with several outputs use their mean squared error)."""
        prediction, target = self._match(input.float(), target.float())
        return self.alpha * self._mean_rows((prediction - target) ** 2, weight)

    def distill(self, input: torch.Tensor, soft_labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """α · MSE between softmax(input) and the teacher's probabilities (raw score vs teacher score for one output)."""
        if input.size(-1) == 1:
            prediction, target = self._match(input.float(), soft_labels.float())
        else:
            _check_same_shape(input, soft_labels)
            prediction, target = F.softmax(input.float(), dim=-1), soft_labels.float()
        return self.alpha * self._mean_rows((prediction - target) ** 2, weight)

    @staticmethod
    def _mean_rows(squared: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Average squared errors per row (first axis), then the weighted mean over rows."""
        rows = squared.reshape(squared.size(0), -1).mean(dim=1) if squared.dim() > 1 else squared
        return _weighted_mean(rows, _row_weights(weight, rows.numel(), [rows.numel()]))

    @staticmethod
    def _match(input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair up input and target, dropping a trailing size-1 axis; a real mismatch raises ValueError."""
        if input.shape == target.shape:
            return input, target

        def squeeze_last(t: torch.Tensor) -> torch.Tensor:
            return t.squeeze(-1) if t.dim() >= 2 and t.size(-1) == 1 else t

        a, b = squeeze_last(input), squeeze_last(target)
        if a.shape != b.shape:
            raise ValueError(f"regression input {tuple(input.shape)} does not match target {tuple(target.shape)}")
        return a, b


# ---------------------------------------------------------------- distribution criteria


class _DistributionCriterion(Criterion, metaclass=ABCMeta):
    """A loss between p = softmax(input) and q = softmax(target logits) or given probabilities."""

    @abstractmethod
    def _rows(self, p: _Dist, q: _Dist) -> torch.Tensor:
        """Per-row loss [N]."""

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -1
    ) -> torch.Tensor:
        """α · weighted batch mean of the per-row loss between softmax(input) and softmax(target)."""
        _check_same_shape(input, target)
        rows = self._rows(_Dist.from_logits(input), _Dist.from_logits(target))
        return self.alpha * _weighted_mean(rows, _row_weights(weight, rows.numel(), input.shape[:-1]))

    def distill(self, input: torch.Tensor, soft_labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The same loss with q given directly by the teacher's probabilities."""
        _check_same_shape(input, soft_labels)
        rows = self._rows(_Dist.from_logits(input), _Dist.from_probs(soft_labels))
        return self.alpha * _weighted_mean(rows, _row_weights(weight, rows.numel(), input.shape[:-1]))


@register_criterion
class KlCriterion(_DistributionCriterion):
    """KL(q ‖ p), batchmean (``kl_div(log p, q)``); the gradient reaches both sides."""

    def __init__(self, alpha: float = 1.0, name: str = "KL Div Criterion"):
        super().__init__(alpha, name)

    def _rows(self, p: _Dist, q: _Dist) -> torch.Tensor:
        return _kl_rows(q, p.log)


@register_criterion
class SymKlCriterion(_DistributionCriterion):
    """KL(q̄ ‖ p) + KL(p̄ ‖ q), each batchmean, the bar meaning detached (SMART's default); no ½."""

    def __init__(self, alpha: float = 1.0, name: str = "Sym KL Div Criterion"):
        super().__init__(alpha, name)

    def _rows(self, p: _Dist, q: _Dist) -> torch.Tensor:
        return _kl_rows(q.detach(), p.log) + _kl_rows(p.detach(), q.log)


@register_criterion
class NsKlCriterion(_DistributionCriterion):
    """stable_kl(input, target.detach()): KL on log-odds, gradient through the input only."""

    def __init__(self, alpha: float = 1.0, name: str = "NS KL Div Criterion", epsilon: float = 1e-6):
        super().__init__(alpha, name)
        self.epsilon = epsilon

    def _rows(self, p: _Dist, q: _Dist) -> torch.Tensor:
        return _stable_kl_rows(p.prob, q.prob.detach(), self.epsilon)


@register_criterion
class NsSymKlCriterion(_DistributionCriterion):
    """stable_kl(input, target.detach()) + stable_kl(target, input.detach())."""

    def __init__(self, alpha: float = 1.0, name: str = "NS Sym KL Div Criterion", epsilon: float = 1e-6):
        super().__init__(alpha, name)
        self.epsilon = epsilon

    def _rows(self, p: _Dist, q: _Dist) -> torch.Tensor:
        return _stable_kl_rows(p.prob, q.prob.detach(), self.epsilon) + _stable_kl_rows(
            q.prob, p.prob.detach(), self.epsilon
        )


@register_criterion
class JSCriterion(_DistributionCriterion):
    """Upstream's Jensen-Shannon form: m = ½(p + q) detached, KL(m ‖ p) + KL(m ‖ q), each batchmean, no ½."""

    def __init__(self, alpha: float = 1.0, name: str = "JS Div Criterion"):
        super().__init__(alpha, name)

    def _rows(self, p: _Dist, q: _Dist) -> torch.Tensor:
        m = _Dist.from_probs(0.5 * (p.prob + q.prob).detach())
        return _kl_rows(m, p.log) + _kl_rows(m, q.log)


@register_criterion
class HLCriterion(_DistributionCriterion):
    """Squared Hellinger distance: mean over elements of (√q − √p)², q detached so the input is trained."""

    def __init__(self, alpha: float = 1.0, name: str = "Hellinger Criterion"):
        super().__init__(alpha, name)

    def _rows(self, p: _Dist, q: _Dist) -> torch.Tensor:
        return ((q.sqrt().detach() - p.sqrt()) ** 2).mean(dim=-1)


def build_criterion(loss: LossCriterion, name: str = "", alpha: float = 1.0) -> Criterion:
    """Instantiate the criterion for a ``LossCriterion`` (``name`` overrides its display name)."""
    try:
        cls = LOSS_REGISTRY[LossCriterion(loss)]
    except (KeyError, ValueError):
        raise ValueError(f"loss {getattr(loss, 'name', loss)} is not supported here") from None
    return cls(alpha=alpha, name=name) if name else cls(alpha=alpha)
