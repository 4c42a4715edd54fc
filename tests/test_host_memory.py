"""--cpu_allocator: 'keep' serves large blocks from malloc's heap and reuses them; --cpu_primitive_cache bounds
oneDNN's kernel caches; train.py applies both on a CPU and no number changes (the speed and memory they buy are
measured in bench/)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_train import REPO, assert_same_weights, run_cli_process, train_args

from mt_dnn.host_memory import PRIMITIVE_CACHE_VARIABLES, bound_primitive_caches, configure_cpu_allocator, malloc_stats

needs_glibc = pytest.mark.skipif(malloc_stats() is None, reason="needs glibc 2.33+ (mallopt, mallinfo2)")


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (malloc's and oneDNN's settings are process-wide: the test process keeps its
    own), with the kernel libraries' cache variables unset."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for name in PRIMITIVE_CACHE_VARIABLES:
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True, text=True)


@needs_glibc
def test_keep_serves_a_large_block_from_the_heap_and_reuses_it_after_free():
    done = run_python("""
        import torch
        from mt_dnn.host_memory import keep_freed_memory, malloc_stats

        MB = 2**20
        before = malloc_stats()
        block = torch.empty(16 * MB)  # 64 MB: above glibc's largest mmap threshold
        mapped = malloc_stats().mapped - before.mapped
        del block
        assert keep_freed_memory()
        before = malloc_stats()
        block = torch.empty(16 * MB)
        first = malloc_stats()
        del block
        freed = malloc_stats()
        block = torch.empty(15 * MB)  # a little smaller: it fits the freed block whatever lies around it
        again = malloc_stats()
        print(mapped // MB, (first.mapped - before.mapped) // MB, (first.heap - before.heap) // MB,
              (freed.heap - first.heap) // MB, (again.heap - freed.heap) // MB)
    """)
    assert done.returncode == 0, done.stderr
    mapped_by_default, mapped_kept, heap_grew, trimmed, grew_again = map(int, done.stdout.split())
    assert mapped_by_default >= 64  # the C library's default: a block of its own from the kernel
    assert mapped_kept == 0 and heap_grew >= 60  # keep: from the heap (some of it may have been free there) ...
    assert trimmed == 0 and grew_again == 0  # ... which keeps it when freed, and serves it again


def test_an_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="unknown CPU allocator setting 'fast'"):
        configure_cpu_allocator("fast")


def primitive_cache_growth_mb(capacity: int) -> float:
    """malloc's bytes in use after bfloat16 products of 48 new shapes (forward and backward of one linear layer)
    with ``capacity`` entries per cache, against before them."""
    done = run_python(f"""
        import torch
        from mt_dnn.host_memory import bound_primitive_caches, malloc_stats

        bound_primitive_caches({capacity})
        layer = torch.nn.Linear(384, 1536)

        def product(rows):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = layer(torch.randn(rows, 384, requires_grad=True))
            out.float().sum().backward()

        product(64)
        before = malloc_stats().in_use
        for rows in range(65, 65 + 48):
            product(rows)
        print((malloc_stats().in_use - before) / 2**20)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout)


@needs_glibc
def test_a_small_primitive_cache_stops_memory_growing_with_each_new_shape():
    unbounded = primitive_cache_growth_mb(1024)  # the libraries' own capacity
    if unbounded < 8:
        pytest.skip(f"bfloat16 products do not cache oneDNN kernels on this CPU (+{unbounded:.1f} MB for 48 shapes)")
    assert primitive_cache_growth_mb(4) < unbounded / 8


def unset_cache_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel libraries' cache variables unset for this test, restored after it."""
    for name in PRIMITIVE_CACHE_VARIABLES:
        monkeypatch.setenv(name, "")  # recorded, so that delenv's change is undone too
        monkeypatch.delenv(name)


def test_primitive_cache_capacity_is_set_unless_the_user_has_set_it(monkeypatch):
    unset_cache_variables(monkeypatch)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "256")
    assert bound_primitive_caches(64) == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64", "LRU_CACHE_CAPACITY": "256"}
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
    with pytest.raises(ValueError, match="at least 1 entry, not 0"):
        bound_primitive_caches(0)


def test_train_runs_with_either_setting_to_the_same_weights(tiny_model_dir, features_dir, tmp_path, monkeypatch):
    unset_cache_variables(monkeypatch)
    settings = {"keep": ("--cpu_allocator", "keep"),  # the defaults: keep, 512 primitives per cache
                "system": ("--cpu_allocator", "system", "--cpu_primitive_cache", "1")}
    runs = {}
    for name, flags in settings.items():
        out = tmp_path / name
        # bfloat16: its products go through oneDNN (where the CPU has the instructions), whose caches are bounded.
        process = run_cli_process(*train_args(tiny_model_dir, features_dir, out, "--epochs", "1", *flags,
                                              "--precision", "bf16"))
        _, stderr = process.communicate()
        assert process.returncode == 0, stderr[-2000:]
        runs[name] = out
        run_config = json.loads((out / "config.json").read_text())["run"]
        assert (run_config["cpu_allocator"], run_config["cpu_primitive_cache"]) == (name, 512 if name == "keep" else 1)
    log = (runs["keep"] / "mt-dnn-train.log").read_text(encoding="utf-8")
    if malloc_stats() is not None:
        assert "malloc keeps freed memory for reuse" in log
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY=512, LRU_CACHE_CAPACITY=512" in log
    log = (runs["system"] / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert "CPU allocator" not in log and "ONEDNN_PRIMITIVE_CACHE_CAPACITY=1, LRU_CACHE_CAPACITY=1" in log
    assert_same_weights(runs["keep"] / "model_0.pt", runs["system"] / "model_0.pt")


def test_cpu_primitive_cache_needs_room_for_one_entry(tiny_model_dir, features_dir, tmp_path):
    process = run_cli_process(*train_args(tiny_model_dir, features_dir, tmp_path / "out", "--cpu_primitive_cache", "0"))
    _, stderr = process.communicate()
    assert process.returncode == 2 and "--cpu_primitive_cache" in stderr and len(stderr.strip().splitlines()) == 1


def test_the_flag_is_a_choice_defaulting_to_keep():
    from train import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--cpu_allocator", "fast"])
    assert build_parser().parse_args([]).cpu_allocator == "keep"
    assert build_parser().parse_args([]).cpu_primitive_cache == 512
