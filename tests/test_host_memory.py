"""--cpu_allocator: 'keep' serves large blocks from malloc's heap and reuses them; train.py applies it on a CPU
and no number changes (the speed it buys is measured in bench/)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_train import REPO, assert_same_weights, run_cli_process, train_args

from mt_dnn.host_memory import configure_cpu_allocator, malloc_stats

needs_glibc = pytest.mark.skipif(malloc_stats() is None, reason="needs glibc 2.33+ (mallopt, mallinfo2)")


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (malloc's settings are process-wide: the test process keeps its own)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
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


def test_train_runs_with_either_setting_to_the_same_weights(tiny_model_dir, features_dir, tmp_path):
    runs = {}
    for choice in ("keep", "system"):
        out = tmp_path / choice
        args = train_args(tiny_model_dir, features_dir, out, "--epochs", "1", "--cpu_allocator", choice,
                          "--precision", "fp32")
        process = run_cli_process(*args)
        _, stderr = process.communicate()
        assert process.returncode == 0, stderr[-2000:]
        runs[choice] = out
        assert json.loads((out / "config.json").read_text())["run"]["cpu_allocator"] == choice
    log = (runs["keep"] / "mt-dnn-train.log").read_text(encoding="utf-8")
    if malloc_stats() is not None:
        assert "malloc keeps freed memory for reuse" in log
    assert "CPU allocator" not in (runs["system"] / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert_same_weights(runs["keep"] / "model_0.pt", runs["system"] / "model_0.pt")


def test_the_flag_is_a_choice_defaulting_to_keep():
    from train import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--cpu_allocator", "fast"])
    assert build_parser().parse_args([]).cpu_allocator == "keep"
