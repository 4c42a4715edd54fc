"""DropoutWrapper and Pooler from module/."""
from __future__ import annotations

import pytest
import torch

from module.dropout_wrapper import DropoutWrapper
from module.pooler import Pooler, activation_fn


def test_variational_dropout_shares_one_mask_across_tokens():
    torch.manual_seed(0)
    drop = DropoutWrapper(0.25).train()
    out = drop(torch.ones(4, 7, 32))
    values = out.unique()
    assert len(values) == 2 and values[0] == 0.0 and values[1].item() == pytest.approx(1 / 0.75)
    # Every token of an example sees the same mask.
    assert torch.equal(out, out[:, :1].expand_as(out))
    # ...but examples get different masks, and about a quarter of features are dropped.
    assert not torch.equal(out[0, 0], out[1, 0])
    assert 0.1 < (out[:, 0] == 0).float().mean().item() < 0.4


def test_plain_dropout_without_vbp_and_on_2d():
    torch.manual_seed(0)
    out = DropoutWrapper(0.5, enable_vbp=False).train()(torch.ones(4, 7, 32))
    assert not torch.equal(out, out[:, :1].expand_as(out))
    flat = DropoutWrapper(0.5).train()(torch.ones(64, 32))
    assert set(flat.unique().tolist()) == {0.0, 2.0}


def test_dropout_is_identity_at_eval_or_zero_p():
    x = torch.randn(2, 3, 4)
    assert torch.equal(DropoutWrapper(0.5).eval()(x), x)
    assert torch.equal(DropoutWrapper(0.0).train()(x), x)
    with pytest.raises(ValueError):
        DropoutWrapper(1.0)


def test_pooler_applies_each_activation_to_dense_of_cls():
    torch.manual_seed(0)
    hidden = 3 * torch.randn(2, 5, 6)
    reference = Pooler(6)
    pre = hidden[:, 0] @ reference.dense.weight.T + reference.dense.bias
    expected = {
        "tanh": torch.tanh(pre),
        "gelu": torch.nn.functional.gelu(pre),
        "relu": torch.relu(pre),
        "linear": pre,
    }
    outputs = {}
    for name, value in expected.items():
        pooler = Pooler(6, actf=name).eval()
        pooler.load_state_dict(reference.state_dict())
        outputs[name] = pooler(hidden)
        torch.testing.assert_close(outputs[name], value)
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(outputs[a], outputs[b]), f"{a} and {b} pooled identically"


def test_pooler_reads_only_the_first_token_and_drops_it_in_training():
    torch.manual_seed(0)
    pooler = Pooler(6, dropout_p=0.5)
    hidden = torch.randn(2, 5, 6)
    changed = hidden.clone()
    changed[:, 1:] = 9.0
    pooler.eval()
    assert torch.equal(pooler(hidden), pooler(changed))
    pooler.train()
    assert not torch.allclose(pooler(hidden), pooler.eval()(hidden))


def test_activation_fn_rejects_unknown_names():
    assert isinstance(activation_fn("gelu"), torch.nn.GELU)
    with pytest.raises(ValueError, match="unknown activation"):
        activation_fn("swish")
    with pytest.raises(ValueError):
        Pooler(4, actf="sigmoid")
