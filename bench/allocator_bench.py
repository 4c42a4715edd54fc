"""--cpu_allocator keep against system, paired in one process: the same batches replayed, the setting switched
between rounds, so a noisy machine slows both sides alike.

    python bench/allocator_bench.py                # 8 rounds of 20 updates each way
    python bench/allocator_bench.py --rounds 12

MiniLM, the GLUE mixture of bench/train_bench.py (its cached features; run that once first), train.py's
defaults otherwise. glibc's settings apply to later allocations only, so one process can switch back and
forth: 'keep' (mmap off, no trimming) and the steady state of the C library's defaults (mmap above 32 MB, trimming
above 64 MB; see ``use_system_defaults``).
Also times the word embedding's backward alone (its gradient is the largest block an update asks for).
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_bench import CONFIGS, SHARED, build_mtdnn  # noqa: E402
from mt_dnn.host_memory import keep_freed_memory  # noqa: E402

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


def use_system_defaults() -> None:
    """glibc's defaults as a training process settles into them: mmap allowed (65,536 blocks), the dynamic mmap
    threshold at its ceiling (32 MB: it rises to the largest mapped block freed) and the trim threshold at twice
    that. Once mallopt has set a threshold glibc stops adjusting it, so this is the steady state the defaults reach,
    their most favourable one here: fewer blocks mapped than while the threshold is still rising."""
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_MAX, 65536)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
    libc.mallopt(_M_TRIM_THRESHOLD, 64 * 2**20)


def switch(setting: str) -> None:
    if setting == "keep":
        if not keep_freed_memory():
            sys.exit("error: this C library is not glibc: nothing to compare")
    else:
        use_system_defaults()


def embedding_backward_ms(setting: str, repeats: int = 30) -> float:
    """Median time of the word embedding's forward and backward (MiniLM's table, 16 × 40 tokens)."""
    import torch

    switch(setting)
    table = torch.randn(30522, 384, requires_grad=True)
    ids = torch.randint(0, 30522, (16, 40))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.nn.functional.embedding(ids, table).sum().backward()
        table.grad = None
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=8, help="rounds, each side once per round (default: %(default)s)")
    p.add_argument("--updates", type=int, default=20, help="updates per side per round (default: %(default)s)")
    p.add_argument("--work", type=Path, default=REPO / "bench/.work", help="bench/train_bench.py's cache")
    args = p.parse_args()
    import torch

    features = args.work / "features_all-MiniLM-L6-v2_400_128"
    if not features.is_dir():
        sys.exit(f"error: {features} not found: run bench/train_bench.py once first")
    for setting in ("system", "keep", "system", "keep"):
        print(f"word embedding forward+backward, {setting}: {embedding_backward_ms(setting):.1f} ms (median of 30)")
    options = argparse.Namespace(model=str(SHARED / "models/all-MiniLM-L6-v2"), tasks=["rte", "mrpc", "stsb", "cola", "sst"],
                                 max_seq_len=128)
    _, model, loader = build_mtdnn(CONFIGS["default"], options, features, torch.device("cpu"))
    stream = iter(loader)
    for _ in range(4):
        model.update(next(stream))
    batches = [next(stream) for _ in range(args.updates)]
    times: dict[str, list[float]] = {"system": [], "keep": []}
    for round_ in range(args.rounds):
        for setting in ("system", "keep") if round_ % 2 == 0 else ("keep", "system"):
            switch(setting)
            started = time.perf_counter()
            for batch in batches:
                model.update(batch)
            times[setting].append((time.perf_counter() - started) / len(batches) * 1000)
    wins = sum(k < s for k, s in zip(times["keep"], times["system"]))
    for setting, values in times.items():
        print(f"{setting}: ms per update, median {statistics.median(values):.0f}, min {min(values):.0f} "
              f"({', '.join(f'{v:.0f}' for v in values)})")
    ratio = statistics.median(times["system"]) / statistics.median(times["keep"])
    print(f"keep faster in {wins} of {args.rounds} rounds; median system / keep = {ratio:.3f}")


if __name__ == "__main__":
    main()
