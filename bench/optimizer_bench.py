"""One optimizer step over MiniLM's parameters, side by side: Adamax in cache-sized blocks (the default
on a CPU), Adamax over whole tensors, fused AdamW and the per-tensor AdamW loop.

    python bench/optimizer_bench.py [--steps 10] [--model ../shared/models/all-MiniLM-L6-v2]

Each optimizer owns a copy of the parameters with the same random gradients; steps are interleaved
(one of each in turn), and the minimum and median time per step are printed, with the ratio of the
medians against whole-tensor Adamax. The two Adamax variants must end bit-identical (checked).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from module.optimizers import Adamax  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO.parent / "shared/models/all-MiniLM-L6-v2"), help="(default: %(default)s)")
    p.add_argument("--steps", type=int, default=10, help="timed steps of each optimizer (default: %(default)s)")
    args = p.parse_args(argv)
    from transformers import AutoModel

    shapes = [param.shape for param in AutoModel.from_pretrained(args.model).parameters()]
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=gen) for shape in shapes]
    grads = [torch.randn(shape, generator=gen) * 1e-3 for shape in shapes]

    def copies() -> list[torch.nn.Parameter]:
        params = [torch.nn.Parameter(t.clone()) for t in start]
        for param, grad in zip(params, grads):
            param.grad = grad
        return params

    optimizers = {}
    for name in ("adamax (compiled)", "adamax (blocks)", "adamax (whole tensors)", "adamw (fused)", "adamw (per-tensor loop)"):
        params = copies()
        if name.startswith("adamax"):
            opt = Adamax([{"params": params, "weight_decay": 0.01}], lr=1e-4, compiled="compiled" in name)
            opt.cpu_block_elements = opt.cpu_block_elements if "blocks" in name else 0
        else:
            opt = torch.optim.AdamW(params, lr=1e-4, fused="fused" in name, foreach=False if "loop" in name else None)
        optimizers[name] = (opt, params)
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.steps + 1):  # the first step of each allocates its state: not timed
        for name, (opt, _params) in optimizers.items():
            started = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - started)
    n = sum(t.numel() for t in start)
    print(f"{n / 1e6:.1f} M parameters, {torch.get_num_threads()} threads, {args.steps} steps each (interleaved)")
    whole = statistics.median(times["adamax (whole tensors)"][1:])
    for name, series in times.items():
        median = statistics.median(series[1:])
        print(f"{name:<26} min {1e3 * min(series[1:]):7.1f} ms  median {1e3 * median:7.1f} ms  "
              f"× whole-tensor Adamax {whole / median:5.2f}")
    blocks, plain = optimizers["adamax (blocks)"][1], optimizers["adamax (whole tensors)"][1]
    same = all(torch.equal(a, b) for a, b in zip(blocks, plain))
    print(f"Adamax blocks vs whole tensors after {args.steps + 1} steps: {'bit-identical' if same else 'DIFFERENT'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
