"""Throughput of prepro_std on SST-2 train against a naive one-example-at-a-time loop.

    python bench/prepro_bench.py                  # all 67,349 rows of SST-2 train
    python bench/prepro_bench.py --rows 5000      # a prefix

Builds the canonical ``sst_train.tsv`` from GLUE ``SST-2/train.tsv`` in a temp folder (uid =
running count, label = last column, sentence = column 0, as glue_prepro writes it), then times
each path end to end, reading the TSV and writing JSON lines: prepro_std with each --workers
value (the pool's start included), and the naive path (``tok(text)`` per example, one
``json.dumps`` per line). All outputs must be byte-identical; the run fails otherwise.
With --repeats R the paths take turns R times (so that a change in the machine's load hits
them alike) and each keeps its fastest wall-clock; the CPU seconds beside it (this process
and its worker processes, Rust threads included) tell a busy machine from a slow path.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # data_utils from this checkout even when the package is not installed

from transformers import AutoTokenizer  # noqa: E402

from data_utils.features import EncodeOptions, FeatureEncoder, FeatureWriter  # noqa: E402
from data_utils.task_def import load_task_defs  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GLUE_DIR = SHARED / "data" / "glue"
MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
TASK_DEF = ROOT / "experiments" / "glue" / "glue_task_def.yml"


def build_canonical(glue_dir: Path, out_path: Path, rows: int | None) -> int:
    """Write SST-2 train as a canonical PremiseOnly TSV; returns the number of rows."""
    lines = (glue_dir / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    if rows is not None:
        lines = lines[:rows]
    with open(out_path, "w", encoding="utf-8", newline="") as handle:
        for uid, line in enumerate(lines):
            fields = line.strip().split("\t")
            handle.write(f"{uid}\t{fields[-1]}\t{fields[0]}\n")
    return len(lines)


def naive(tokenizer, in_path: Path, out_path: Path, max_seq_len: int) -> None:
    """The reference loop: one example at a time through the tokenizer, one ``json.dumps`` a line."""
    with open(in_path, encoding="utf-8") as source, open(out_path, "w", encoding="utf-8") as sink:
        for line in source:
            uid, label, text = line.strip().split("\t")
            encoded = tokenizer(text, truncation="longest_first", max_length=max_seq_len)
            feature = {
                "uid": uid,
                "label": int(label),
                "token_id": encoded["input_ids"],
                "type_id": encoded["token_type_ids"],
                "attention_mask": encoded["attention_mask"],
            }
            sink.write(json.dumps(feature) + "\n")


def fast(encoder, task_def, in_path: Path, out_path: Path, workers: int) -> None:
    """prepro_std's path: whole file read, batched tokenizer, chunks over ``workers`` processes."""
    with FeatureWriter(encoder, workers) as writer:
        writer.write(in_path, out_path, task_def)


def cpu_seconds() -> float:
    """CPU time so far of this process and of its finished child processes (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(run) -> tuple[float, float]:
    """``(wall-clock seconds, CPU seconds)`` of one ``run()``."""
    cpu, started = cpu_seconds(), time.perf_counter()
    run()
    return time.perf_counter() - started, cpu_seconds() - cpu


def main(argv: list[str] | None = None) -> None:
    """Time the naive loop and prepro_std (each --workers value) and print rows/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows of SST-2 train")
    parser.add_argument("--workers", default="1,2", help="comma-separated --workers values to time")
    parser.add_argument("--repeats", type=int, default=1, help="time each path this many times in turn, keep the best")
    parser.add_argument("--max_seq_len", type=int, default=512)
    parser.add_argument("--glue_dir", type=Path, default=GLUE_DIR)
    parser.add_argument("--model", default=str(MODEL))
    args = parser.parse_args(argv)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    task_def = load_task_defs(TASK_DEF)["sst"]
    encoder = FeatureEncoder(tokenizer, EncodeOptions(max_seq_len=args.max_seq_len))
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        canonical = folder / "sst_train.tsv"
        n_rows = build_canonical(args.glue_dir, canonical, args.rows)
        outputs = {"naive": folder / "naive.json"}
        runs = {"naive": lambda: naive(tokenizer, canonical, outputs["naive"], args.max_seq_len)}
        for count in workers:
            name = f"prepro_std --workers {count}"
            outputs[name] = folder / f"workers{count}.json"
            runs[name] = lambda c=count, n=name: fast(encoder, task_def, canonical, outputs[n], c)
        timings = {name: (float("inf"), 0.0) for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                timings[name] = min(timings[name], timed(run))
        reference = outputs["naive"].read_bytes()
        mismatched = [name for name, path in outputs.items() if path.read_bytes() != reference]
        if mismatched:
            raise SystemExit(f"outputs differ from the naive loop's: {mismatched}")

    print(f"SST-2 train, {n_rows} rows, max_seq_len {args.max_seq_len}, best of {args.repeats}; outputs byte-identical")
    for name, (seconds, cpu) in timings.items():
        ratio = timings["naive"][0] / seconds
        print(f"{name:24s} {seconds:8.2f} s  {n_rows / seconds:10,.0f} rows/s  {ratio:5.2f}x naive  (CPU {cpu:6.2f} s)")


if __name__ == "__main__":
    main()
