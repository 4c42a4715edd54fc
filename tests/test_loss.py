"""Each criterion of mt_dnn/loss.py against a hand computation (numpy), plus gradients, alpha and weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data_utils.task_def import LossCriterion
from mt_dnn import loss as L

LOGITS = np.array([[1.0, -0.5, 0.3], [0.2, 0.1, -1.2], [-0.7, 2.0, 0.5], [0.0, 0.4, 0.9]])
TARGET_LOGITS = np.array([[0.3, 0.3, -0.2], [1.5, -0.3, 0.0], [0.1, 0.9, 0.4], [-1.0, 0.2, 1.3]])
LABELS = np.array([0, 2, 1, 1])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def t(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32, requires_grad=grad)


def ce_rows(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


# ---------------------------------------------------------------- label losses


def test_ce_mean_weights_alpha_and_ignore_index():
    rows = ce_rows(LOGITS, LABELS)
    crit = L.CeCriterion()
    assert crit(t(LOGITS), torch.tensor(LABELS)).item() == pytest.approx(rows.mean(), rel=1e-6)

    w = np.array([0.5, 2.0, 1.0, 0.0])
    weighted = crit(t(LOGITS), torch.tensor(LABELS), weight=t(w)).item()
    assert weighted == pytest.approx((w * rows).sum() / 4, rel=1e-6)
    ones = crit(t(LOGITS), torch.tensor(LABELS), weight=torch.ones(4)).item()
    assert ones == pytest.approx(rows.mean(), rel=1e-6)

    assert L.CeCriterion(alpha=2.5)(t(LOGITS), torch.tensor(LABELS)).item() == pytest.approx(2.5 * rows.mean(), rel=1e-6)

    labels = LABELS.copy()
    labels[1] = -1
    ignored = crit(t(LOGITS), torch.tensor(labels)).item()
    assert ignored == pytest.approx(rows[[0, 2, 3]].mean(), rel=1e-6)


def test_ce_gradient_is_softmax_minus_onehot():
    x = t(LOGITS, grad=True)
    L.CeCriterion()(x, torch.tensor(LABELS)).backward()
    expected = (softmax(LOGITS) - np.eye(3)[LABELS]) / 4
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_ce_rejects_bad_shapes():
    with pytest.raises(ValueError):
        L.CeCriterion()(t(LOGITS), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        L.CeCriterion()(t(LOGITS), torch.tensor(LABELS), weight=torch.ones(3))


def test_seq_ce_ignores_minus_one_and_spreads_example_weights():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5))
    labels = np.array([[1, 4, -1, -1], [0, 2, 3, -1]])
    rows = ce_rows(logits.reshape(-1, 5), np.where(labels.reshape(-1) < 0, 0, labels.reshape(-1)))
    valid = labels.reshape(-1) >= 0
    crit = L.SeqCeCriterion()
    assert crit(t(logits), torch.tensor(labels)).item() == pytest.approx(rows[valid].mean(), rel=1e-6)
    # Flattened logits [N, C] give the same loss.
    assert crit(t(logits.reshape(-1, 5)), torch.tensor(labels)).item() == pytest.approx(rows[valid].mean(), rel=1e-6)

    w = np.array([2.0, 0.5])
    token_w = np.repeat(w, 4)
    expected = (token_w * rows * valid).sum() / valid.sum()
    assert crit(t(logits), torch.tensor(labels), weight=t(w)).item() == pytest.approx(expected, rel=1e-6)


def test_span_ce_is_half_sum_and_accepts_pair_or_tensor_target():
    rng = np.random.default_rng(1)
    start, end = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    s_idx, e_idx = np.array([0, 2, 5]), np.array([1, 4, 5])
    expected = 0.5 * (ce_rows(start, s_idx).mean() + ce_rows(end, e_idx).mean())
    crit = L.SpanCeCriterion()
    pair = crit((t(start), t(end)), (torch.tensor(s_idx), torch.tensor(e_idx))).item()
    stacked = crit((t(start), t(end)), torch.tensor(np.stack([s_idx, e_idx], axis=1))).item()
    assert pair == pytest.approx(expected, rel=1e-6)
    assert stacked == pytest.approx(expected, rel=1e-6)
    assert L.SpanCeCriterion(alpha=0.5)((t(start), t(end)), (torch.tensor(s_idx), torch.tensor(e_idx))).item() == pytest.approx(
        0.5 * expected, rel=1e-6
    )


def test_rank_ce_groups_candidates():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3 * 4, 1))  # 3 samples x 4 candidates
    positive = np.array([2, 0, 3])
    expected = ce_rows(scores.reshape(3, 4), positive)
    crit = L.RankCeCriterion()
    assert crit(t(scores), torch.tensor(positive), pairwise_size=4).item() == pytest.approx(expected.mean(), rel=1e-6)
    assert crit(t(scores.reshape(-1)), torch.tensor(positive), pairwise_size=4).item() == pytest.approx(
        expected.mean(), rel=1e-6
    )
    # Upstream's layout: each candidate row carries its sample's label.
    per_candidate = torch.tensor(np.repeat(positive, 4))
    assert crit(t(scores), per_candidate, pairwise_size=4).item() == pytest.approx(expected.mean(), rel=1e-6)
    w = np.array([1.0, 3.0, 0.5])
    assert crit(t(scores), torch.tensor(positive), weight=t(w), pairwise_size=4).item() == pytest.approx(
        (w * expected).sum() / 3, rel=1e-6
    )
    with pytest.raises(ValueError):
        crit(t(scores), torch.tensor(positive), pairwise_size=5)
    with pytest.raises(ValueError):
        crit(t(scores), torch.tensor([0, 1]), pairwise_size=4)


def test_mse_matches_shapes_explicitly():
    pred = np.array([[0.5], [1.5], [-0.2]])
    gold = np.array([1.0, 1.0, 0.0])
    expected = ((pred[:, 0] - gold) ** 2).mean()
    crit = L.MseCriterion()
    assert crit(t(pred), t(gold)).item() == pytest.approx(expected, rel=1e-6)
    assert crit(t(pred[:, 0]), t(gold)).item() == pytest.approx(expected, rel=1e-6)
    assert crit(t(pred[:, 0]), t(gold[:, None])).item() == pytest.approx(expected, rel=1e-6)
    # Broadcasting [3, 1] against [3] would give a 3x3 error matrix: make sure nothing like that happens.
    assert crit(t(pred), t(gold)).item() != pytest.approx(((pred - gold) ** 2).mean(), rel=1e-3)
    w = np.array([1.0, 0.0, 2.0])
    assert crit(t(pred), t(gold), weight=t(w)).item() == pytest.approx(
        (w * (pred[:, 0] - gold) ** 2).sum() / 3, rel=1e-6
    )
    assert L.MseCriterion(alpha=3.0)(t(pred), t(gold)).item() == pytest.approx(3 * expected, rel=1e-6)
    with pytest.raises(ValueError):
        crit(t(np.zeros((3, 2))), t(gold))
    with pytest.raises(ValueError):
        crit(t(np.zeros(4)), t(gold))


# ---------------------------------------------------------------- distribution losses


def kl_rows(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (q * (np.log(q) - np.log(p))).sum(-1)


def r(z: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    return -np.log(1.0 / (z + eps) - 1.0 + eps)


def stable_kl_np(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = softmax(a), softmax(b)
    return float(2.0 * (pa * (r(pa) - r(pb))).sum() / len(a))


P, Q = softmax(LOGITS), softmax(TARGET_LOGITS)


@pytest.mark.parametrize(
    "cls, expected",
    [
        (L.KlCriterion, kl_rows(Q, P).mean()),
        (L.SymKlCriterion, kl_rows(Q, P).mean() + kl_rows(P, Q).mean()),
        (L.NsKlCriterion, stable_kl_np(LOGITS, TARGET_LOGITS)),
        (L.NsSymKlCriterion, stable_kl_np(LOGITS, TARGET_LOGITS) + stable_kl_np(TARGET_LOGITS, LOGITS)),
        (L.JSCriterion, kl_rows((P + Q) / 2, P).mean() + kl_rows((P + Q) / 2, Q).mean()),
        (L.HLCriterion, ((np.sqrt(Q) - np.sqrt(P)) ** 2).mean()),
    ],
)
def test_distribution_losses_match_hand_values(cls, expected):
    assert cls()(t(LOGITS), t(TARGET_LOGITS)).item() == pytest.approx(expected, rel=1e-5)
    assert cls(alpha=0.3)(t(LOGITS), t(TARGET_LOGITS)).item() == pytest.approx(0.3 * expected, rel=1e-5)
    # Soft labels equal to softmax(target) give the same value through the KD path.
    assert cls().distill(t(LOGITS), t(Q)).item() == pytest.approx(expected, rel=1e-5)


def test_distribution_losses_flatten_sequences_and_take_weights():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    crit = L.KlCriterion()
    flat = crit(t(x.reshape(6, 4)), t(y.reshape(6, 4))).item()
    assert crit(t(x), t(y)).item() == pytest.approx(flat, rel=1e-6)
    rows = kl_rows(softmax(y.reshape(6, 4)), softmax(x.reshape(6, 4)))
    w = np.array([2.0, 0.0])
    assert crit(t(x), t(y), weight=t(w)).item() == pytest.approx((np.repeat(w, 3) * rows).sum() / 6, rel=1e-5)
    with pytest.raises(ValueError):
        crit(t(x), t(y[:, :2]))


def test_kl_gradient_reaches_both_sides():
    x, y = t(LOGITS, grad=True), t(TARGET_LOGITS, grad=True)
    L.KlCriterion()(x, y).backward()
    np.testing.assert_allclose(x.grad.numpy(), (P - Q) / 4, rtol=1e-5, atol=1e-7)
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_sym_kl_detaches_each_side():
    x, y = t(LOGITS, grad=True), t(TARGET_LOGITS, grad=True)
    L.SymKlCriterion()(x, y).backward()
    # d/dx KL(q̄‖p) = (p − q)/B and KL(p̄‖q) has no path to x; symmetrically for y.
    np.testing.assert_allclose(x.grad.numpy(), (P - Q) / 4, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.grad.numpy(), (Q - P) / 4, rtol=1e-5, atol=1e-7)


def softmax_backward(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. logits given the gradient g w.r.t. p = softmax(logits)."""
    return p * (g - (p * g).sum(-1, keepdims=True))


def test_ns_kl_gradient_goes_through_input_probabilities_only():
    x, y = t(LOGITS, grad=True), t(TARGET_LOGITS, grad=True)
    L.NsKlCriterion()(x, y).backward()
    expected = softmax_backward(P, 2.0 * (r(P) - r(Q)) / 4)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-4, atol=1e-7)
    assert y.grad is None


def test_ns_sym_kl_gradients():
    x, y = t(LOGITS, grad=True), t(TARGET_LOGITS, grad=True)
    L.NsSymKlCriterion()(x, y).backward()
    np.testing.assert_allclose(x.grad.numpy(), softmax_backward(P, 2.0 * (r(P) - r(Q)) / 4), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(y.grad.numpy(), softmax_backward(Q, 2.0 * (r(Q) - r(P)) / 4), rtol=1e-4, atol=1e-7)


def test_stable_kl_reduce_and_sum():
    mean = L.stable_kl(t(LOGITS), t(TARGET_LOGITS)).item()
    total = L.stable_kl(t(LOGITS), t(TARGET_LOGITS), reduce=False).item()
    assert mean == pytest.approx(stable_kl_np(LOGITS, TARGET_LOGITS), rel=1e-5)
    assert total == pytest.approx(4 * mean, rel=1e-6)


def test_js_gradient_has_mixture_detached():
    x = t(LOGITS, grad=True)
    L.JSCriterion()(x, t(TARGET_LOGITS)).backward()
    m = (P + Q) / 2
    # d/dx KL(m‖p) = (p·Σm − m)/B = (p − m)/B with m fixed.
    np.testing.assert_allclose(x.grad.numpy(), (P - m) / 4, rtol=1e-5, atol=1e-7)


def test_hellinger_trains_the_input_only():
    x, y = t(LOGITS, grad=True), t(TARGET_LOGITS, grad=True)
    L.HLCriterion()(x, y).backward()
    n = P.size
    g = -(np.sqrt(Q) - np.sqrt(P)) / np.sqrt(P) / n
    np.testing.assert_allclose(x.grad.numpy(), softmax_backward(P, g), rtol=1e-4, atol=1e-7)
    assert np.abs(x.grad.numpy()).sum() > 1e-4
    assert y.grad is None


# ---------------------------------------------------------------- knowledge distillation


def test_distill_uses_probabilities_directly():
    soft = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    x = t(LOGITS)
    q_log = np.log(np.where(soft > 0, soft, 1.0))
    kl = (soft * (q_log - np.log(P))).sum(-1).mean()
    assert L.KlCriterion().distill(x, t(soft)).item() == pytest.approx(kl, rel=1e-5)
    assert L.MseCriterion().distill(x, t(soft)).item() == pytest.approx(((P - soft) ** 2).mean(), rel=1e-5)
    assert L.CeCriterion().distill(x, t(soft)).item() == pytest.approx(-(soft * np.log(P)).sum(-1).mean(), rel=1e-5)
    hl = ((np.sqrt(soft) - np.sqrt(P)) ** 2).mean()
    assert L.HLCriterion().distill(x, t(soft)).item() == pytest.approx(hl, rel=1e-5)
    assert L.MseCriterion(alpha=2.0).distill(x, t(soft)).item() == pytest.approx(2 * ((P - soft) ** 2).mean(), rel=1e-5)


def test_distill_mse_regression_compares_scores():
    pred, teacher = np.array([[0.4], [2.0]]), np.array([0.5, 1.0])
    assert L.MseCriterion().distill(t(pred), t(teacher)).item() == pytest.approx(
        ((pred[:, 0] - teacher) ** 2).mean(), rel=1e-6
    )


def test_distill_gradient_and_unsupported_criteria():
    x = t(LOGITS, grad=True)
    L.SymKlCriterion().distill(x, t(Q)).backward()
    np.testing.assert_allclose(x.grad.numpy(), (P - Q) / 4, rtol=1e-5, atol=1e-7)
    for crit in (L.RankCeCriterion(), L.SpanCeCriterion(), L.SeqCeCriterion()):
        with pytest.raises(TypeError):
            crit.distill(t(LOGITS), t(Q))
    with pytest.raises(ValueError):
        L.KlCriterion().distill(t(LOGITS), t(Q[:, :2]))


# ---------------------------------------------------------------- registry


def test_registry_covers_every_supported_criterion():
    for loss in LossCriterion:
        if loss == LossCriterion.MlmCriterion:
            with pytest.raises(ValueError, match="not supported"):
                L.build_criterion(loss)
            continue
        crit = L.build_criterion(loss, name="x", alpha=0.5)
        assert type(crit).__name__ == loss.name
        assert crit.name == "x" and crit.alpha == 0.5
    assert L.build_criterion(LossCriterion.CeCriterion).name == "Cross Entropy Criterion"


def test_losses_are_float32_for_half_logits():
    x = torch.tensor(LOGITS, dtype=torch.bfloat16)
    out = L.CeCriterion()(x, torch.tensor(LABELS))
    assert out.dtype == torch.float32
    assert L.SymKlCriterion()(x, x).dtype == torch.float32
