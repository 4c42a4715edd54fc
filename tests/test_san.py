"""SAN answer module (SPEC §4) and the premise/hypothesis split."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from module.san import SANClassifier, split_premise_hypothesis

H, C = 8, 3


def make_inputs(batch: int = 3, lp: int = 6, lh: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    premise = torch.randn(batch, lp, H, generator=g)
    hypothesis = torch.randn(batch, lh, H, generator=g)
    p_len = torch.tensor([lp, lp - 2, 2][:batch])
    h_len = torch.tensor([lh, 1, lh - 1][:batch])
    p_mask = torch.arange(lp)[None, :] >= p_len[:, None]
    h_mask = torch.arange(lh)[None, :] >= h_len[:, None]
    return premise, p_mask, hypothesis, h_mask


def make_san(**kwargs) -> SANClassifier:
    torch.manual_seed(0)
    options = {"dropout_p": 0.0, "num_turn": 3}
    options.update(kwargs)
    return SANClassifier(H, H, C, **options)


def test_eval_output_is_log_mean_of_turn_softmax_and_deterministic():
    san = make_san(dropout_p=0.2).eval()
    inputs = make_inputs()
    out = san(*inputs)
    assert out.shape == (3, C)
    assert torch.equal(out, san(*inputs))
    turns = san.turn_logits(*inputs)
    assert turns.shape == (3, 3, C)
    torch.testing.assert_close(out, turns.softmax(-1).mean(1).log())
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(3))
    # CE on the output is the NLL of the averaged probabilities.
    labels = torch.tensor([0, 2, 1])
    torch.testing.assert_close(F.cross_entropy(out, labels), F.nll_loss(out, labels))


def test_forward_matches_explicit_two_turn_computation():
    san = make_san(num_turn=2).eval()
    premise, p_mask, hyp, h_mask = make_inputs()
    alpha = (hyp @ san.query_wsum.score.weight[0] + san.query_wsum.score.bias).masked_fill(h_mask, float("-inf"))
    s = (alpha.softmax(-1).unsqueeze(-1) * hyp).sum(1)
    probs = []
    for turn in range(2):
        wy = s @ san.attn.linear.weight.T + san.attn.linear.bias
        beta = torch.einsum("blh,bh->bl", premise, wy).masked_fill(p_mask, float("-inf")).softmax(-1)
        x = (beta.unsqueeze(-1) * premise).sum(1)
        logits = torch.cat([x, s, (x - s).abs(), x * s], -1) @ san.classifier.weight.T + san.classifier.bias
        probs.append(logits.softmax(-1))
        s = san.rnn(x, s)
    expected = ((probs[0] + probs[1]) / 2).log()
    torch.testing.assert_close(san(premise, p_mask, hyp, h_mask), expected)


def pad_with_junk(x: torch.Tensor, mask: torch.Tensor, extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Add ``extra`` padded positions and fill every padded position with large random values."""
    batch, _, hidden = x.shape
    longer = torch.cat([x, torch.zeros(batch, extra, hidden)], 1)
    longer_mask = torch.cat([mask, torch.ones(batch, extra, dtype=torch.bool)], 1)
    junk = 100 * torch.randn_like(longer)
    return torch.where(longer_mask.unsqueeze(-1), junk, longer), longer_mask


@pytest.mark.parametrize("mem_cum_type", ["simple", "mlp"])
def test_padding_does_not_change_the_output(mem_cum_type):
    san = make_san(dropout_p=0.3, mem_cum_type=mem_cum_type)
    premise, p_mask, hyp, h_mask = make_inputs()
    premise2, p_mask2 = pad_with_junk(premise, p_mask, 3)
    hyp2, h_mask2 = pad_with_junk(hyp, h_mask, 2)
    san.eval()
    torch.testing.assert_close(san(premise, p_mask, hyp, h_mask), san(premise2, p_mask2, hyp2, h_mask2))
    # Variational masks are per example × feature, so training draws the same masks too.
    san.train()
    torch.manual_seed(5)
    a = san(premise, p_mask, hyp, h_mask)
    torch.manual_seed(5)
    b = san(premise2, p_mask2, hyp2, h_mask2)
    torch.testing.assert_close(a, b)


def test_training_averages_a_random_nonempty_subset_of_turns():
    san = make_san(num_turn=3, mem_drop_p=0.5).train()
    inputs = make_inputs()
    turns = san.turn_logits(*inputs).softmax(-1)  # no dropout: same turns every call
    subsets = [s for k in range(1, 4) for s in itertools.combinations(range(3), k)]
    outputs = []
    torch.manual_seed(0)
    for _ in range(8):
        out = san(*inputs)
        torch.testing.assert_close(out.exp().sum(-1), torch.ones(3))
        for row in range(3):
            assert any(
                torch.allclose(out[row].exp(), turns[row, list(s)].mean(0), atol=1e-6) for s in subsets
            ), "output is not the mean of any subset of turns"
        outputs.append(out)
    assert any(not torch.allclose(outputs[0], o) for o in outputs[1:]), "training output never changed"


def test_attended_premise_summary_is_not_dropped():
    san = make_san(dropout_p=0.5).train()
    premise, p_mask, hyp, h_mask = make_inputs()
    v = torch.randn(H)
    premise = v.expand_as(premise).clone()
    seen = []
    san.rnn.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    san(premise, p_mask, hyp, h_mask)
    # x_t = Σ_i β_i·M_i is a convex combination of identical rows: exactly v unless M was dropped.
    assert len(seen) == 2
    for x_t in seen:
        torch.testing.assert_close(x_t, v.expand(3, H))


def test_no_turn_dropout_in_training_equals_inference():
    san = make_san(mem_drop_p=0.0).train()
    inputs = make_inputs()
    train_out = san(*inputs)
    torch.testing.assert_close(train_out, san.eval()(*inputs))


def test_dropout_makes_training_stochastic():
    san = make_san(dropout_p=0.3).train()
    inputs = make_inputs()
    a, b = san(*inputs), san(*inputs)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a.exp().sum(-1), torch.ones(3))


def test_mem_type_zero_returns_last_turn_logits():
    san = make_san(mem_type=0).eval()
    inputs = make_inputs()
    out = san(*inputs)
    torch.testing.assert_close(out, san.turn_logits(*inputs)[:, -1])
    assert not torch.allclose(out.exp().sum(-1), torch.ones(3))


def test_single_output_averages_raw_scores():
    torch.manual_seed(0)
    san = SANClassifier(H, H, 1, num_turn=3).eval()
    inputs = make_inputs()
    out = san(*inputs)
    assert out.shape == (3, 1)
    torch.testing.assert_close(out, san.turn_logits(*inputs).mean(1))


def test_weight_norm_on():
    san = make_san(weight_norm_on=True)
    assert hasattr(san.classifier, "parametrizations") and "weight" in san.classifier.parametrizations
    assert "weight" in san.attn.linear.parametrizations
    assert {"weight_ih", "weight_hh"} <= set(san.rnn.parametrizations.keys())
    out = san.eval()(*make_inputs())
    assert torch.isfinite(out).all()
    out.sum().backward()
    magnitude = san.classifier.parametrizations.weight.original0
    assert magnitude.grad is not None and magnitude.grad.abs().sum() > 0


def test_mlp_summary_uses_att_hidden_size_and_bad_options_raise():
    san = make_san(mem_cum_type="mlp", att_hidden_size=16)
    assert san.query_wsum.score[0].out_features == 16
    with pytest.raises(ValueError):
        SANClassifier(H, H + 1, C)
    with pytest.raises(ValueError):
        SANClassifier(H, H, C, sum_att_type="trilinear")
    with pytest.raises(ValueError):
        SANClassifier(H, H, C, mem_type=2)


# ---------------------------------------------------------------- split_premise_hypothesis


def coded_hidden(batch: int, length: int) -> torch.Tensor:
    """hidden[b, l, :] = 100·b + l, so gathered positions can be read back."""
    code = 100 * torch.arange(batch)[:, None] + torch.arange(length)[None, :]
    return code[:, :, None].float().expand(batch, length, 2).clone()


def test_split_bert_style_with_type_ids():
    # row 0: [CLS] a b [SEP] c [SEP] pad pad ; row 1: [CLS] a [SEP] b c d e [SEP]
    type_ids = torch.tensor([[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8])
    premise, p_mask, hyp, h_mask = split_premise_hypothesis(coded_hidden(2, 8), type_ids, attention)
    assert premise[..., 0].tolist() == [[0, 1, 2, 3], [100, 101, 102, 0]]
    assert p_mask.tolist() == [[False] * 4, [False, False, False, True]]
    assert hyp[..., 0].tolist() == [[4, 5, 0, 0, 0], [103, 104, 105, 106, 107]]
    assert h_mask.tolist() == [[False, False, True, True, True], [False] * 5]


def test_split_roberta_style_uses_first_separator():
    sep = 2
    # <s> a b </s> </s> c </s> pad ; <s> a </s> </s> b c d </s>
    input_ids = torch.tensor([[0, 11, 12, sep, sep, 13, sep, 1], [0, 11, sep, sep, 12, 13, 14, sep]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1] * 8])
    type_ids = torch.zeros_like(input_ids)
    premise, p_mask, hyp, h_mask = split_premise_hypothesis(
        coded_hidden(2, 8), type_ids, attention, input_ids=input_ids, sep_token_id=sep
    )
    assert premise[..., 0].tolist() == [[0, 1, 2, 3], [100, 101, 102, 0]]
    assert p_mask.tolist() == [[False] * 4, [False, False, False, True]]
    assert hyp[..., 0].tolist() == [[4, 5, 6, 0, 0], [103, 104, 105, 106, 107]]
    assert h_mask.tolist() == [[False, False, False, True, True], [False] * 5]
    with pytest.raises(ValueError, match="sep_token_id"):
        split_premise_hypothesis(coded_hidden(2, 8), type_ids, attention)


def test_split_feeds_san_and_ignores_padding_tokens():
    torch.manual_seed(0)
    type_ids = torch.tensor([[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1] * 7])
    hidden = torch.randn(2, 7, H)
    san = make_san().eval()
    out = san(*split_premise_hypothesis(hidden, type_ids, attention))
    hidden2 = hidden.clone()
    hidden2[0, 5:] = 50.0  # padding positions of row 0
    torch.testing.assert_close(out, san(*split_premise_hypothesis(hidden2, type_ids, attention)))
    assert out.shape == (2, C)
