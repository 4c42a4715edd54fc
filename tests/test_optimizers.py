"""Adamax (BERT-style, v0.1) and AdamaxW against hand computations and torch.optim.Adamax."""
from __future__ import annotations

import copy

import pytest
import torch

from module.optimizers import Adamax, AdamaxW

LR, WD, EPS, B1, B2 = 0.1, 0.01, 1e-6, 0.9, 0.999


def one_param(values: list[float]) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_adamax_one_and_two_steps_by_hand():
    p = one_param([1.0, -2.0])
    opt = Adamax([p], lr=LR, weight_decay=WD, eps=EPS)
    g1 = [0.5, -0.1]
    p.grad = torch.tensor(g1, dtype=torch.float64)
    opt.step()
    # m = 0.1·g; u = |g| + eps; p ← p − lr·(m/(u + eps) + wd·p)
    m1 = [(1 - B1) * g for g in g1]
    u1 = [abs(g) + EPS for g in g1]
    p1 = [w - LR * (m / (u + EPS) + WD * w) for w, m, u in zip([1.0, -2.0], m1, u1)]
    assert p1[0] == pytest.approx(1.0 - 0.1 * (0.05 / 0.500002 + 0.01), abs=1e-12)
    assert p.detach().tolist() == pytest.approx(p1, abs=1e-12)

    g2 = [-0.2, 0.3]
    p.grad = torch.tensor(g2, dtype=torch.float64)
    opt.step()
    m2 = [B1 * m + (1 - B1) * g for m, g in zip(m1, g2)]
    u2 = [max(B2 * u, abs(g) + EPS) for u, g in zip(u1, g2)]
    p2 = [w - LR * (m / (u + EPS) + WD * w) for w, m, u in zip(p1, m2, u2)]
    # First coordinate keeps the decayed old norm (0.4995 > 0.2), the second takes the new gradient.
    assert u2[0] == pytest.approx(B2 * 0.500001) and u2[1] == pytest.approx(0.300001)
    assert p.detach().tolist() == pytest.approx(p2, abs=1e-12)
    state = opt.state[p]
    assert state["exp_avg"].tolist() == pytest.approx(m2, abs=1e-15)
    assert state["exp_inf"].tolist() == pytest.approx(u2, abs=1e-15)


def test_adamax_per_group_weight_decay_and_missing_grads():
    decayed, plain, unused = one_param([2.0]), one_param([2.0]), one_param([3.0])
    opt = Adamax(
        [{"params": [decayed], "weight_decay": 0.5}, {"params": [plain, unused], "weight_decay": 0.0}], lr=0.1
    )
    decayed.grad = torch.tensor([1.0], dtype=torch.float64)
    plain.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    step = 0.1 * (0.1 / (1.0 + 1e-6 + 1e-6))
    assert plain.item() == pytest.approx(2.0 - step, abs=1e-12)
    assert decayed.item() == pytest.approx(2.0 - step - 0.1 * 0.5 * 2.0, abs=1e-12)
    assert unused.item() == 3.0 and unused not in opt.state


def test_sparse_gradients_are_rejected():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    for cls in (Adamax, AdamaxW):
        with pytest.raises(RuntimeError, match="sparse"):
            cls(emb.parameters(), lr=0.1).step()


def train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    for x in batches:
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("cls", [Adamax, AdamaxW])
def test_resume_from_state_dict_is_exact(cls):
    torch.manual_seed(0)
    batches = [torch.randn(4, 3) for _ in range(6)]
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = cls(model.parameters(), lr=0.05)
    train_steps(model, opt, batches[:3])
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train_steps(model, opt, batches[3:])

    resumed = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    resumed.load_state_dict(saved_model)
    resumed_opt = cls(resumed.parameters(), lr=0.05)
    resumed_opt.load_state_dict(saved_opt)
    train_steps(resumed, resumed_opt, batches[3:])
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_adamaxw_without_decay_matches_torch_adamax():
    torch.manual_seed(1)
    mine = torch.nn.Parameter(torch.randn(5, 3))
    ref = torch.nn.Parameter(mine.detach().clone())
    opt = AdamaxW([mine], lr=0.01, weight_decay=0.0)
    ref_opt = torch.optim.Adamax([ref], lr=0.01, eps=1e-8, weight_decay=0.0)
    for _ in range(5):
        grad = torch.randn(5, 3)
        mine.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
    torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-7)
    assert not torch.equal(mine.detach(), torch.zeros(5, 3))


def test_adamaxw_decoupled_weight_decay_first_step():
    p = one_param([1.0, -2.0])
    opt = AdamaxW([p], lr=0.1, weight_decay=0.2, eps=1e-8)
    p.grad = torch.tensor([0.5, -0.1], dtype=torch.float64)
    opt.step()
    # Step 1: bias-corrected m equals g, u = |g| + eps, decay shrinks p before the update.
    expected = [w * (1 - 0.1 * 0.2) - 0.1 * g / (abs(g) + 1e-8) for w, g in zip([1.0, -2.0], [0.5, -0.1])]
    assert p.detach().tolist() == pytest.approx(expected, abs=1e-12)


def test_lr_scheduler_drives_the_step_size():
    p = one_param([0.0])
    opt = Adamax([p], lr=1.0, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    for _ in range(2):
        p.grad = torch.tensor([1.0], dtype=torch.float64)
        opt.step()
        sched.step()
    m1, u1 = 0.1, 1.0 + EPS
    m2, u2 = 0.9 * m1 + 0.1, max(B2 * u1, 1.0 + EPS)
    assert p.item() == pytest.approx(-(m1 / (u1 + EPS)) - 0.5 * (m2 / (u2 + EPS)), abs=1e-12)


def test_invalid_hyperparameters():
    p = one_param([0.0])
    with pytest.raises(ValueError):
        Adamax([p], lr=-1.0)
    with pytest.raises(ValueError):
        Adamax([p], betas=(1.0, 0.999))
    with pytest.raises(ValueError):
        AdamaxW([p], weight_decay=-0.1)


@pytest.mark.parametrize("cls", [Adamax, AdamaxW])
def test_cache_blocks_take_bit_identical_steps(cls):
    """The CPU's block-by-block step against whole tensors: the same numbers, bit for bit."""
    torch.manual_seed(3)
    shapes = [(700, 33), (33,), (5,), (2_001,), (64, 64)]
    base = [torch.randn(shape) for shape in shapes]
    runs = []
    for block in (0, 1_000, 97):  # whole tensors; blocks that cut tensors at odd places
        params = [torch.nn.Parameter(b.clone()) for b in base]
        opt = cls([{"params": params[:3], "weight_decay": 0.01}, {"params": params[3:], "weight_decay": 0.0}], lr=1e-3)
        opt.cpu_block_elements = block
        for step in range(4):
            gen = torch.Generator().manual_seed(step)
            for param in params:
                param.grad = torch.randn(param.shape, generator=gen) * 10.0**-step
            params[4].grad = params[4].grad.t()  # a non-contiguous gradient stays one piece
            params[1].grad = None if step == 2 else params[1].grad  # a parameter without gradient is skipped
            opt.step()
        runs.append(params)
    for params in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], params))
    assert not torch.equal(runs[0][0], base[0])


def test_cache_blocks_cover_every_element_once():
    from module.optimizers import cache_blocks

    tensors = [torch.zeros(n) for n in (10, 3, 25, 1)]
    rows = [(t, t, t, t, 1) for t in tensors]
    blocks = list(cache_blocks(rows, 8))
    for block in blocks:
        for piece in block:
            piece[0].add_(1)
    assert all(torch.equal(t, torch.ones_like(t)) for t in tensors)
    assert all(sum(piece[0].numel() for piece in block) >= 8 for block in blocks[:-1])
    assert max(piece[0].numel() for block in blocks for piece in block) <= 8


@pytest.mark.parametrize("cls", [Adamax, AdamaxW])
def test_compiled_kernel_agrees_with_the_eager_passes(cls, caplog):
    """``compiled=True`` (one torch.compile loop per large tensor) against the eager passes: the same steps to
    the last bit or two of each element, over changing learning rates and two groups; small tensors, a
    parameter without gradient and a non-contiguous gradient take the eager passes, bit for bit."""
    from module.optimizers import COMPILED_MIN_ELEMENTS

    torch.manual_seed(3)
    shapes = [(700, 33), (33,), (1,), (20_001,), (64, 64)]  # 20,001: not a multiple of the vector width
    base = [torch.randn(shape) for shape in shapes]
    runs = []
    for compiled in (False, True):
        params = [torch.nn.Parameter(b.clone()) for b in base]
        opt = cls([{"params": params[:3], "weight_decay": 0.01}, {"params": params[3:], "weight_decay": 0.0}],
                  lr=1e-3, compiled=compiled)
        with caplog.at_level("INFO", logger="module.optimizers"):
            for step in range(4):
                gen = torch.Generator().manual_seed(step)
                for param in params:
                    param.grad = torch.randn(param.shape, generator=gen) * 10.0**-step
                params[4].grad = params[4].grad.t()
                params[1].grad = None if step == 2 else params[1].grad
                opt.step()
                for group in opt.param_groups:
                    group["lr"] *= 0.7  # a schedule: new values must not need a new compile
        assert opt.compiled is compiled  # it compiled here (a C++ compiler is part of the test set-up)
        runs.append((params, opt))
    (eager, eager_opt), (fast, fast_opt) = runs
    large = [i for i, b in enumerate(base) if b.numel() >= COMPILED_MIN_ELEMENTS]
    assert large == [0, 3]
    for i, (a, b) in enumerate(zip(eager, fast)):
        if i in large:
            torch.testing.assert_close(b, a, rtol=2e-6, atol=1e-9)
            for key in ("exp_avg", "exp_inf"):
                # m = β1·m + (1 − β1)·g can cancel to near zero: rounding then shows as a large relative difference
                # of a tiny number, so the states are compared to within rounding of their largest terms (~0.1).
                torch.testing.assert_close(fast_opt.state[b][key], eager_opt.state[a][key], rtol=2e-6, atol=1e-8)
        else:
            assert torch.equal(a, b)
    # The large tensors did take the compiled loop: its roundings show in some last bits.
    assert any(not torch.equal(eager[i], fast[i]) for i in large)
    assert any("compiled update kernel ready" in r.getMessage() for r in caplog.records)
    assert not torch.equal(eager[0], base[0])


def test_compiled_kernel_falls_back_to_the_eager_passes(monkeypatch, caplog):
    """A kernel that cannot be compiled (no C++ compiler) leaves one warning and the eager passes' exact numbers."""
    import module.optimizers as optimizers

    def broken(kernel):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nlong log")

    monkeypatch.setattr(optimizers, "compiled_kernel", broken)
    torch.manual_seed(0)
    start = torch.randn(1 << 15)
    runs = []
    for compiled in (False, True):
        param = torch.nn.Parameter(start.clone())
        opt = Adamax([param], lr=1e-2, compiled=compiled)
        with caplog.at_level("WARNING", logger="module.optimizers"):
            for _ in range(2):
                param.grad = torch.ones(1 << 15)
                opt.step()
        runs.append(param)
    assert torch.equal(runs[0], runs[1])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["compiled Adamax step unavailable (InductorError: CppCompileError: C++ compile error); "
                        "using the eager passes"]


def test_optimizer_kernel_auto_compiles_long_cpu_runs_only():
    from mt_dnn.options import COMPILED_KERNEL_MIN_UPDATES, resolve_optimizer_kernel

    assert resolve_optimizer_kernel("auto", "cpu", COMPILED_KERNEL_MIN_UPDATES) == "compiled"
    assert resolve_optimizer_kernel("auto", "cpu", COMPILED_KERNEL_MIN_UPDATES - 1) == "eager"
    assert resolve_optimizer_kernel("auto", "cuda", 10**6) == "eager"
    assert resolve_optimizer_kernel("eager", "cpu", 10**6) == "eager"
    assert resolve_optimizer_kernel("compiled", "cpu", 1) == "compiled"


@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and left alone (coefficient clamped at 1)
def test_clip_grad_norm_takes_torchs_numbers(max_norm):
    from mt_dnn.optim import clip_grad_norm_

    torch.manual_seed(0)
    shapes = [(300, 40), (40,), (7, 7, 3), (1,)]
    grads = [torch.randn(shape) for shape in shapes]
    ours, theirs = ([torch.nn.Parameter(torch.zeros(shape)) for shape in shapes] for _ in range(2))
    for a, b, grad in zip(ours, theirs, grads):
        a.grad, b.grad = grad.clone(), grad.clone()
    ours[1].grad = theirs[1].grad = None  # a parameter without gradient
    total = clip_grad_norm_(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert torch.equal(total, expected)
    for a, b in zip(ours, theirs):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)
    assert torch.equal(ours[0].grad, grads[0]) is (max_norm > 1e5)


def test_clip_grad_norm_of_a_non_finite_gradient_takes_torchs_numbers_too():
    from mt_dnn.optim import clip_grad_norm_

    ours, theirs = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    ours.grad, theirs.grad = torch.tensor([1.0, float("inf"), 2.0]), torch.tensor([1.0, float("inf"), 2.0])
    assert torch.equal(clip_grad_norm_([ours], 1.0), torch.nn.utils.clip_grad_norm_([theirs], 1.0))
    torch.testing.assert_close(ours.grad, theirs.grad, equal_nan=True)
