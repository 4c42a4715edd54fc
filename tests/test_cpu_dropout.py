"""--cpu_dropout fast: masks from 32 random bits per element, the same distribution and scaling as torch's
dropout, active only in training forwards on a CPU."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from test_train import load_checkpoint, train_args

from mt_dnn.cpu_dropout import FastCpuDropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_each_element_with_probability_one_minus_p_independently(p):
    torch.manual_seed(0)
    mask = keep_mask((1001, 999), p)  # an odd count: the last 64-bit word is half used
    assert mask.shape == (1001, 999) and mask.dtype == torch.bool
    n = mask.numel()
    kept = mask.double().mean().item()
    assert abs(kept - (1 - p)) < 5 * ((p * (1 - p) / n) ** 0.5)
    # Neighbours share a 64-bit draw: their two halves must still be independent.
    flat = mask.flatten()[: n - n % 2].view(-1, 2).double()
    both = (flat[:, 0] * flat[:, 1]).mean().item()
    assert abs(both - (1 - p) ** 2) < 5 * (((1 - p) ** 2 * (1 - (1 - p) ** 2) / flat.shape[0]) ** 0.5)


def test_keep_mask_follows_torchs_seed():
    torch.manual_seed(7)
    a = keep_mask((64, 33), 0.1)
    torch.manual_seed(7)
    b = keep_mask((64, 33), 0.1)
    c = keep_mask((64, 33), 0.1)
    assert torch.equal(a, b) and not torch.equal(b, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_mode_scales_kept_elements_and_backpropagates_through_the_mask(dtype):
    torch.manual_seed(1)
    x = torch.randn(32, 48).to(dtype).requires_grad_()
    layer = torch.nn.Dropout(0.25)
    with FastCpuDropout():
        y = layer(x)
        z = F.dropout(x, p=0.25, training=True)
    kept = y != 0
    assert 0.65 < kept.float().mean().item() < 0.85
    # Kept elements scaled by 1/(1 − p) exactly as torch's dropout scales them (the noise in x's dtype).
    scale = torch.ones((), dtype=dtype).div_(0.75)
    assert torch.equal(y[kept], x.detach()[kept] * scale)
    y.sum().backward()
    assert torch.equal(x.grad, kept.to(dtype) * scale)
    assert not torch.equal(kept, z != 0)  # each call draws a new mask


def test_the_mode_leaves_evaluation_zero_p_and_other_functions_alone():
    x = torch.randn(8, 8)
    with FastCpuDropout():
        assert torch.equal(F.dropout(x, 0.3, training=False), x)
        assert torch.equal(F.dropout(x, 0.0, training=True), x)
        assert torch.equal(torch.nn.Dropout(0.3).eval()(x), x)
        assert torch.equal(torch.softmax(x, -1), torch.softmax(x, -1))
        torch.manual_seed(3)
        inplace = F.dropout(x.clone(), 0.5, True, True)  # in place: torch's own dropout
    torch.manual_seed(3)
    assert torch.equal(inplace, F.dropout(x.clone(), 0.5, True, True))


def test_train_runs_fast_dropout_by_default_and_torchs_on_request(tiny_model_dir, features_dir, tmp_path):
    from train import build_parser, main

    assert build_parser().parse_args([]).cpu_dropout == "fast"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--cpu_dropout", "none"])
    weights = {}
    for name, flags in {"fast": (), "fast_again": (), "torch": ("--cpu_dropout", "torch")}.items():
        out = tmp_path / name
        main(train_args(tiny_model_dir, features_dir, out, "--epochs", "1", "--precision", "fp32", *flags))
        assert json.loads((out / "config.json").read_text())["train"]["cpu_dropout"] == ("torch" if flags else "fast")
        weights[name] = load_checkpoint(out / "model_0.pt")["state"]

    def same(a: str, b: str) -> bool:
        return all(torch.equal(weights[a][key], weights[b][key]) for key in weights[a])

    assert same("fast", "fast_again")  # seeded: the same masks again
    assert not same("fast", "torch")  # the masks come from another random stream
