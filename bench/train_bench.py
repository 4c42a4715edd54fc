"""Training throughput of MT-DNN on a real GLUE mixture, each lever on and off, side by side in one run.

    python bench/train_bench.py                 # every configuration, 40 timed updates each
    python bench/train_bench.py --quick         # naive, HF reference and default: CI smoke (< 5 min on 2 cores)
    python bench/train_bench.py --configs default,fp32 --updates 100 --repeats 3
    python bench/train_bench.py --memory 1000   # the default's memory (RSS now, peak so far; malloc in use) every 100 updates
    python bench/train_bench.py --memory 1000 --configs default,pad8   # ... of each configuration named

The mixture is RTE + MRPC + STS-B + CoLA + SST-2 from ``../shared/data/glue`` (the first ``--rows``
training rows of each, tokenized once into ``--work``), the encoder ``../shared/models/all-MiniLM-L6-v2``
(on a GPU also a randomly initialised bert-base, ``--model bert-base-random``). Every configuration
runs in its own process (fresh memory high-water mark, no compiled state shared), on the same batches
of examples, batch 16, max_seq_len 128, after ``--warmup`` untimed updates. Printed per
configuration: examples/s, real (non-padding) tokens/s, the padding fraction of the batches, peak
memory (RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU), achieved FLOP/s counting real
tokens only (6 × non-embedding parameters × tokens + attention, 12 × layers × hidden × length² per
sequence), that as a fraction of the device's peak, and real tokens/s as multiples of the naive path
and of the HF reference loop. Peak: on a CPU the best rate of a large matrix product measured here in
the configuration's precision with the same threads (a reachable peak, not a datasheet number); on a
GPU the datasheet dense bf16 rate when the device is known, else the same measurement.

Configurations (``--configs``; ``all`` = every one):
  naive    batches padded to --max_seq_len, float32, eager attention, per-tensor AdamW loop, shuffled batches,
           the C library's malloc settings, the kernel libraries' primitive caches (1,024 entries), torch's dropout
  hf       bench/hf_reference.py's loop (AutoModelForSequenceClassification per task on one shared encoder,
           DataCollatorWithPadding, torch.optim.AdamW defaults, float32) on the same batches; the libraries' defaults
  default  train.py's defaults: length-grouped batches, --precision auto, --attn_implementation auto (eager
           on a CPU, SDPA on a GPU), Adamax (the paper's optimizer) with --optimizer_kernel auto (on a CPU
           compiled for this 10,000-update schedule; compiled in the untimed warm-up), --cpu_dropout fast,
           2 loader workers, --cpu_allocator keep, --cpu_primitive_cache 64
  adamw    the default with fused AdamW (the HF loop's optimizer: the like-for-like comparison)
  fp32 / no_group / sdpa / eager_kernel / torch_dropout / adamax_whole / workers0 / system / cache1024   the
           default with one lever switched back (eager_kernel: --optimizer_kernel eager, Adamax's passes in
           cache-sized blocks; torch_dropout: --cpu_dropout torch;
           adamax_whole: those passes over whole tensors; system: --cpu_allocator system; cache1024:
           --cpu_primitive_cache 1024); loop_adamw: adamw with the per-tensor loop
  tokens   the default with token-budget batches (--batch_size 64 --max_tokens_per_batch 2048)
  compile / grad_ckpt / threads1   the default with --compile, --gradient_checkpointing, --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
TASKS = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA", "sst": "SST-2"}
DATASHEET_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "V100": 125.0}


@dataclass(frozen=True)
class Config:
    """One configuration: the levers of the MT-DNN path, or the HF reference loop."""

    name: str
    loop: str = "mtdnn"  # or "hf"
    precision: str = "auto"
    do_padding: bool = False
    group_by_length: bool = True
    attn_implementation: str = "auto"
    optimizer: str = "adamax"
    fused: bool = True  # AdamW: the fused kernel; Adamax: cache-sized blocks on a CPU
    workers: int = 2
    batch_size: int = 16
    max_tokens: int = 0
    compile: bool = False
    gradient_checkpointing: bool = False
    threads: int = 0
    pad_to_multiple_of: int | str = "auto"  # --pad_to_multiple_of (auto: 8 under bf16 on a CPU)
    cpu_allocator: str = "keep"
    primitive_cache: int = 512  # --cpu_primitive_cache (1024: the kernel libraries' own capacity)
    optimizer_kernel: str = "auto"  # --optimizer_kernel (auto: compiled on a CPU, the bench's 10,000-update schedule)
    cpu_dropout: str = "fast"  # --cpu_dropout


DEFAULT = Config("default")  # train.py's defaults
CONFIGS = {
    "naive": Config("naive", precision="fp32", do_padding=True, group_by_length=False, attn_implementation="eager",
                    optimizer="adamw", fused=False, workers=0, cpu_allocator="system", primitive_cache=1024,
                    cpu_dropout="torch"),
    "hf": Config("hf", loop="hf", precision="fp32", group_by_length=False, optimizer="adamw", fused=False, workers=0,
                 cpu_allocator="system", primitive_cache=1024),
    "default": DEFAULT,
    "adamw": replace(DEFAULT, name="adamw", optimizer="adamw"),
    "fp32": replace(DEFAULT, name="fp32", precision="fp32"),
    "no_group": replace(DEFAULT, name="no_group", group_by_length=False),
    "sdpa": replace(DEFAULT, name="sdpa", attn_implementation="sdpa"),
    "adamax_whole": replace(DEFAULT, name="adamax_whole", fused=False, optimizer_kernel="eager"),
    "eager_kernel": replace(DEFAULT, name="eager_kernel", optimizer_kernel="eager"),
    "torch_dropout": replace(DEFAULT, name="torch_dropout", cpu_dropout="torch"),
    "loop_adamw": replace(DEFAULT, name="loop_adamw", optimizer="adamw", fused=False),
    "workers0": replace(DEFAULT, name="workers0", workers=0),
    "tokens": replace(DEFAULT, name="tokens", batch_size=64, max_tokens=2048),
    "compile": replace(DEFAULT, name="compile", compile=True),
    "grad_ckpt": replace(DEFAULT, name="grad_ckpt", gradient_checkpointing=True),
    "threads1": replace(DEFAULT, name="threads1", threads=1),
    "pad1": replace(DEFAULT, name="pad1", pad_to_multiple_of=1),
    "cache64": replace(DEFAULT, name="cache64", primitive_cache=64),
    "pad1_cache64": replace(DEFAULT, name="pad1_cache64", pad_to_multiple_of=1, primitive_cache=64),
    "system": replace(DEFAULT, name="system", cpu_allocator="system"),
    "cache1024": replace(DEFAULT, name="cache1024", primitive_cache=1024),
    "cache4096": replace(DEFAULT, name="cache4096", primitive_cache=4096),
    "pad4_cache1024": replace(DEFAULT, name="pad4_cache1024", pad_to_multiple_of=4, primitive_cache=1024),
    "pad16": replace(DEFAULT, name="pad16", pad_to_multiple_of=16),
}
QUICK = ("naive", "hf", "default")


# ----------------------------------------------------------------------------- data
def prepare_features(glue_dir: Path, model: str, work: Path, tasks: list[str], rows: int, max_seq_len: int) -> Path:
    """Raw GLUE → canonical TSV → the first ``rows`` training rows of each task tokenized; cached in ``work``."""
    features = work / f"features_{Path(model).name}_{rows}_{max_seq_len}"
    if all((features / f"{task}_train.json").is_file() for task in tasks):
        return features
    raw = work / "glue"
    for task in tasks:
        source = glue_dir / TASKS[task]
        if not source.is_dir():
            sys.exit(f"error: {source} not found (--glue_dir)")
        (raw / TASKS[task]).mkdir(parents=True, exist_ok=True)
        train = (source / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        keep = train[: rows + 1]  # a header line, or one row more than needed: the cut below is exact
        (raw / TASKS[task] / "train.tsv").write_text("".join(keep), encoding="utf-8")
    run([sys.executable, "experiments/glue/glue_prepro.py", "--root_dir", str(raw), "--tasks", ",".join(tasks)])
    canonical = raw / "canonical_data"
    for task in tasks:
        path = canonical / f"{task}_train.tsv"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:rows]
        path.write_text("".join(lines), encoding="utf-8")
    run([sys.executable, "prepro_std.py", "--model", model, "--root_dir", str(canonical), "--task_def",
         "experiments/glue/glue_task_def.yml", "--max_seq_len", str(max_seq_len),
         "--datasets", ",".join(f"{task}_train" for task in tasks)])
    (canonical / Path(model).name).rename(features)
    return features


def run(command: list[str]) -> None:
    """Run a repository tool, quietly; its output only when it fails."""
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


# ----------------------------------------------------------------------------- one configuration
def _proc_status_mb(*fields: str) -> tuple[float, ...]:
    """The named fields of /proc/self/status (kB there), in MB; 0 for a field the kernel does not report."""
    values = {}
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            name = line.split(":")[0]
            if name in fields:
                values[name] = int(line.split()[1]) / 1024
    return tuple(values.get(field, 0.0) for field in fields)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    now, peak = _proc_status_mb("VmRSS", "VmHWM")
    return now, peak


def malloc_in_use_mb() -> float:
    """Bytes glibc's malloc has handed out and not yet been given back, in MB (``mallinfo2``: heap blocks in use
    plus mmapped blocks). Unlike the RSS it leaves out freed memory the allocator keeps: the CPU's counterpart
    of ``torch.cuda.memory_allocated`` (tensors, and oneDNN's cached primitives). NaN without glibc 2.33+."""
    from mt_dnn.host_memory import malloc_stats

    stats = malloc_stats()
    return stats.in_use_mb if stats is not None else float("nan")


def non_embedding_parameters(encoder: Any) -> int:
    """Parameters of the encoder outside its embedding tables (what 6·N·tokens counts)."""
    embeddings = getattr(encoder, "embeddings", None)
    skip = {id(p) for p in embeddings.parameters()} if embeddings is not None else set()
    return sum(p.numel() for p in encoder.parameters() if id(p) not in skip)


def build_mtdnn(cfg: Config, args: argparse.Namespace, features: Path, device: Any) -> tuple[Any, Any, Any]:
    """The network, update step and loader a ``train.py`` run with these levers builds."""
    import torch

    from data_utils.task_def import load_task_defs
    from mt_dnn.batcher import Collater, MultiTaskDataset, TaskDataset
    from mt_dnn.encoder import initial_network
    from mt_dnn.model import MTDNNModel
    from mt_dnn.options import (
        AdvOptions,
        ModelOptions,
        TrainOptions,
        resolve_attention,
        resolve_pad_to_multiple_of,
        resolve_precision,
    )
    from mt_dnn.sampler import MultiTaskBatchSampler, SamplerOptions
    from mt_dnn.sources import run_tokenizer

    task_defs_all = load_task_defs(str(REPO / "experiments/glue/glue_task_def.yml"))
    task_defs = [task_defs_all[task] for task in args.tasks]
    sets = [TaskDataset(features / f"{t}_train.json", task_defs_all[t], t, args.max_seq_len, is_train=True) for t in args.tasks]
    attention = resolve_attention(cfg.attn_implementation, device.type)
    model_opts = ModelOptions(init_checkpoint=args.model, attn_implementation=attention,
                              gradient_checkpointing=cfg.gradient_checkpointing)
    if args.model == "bert-base-random":
        from transformers import AutoTokenizer, BertConfig, BertModel

        tokenizer = AutoTokenizer.from_pretrained(str(SHARED / "models/all-MiniLM-L6-v2"))
        from mt_dnn.matcher import SANBertNetwork

        encoder = BertModel(BertConfig(attn_implementation=attention))
        network = SANBertNetwork(encoder, task_defs, model_opts, sep_token_id=tokenizer.sep_token_id)
    else:
        _, tokenizer = run_tokenizer(None, args.model, None)
        network = initial_network(model_opts, task_defs, tokenizer.sep_token_id, resume=False)
    if cfg.compile:
        network.bert.compile(dynamic=True)
    precision = resolve_precision(cfg.precision, device.type)
    pad_to_multiple_of = resolve_pad_to_multiple_of(cfg.pad_to_multiple_of, device.type, precision)
    train_opts = TrainOptions(optimizer=cfg.optimizer, learning_rate=2e-5, fp16=precision == "fp16", bf16=precision == "bf16",
                              optimizer_kernel=cfg.optimizer_kernel, cpu_dropout=cfg.cpu_dropout)
    sampler = MultiTaskBatchSampler(sets, cfg.batch_size, options=SamplerOptions(
        seed=2018, group_by_length=cfg.group_by_length, max_tokens=cfg.max_tokens))
    model = MTDNNModel(network, task_defs, train_opts, AdvOptions(), 10_000, device)
    if not cfg.fused and cfg.optimizer == "adamw":  # the per-tensor loop torch picks on a CPU when not told otherwise
        for group in model.optimizer.param_groups:
            group["fused"], group["foreach"] = False, False
    elif not cfg.fused:  # Adamax's passes over whole tensors, as before the cache-sized blocks
        model.optimizer.cpu_block_elements = 0
    loader = torch.utils.data.DataLoader(
        MultiTaskDataset(sets), batch_sampler=sampler, num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
        pin_memory=device.type == "cuda",
        collate_fn=Collater(tokenizer.pad_token_id or 0, args.max_seq_len, cfg.do_padding,
                            pad_to_multiple_of=pad_to_multiple_of),
    )
    return network, model, loader


def hf_batches(features: Path, args: argparse.Namespace, model: str) -> tuple[Any, Any, Any]:
    """bench/hf_reference.py's model, optimizer and batches (one head per task on one shared encoder)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from bench.hf_reference import build_optimizer
    from data_utils.task_def import load_task_defs
    from mt_dnn.batcher import TaskDataset
    from mt_dnn.sampler import MultiTaskBatchSampler, SamplerOptions

    task_defs_all = load_task_defs(str(REPO / "experiments/glue/glue_task_def.yml"))
    sets = [TaskDataset(features / f"{t}_train.json", task_defs_all[t], t, args.max_seq_len, is_train=True) for t in args.tasks]
    tokenizer = AutoTokenizer.from_pretrained(model)
    collate = DataCollatorWithPadding(tokenizer)
    heads: dict[str, Any] = {}
    for task in args.tasks:
        head = AutoModelForSequenceClassification.from_pretrained(model, num_labels=task_defs_all[task].n_class)
        if heads:  # one shared encoder, as MT-DNN: every head uses the first head's
            first = next(iter(heads.values()))
            setattr(head, head.base_model_prefix, getattr(first, first.base_model_prefix))
        heads[task] = head
    optimizer = build_optimizer(torch.nn.ModuleList(heads.values()), 2e-5)
    sampler = MultiTaskBatchSampler(sets, 16, options=SamplerOptions(seed=2018))

    def batches():
        while True:
            for indices in sampler:
                task = args.tasks[indices[0][0]]
                rows = [sets[i][j].sample for i, j in indices]
                yield task, collate([{"input_ids": r["token_id"], "token_type_ids": r["type_id"], "labels": r["label"]} for r in rows])

    return heads, optimizer, batches()


def measure(cfg: Config, args: argparse.Namespace, features: Path) -> dict[str, Any]:
    """Time ``args.updates`` updates after ``args.warmup`` untimed ones; memory every ``args.memory_every``."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    if device.type == "cpu":  # as train.py; the HF loop and the naive path keep the libraries' defaults
        from mt_dnn.host_memory import bound_primitive_caches, configure_cpu_allocator

        configure_cpu_allocator(cfg.cpu_allocator)
        bound_primitive_caches(cfg.primitive_cache)
    torch.manual_seed(2018)
    total = args.warmup + args.updates
    memory: list[tuple[int, float]] = []
    stats = {"examples": 0, "real": 0, "padded": 0, "sq": 0}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if cfg.loop == "hf":
        heads, optimizer, stream = hf_batches(features, args, args.model)
        for head in heads.values():
            head.to(device).train()
        encoder = next(iter(heads.values())).base_model
        params = [p for group in optimizer.param_groups for p in group["params"]]

        def step() -> Any:
            task, batch = next(stream)
            batch = {k: v.to(device) for k, v in batch.items()}
            if heads[task].config.num_labels == 1:
                batch["labels"] = batch["labels"].float()
            heads[task](**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return batch["attention_mask"]
    else:
        from mt_dnn.run_setup import probe_memory, warm_batch_shapes

        network, model, loader = build_mtdnn(cfg, args, features, device)
        encoder = network.bert

        def batches():
            while True:
                yield from loader

        stream = batches()
        probed = False

        def step() -> Any:
            nonlocal probed
            batch = next(stream)
            model.update(batch)
            if model.stepped and not probed:  # as train.py: each task's largest batch once, after update 1
                probe_memory(model, loader.batch_sampler, loader.dataset.datasets, loader.collate_fn)
                if device.type == "cpu" and model.amp_dtype is not None:
                    warm_batch_shapes(model, loader.batch_sampler, loader.dataset.datasets, loader.collate_fn)
                probed = True
            return batch.attention_mask

    n_params = non_embedding_parameters(encoder)
    layers, hidden = encoder.config.num_hidden_layers, encoder.config.hidden_size
    # On a CPU, malloc's bytes in use at the end of each forward (every activation the backward needs is alive):
    # the counterpart of torch.cuda.max_memory_allocated, which the RSS is not (it keeps what malloc keeps).
    forward_peak = [0.0]
    if args.memory_every and device.type == "cpu":
        encoder.register_forward_hook(lambda *_: forward_peak.__setitem__(0, max(forward_peak[0], malloc_in_use_mb())))
    started = 0.0
    for update in range(1, total + 1):
        if update == args.warmup + 1:
            sync()
            started = time.perf_counter()
        mask = step()
        if update > args.warmup:
            lengths = mask.sum(dim=1).double()
            stats["examples"] += mask.shape[0]
            stats["real"] += int(lengths.sum())
            stats["padded"] += mask.numel()
            stats["sq"] += float((lengths**2).sum())
        if args.memory_every and update % args.memory_every == 0:
            memory.append((update, *(rss_mb() + (malloc_in_use_mb(), *_proc_status_mb("RssFile"), forward_peak[0])
                                     if device.type == "cpu" else
                                      (torch.cuda.memory_allocated() / 2**20, torch.cuda.max_memory_allocated() / 2**20))))
    sync()
    elapsed = time.perf_counter() - started
    flops = 6 * n_params * stats["real"] + 12 * layers * hidden * stats["sq"]
    peak_memory = rss_mb()[1] if device.type == "cpu" else torch.cuda.max_memory_allocated() / 2**20
    from mt_dnn.options import resolve_precision

    precision = resolve_precision(cfg.precision, device.type)
    return {
        "config": cfg.name, "precision": precision, "seconds": elapsed, "updates": args.updates,
        "examples_per_s": stats["examples"] / elapsed, "real_tokens_per_s": stats["real"] / elapsed,
        "padding_fraction": 1 - stats["real"] / max(stats["padded"], 1), "peak_memory_mb": peak_memory,
        "flops_per_s": flops / elapsed, "memory": memory, "threads": torch.get_num_threads(),
    }


def device_peak(device: Any, precision: str) -> float:
    """FLOP/s the device can reach in ``precision``: datasheet bf16 on a known GPU, else a measured matmul."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in DATASHEET_BF16_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


# ----------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], peaks: dict[str, float]) -> str:
    """The side-by-side table: the best of the repeats (other load only slows a run down), the range of
    real tokens/s over the repeats, and ratios to the naive path and the HF loop in real tokens/s."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_name.setdefault(result["config"], []).append(result)
    rows = {name: best_result(runs) for name, runs in by_name.items()}
    naive = rows.get("naive", {}).get("real_tokens_per_s")
    hf = rows.get("hf", {}).get("real_tokens_per_s")
    head = ("| config | precision | examples/s | real tokens/s | range over runs | padding | peak memory MB | GFLOP/s "
            "| % of peak | × naive | × HF |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows.items():
        ratio = lambda base: f"{r['real_tokens_per_s'] / base:.2f}" if base else "—"  # noqa: E731
        spread = sorted(run["real_tokens_per_s"] for run in by_name[name])
        peak = peaks[r["precision"]]
        lines.append(
            f"| {name} | {r['precision']} | {r['examples_per_s']:.1f} | {r['real_tokens_per_s']:.0f} | "
            f"{spread[0]:.0f}–{spread[-1]:.0f} ({len(spread)}) | {100 * r['padding_fraction']:.0f} % | "
            f"{r['peak_memory_mb']:.0f} | {r['flops_per_s'] / 1e9:.1f} | {100 * r['flops_per_s'] / peak:.1f} % | "
            f"{ratio(naive)} | {ratio(hf)} |"
        )
    return "\n".join(lines)


def best_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the most real tokens/s."""
    return max(runs, key=lambda r: r["real_tokens_per_s"])


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Bar chart of real tokens/s per configuration (best of the repeats)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["config"] for r in results))
    values = [best_result([r for r in results if r["config"] == n])["real_tokens_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 3.6))
    ax.bar(names, values, color=["#999999" if n in ("naive", "hf") else "#3b6ea5" for n in names])
    ax.set_ylabel("real tokens / s")
    ax.set_title(title.replace(", ", ",\n", 1) if len(title) > 60 else title, fontsize=9)  # two lines: not clipped
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue_dir", type=Path, default=SHARED / "data/glue", help="raw GLUE folders (default: %(default)s)")
    p.add_argument("--model", default=str(SHARED / "models/all-MiniLM-L6-v2"),
                   help="encoder folder or hub id, or bert-base-random (GPU) (default: %(default)s)")
    p.add_argument("--tasks", default="rte,mrpc,stsb,cola,sst", help="GLUE tasks of the mixture (default: %(default)s)")
    p.add_argument("--rows", type=int, default=400, help="training rows per task (default: %(default)s)")
    p.add_argument("--updates", type=int, default=40, help="timed updates per configuration (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=4, help="untimed updates first (default: %(default)s)")
    p.add_argument("--max_seq_len", type=int, default=128, help="(default: %(default)s)")
    p.add_argument("--configs", default="all", help=f"comma-separated among {', '.join(CONFIGS)}, or all (default: all)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each configuration, interleaved (default: 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="(default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="naive, hf and default; 64 rows, 8 updates (CI smoke)")
    p.add_argument("--memory", type=int, default=0, help="instead: run the default (or the --configs) N updates; memory every 100 (default: 0)")
    p.add_argument("--memory_every", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=REPO / "bench/.work", help="cache of tokenized data (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write all results here (default: none)")
    p.add_argument("--plot", type=Path, default=None, help="bar chart of real tokens/s (PNG) (default: none)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = p.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        p.error(f"--tasks: unknown {unknown}; known: {sorted(TASKS)}")
    if args.quick:
        args.rows, args.updates, args.warmup = min(args.rows, 64), min(args.updates, 8), min(args.warmup, 2)
        if args.configs == "all":
            args.configs = ",".join(QUICK)
    names = list(CONFIGS) if args.configs == "all" else [c for c in args.configs.split(",") if c]
    bad = [c for c in names if c not in CONFIGS]
    if bad:
        p.error(f"--configs: unknown {bad}; known: {', '.join(CONFIGS)}")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> None:
    """Prepare the data once, run every configuration in its own process, print the table."""
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    features = prepare_features(args.glue_dir, args.model if args.model != "bert-base-random" else
                                str(SHARED / "models/all-MiniLM-L6-v2"), args.work, args.tasks, args.rows, args.max_seq_len)
    if args.one:
        print("RESULT " + json.dumps(measure(CONFIGS[args.one], args, features)))
        return
    if args.memory:
        # The default configuration, or those --configs names.
        args.names = ["default"] if args.configs == "all" else args.names
        args.updates, args.warmup, args.repeats = args.memory, 0, 1
    import torch

    # The peaks are measured once, here, before any configuration runs (not inside a loaded child).
    device = torch.device(args.device)
    from mt_dnn.options import resolve_precision

    # Only the precisions the configurations run in (a float16 product is slow where the CPU has no float16 unit).
    precisions = sorted({resolve_precision(CONFIGS[name].precision, device.type) for name in args.names})
    peaks = {precision: device_peak(device, precision) for precision in precisions}
    results = []
    for repeat in range(args.repeats):
        for name in args.names:
            command = [sys.executable, __file__, "--one", name, "--glue_dir", str(args.glue_dir), "--model", args.model,
                       "--tasks", ",".join(args.tasks), "--rows", str(args.rows), "--updates", str(args.updates),
                       "--warmup", str(args.warmup), "--max_seq_len", str(args.max_seq_len), "--device", args.device,
                       "--work", str(args.work), "--memory_every", "100" if args.memory else "0"]
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not found:
                print(f"{name}: failed (exit {done.returncode})\n{done.stderr[-1500:]}", file=sys.stderr)
                continue
            results.append(json.loads(found[-1][len("RESULT "):]))
            r = results[-1]
            print(f"[{repeat + 1}/{args.repeats}] {name}: {r['real_tokens_per_s']:.0f} real tokens/s, "
                  f"{r['examples_per_s']:.1f} examples/s", flush=True)
    if args.memory:
        for result in results:
            for update, now, peak, *cpu in result["memory"]:
                # On a CPU: what malloc has handed out (tensors, oneDNN's primitives) and the file-backed pages (code).
                detail = (f" ({cpu[1]:.0f} MB of it file-backed), {cpu[0]:.0f} MB in use (malloc; {cpu[2]:.0f} MB at the end "
                          "of a forward, the most so far)" if cpu else "")
                print(f"{result['config']} update {update}: {now:.0f} MB now{detail}, {peak:.0f} MB peak so far")
        return
    title = (f"{Path(args.model).name}, {'+'.join(args.tasks)} ({args.rows} rows each), {args.updates} updates, "
             f"{args.device}, {torch.get_num_threads()} threads")
    print(f"\n{title}; peak FLOP/s measured: " + ", ".join(f"{k} {v / 1e9:.0f} G" for k, v in peaks.items()))
    print(table(results, peaks))
    if args.json:
        args.json.write_text(json.dumps({"title": title, "peaks": peaks, "results": results}, indent=1), encoding="utf-8")
    if args.plot:
        plot(results, args.plot, title)


if __name__ == "__main__":
    main()
