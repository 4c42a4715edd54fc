"""The v0.1 one-step entry: raw GLUE → canonical TSV → tokenized JSON lines.

    python prepro.py --root_dir data
    python prepro.py --root_dir data --model roberta-base --max_seq_len 256 --workers 4
    python prepro.py --root_dir data --old_glue --tasks rte,qnnli --model /models/all-MiniLM-L6-v2

Step 1 runs ``experiments/glue/glue_prepro.py`` (writes ``<root_dir>/canonical_data/``);
step 2 runs ``prepro_std.py`` on exactly the canonical files step 1 wrote (writes
``<root_dir>/canonical_data/<model>/``). Each step alone: see those scripts.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import prepro_std
from data_utils.errors import MTDNNInputError, run_cli
from data_utils.log_utils import setup_logging

REPO = Path(__file__).resolve().parent
GLUE_PREPRO = REPO / "experiments" / "glue" / "glue_prepro.py"


def load_glue_prepro() -> ModuleType:
    """Import ``experiments/glue/glue_prepro.py`` by path (``experiments`` is not an installed package)."""
    spec = importlib.util.spec_from_file_location("glue_prepro", GLUE_PREPRO)
    assert spec is not None and spec.loader is not None, GLUE_PREPRO
    module = importlib.util.module_from_spec(spec)
    sys.modules["glue_prepro"] = module  # dataclasses resolve their module while being built
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: glue_prepro's flags plus the tokenizer flags of prepro_std."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", default="data", help="folder holding the GLUE task folders")
    parser.add_argument("--old_glue", action="store_true", help="also build QNLI v1 ranking data (qnnli)")
    parser.add_argument("--tasks", default=None, help="comma-separated GLUE tasks, e.g. rte,mrpc (default: all found)")
    parser.add_argument("--strict", action="store_true", help="raw rows with too few columns are errors")
    parser.add_argument("--seed", type=int, default=13, help="seed of the qnnli candidate shuffle")
    parser.add_argument("--model", default="bert-base-uncased", help="HF model id or local folder of the tokenizer")
    parser.add_argument("--max_seq_len", type=int, default=512, help="truncate token sequences to this length")
    parser.add_argument("--task_def", default=str(REPO / "experiments" / "glue" / "glue_task_def.yml"),
                        help="YAML task definitions (label checks and label maps)")
    parser.add_argument("--workers", type=int, default=1, help="tokenizer processes")
    parser.add_argument("--do_lower_case", action="store_true", help="lowercase texts (tokenizers without their own setting)")
    parser.add_argument("--do_padding", action="store_true", help="pad every list to --max_seq_len")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run glue_prepro, then tokenize the canonical files it wrote."""
    args = parse_args(argv)
    setup_logging()
    glue_argv = ["--root_dir", args.root_dir, "--seed", str(args.seed), "--task_def", args.task_def]
    glue_argv += ["--tasks", args.tasks] if args.tasks else []
    glue_argv += ["--old_glue"] if args.old_glue else []
    glue_argv += ["--strict"] if args.strict else []
    summary = load_glue_prepro().main(glue_argv)
    written = list(summary.rows())
    if not written:
        raise MTDNNInputError("no GLUE task files found; nothing to tokenize", args.root_dir)
    std_argv = [
        "--model", args.model,
        "--root_dir", str(Path(args.root_dir) / "canonical_data"),
        "--task_def", args.task_def,
        "--max_seq_len", str(args.max_seq_len),
        "--workers", str(args.workers),
        "--datasets", ",".join(written),
    ]
    std_argv += ["--do_lower_case"] if args.do_lower_case else []
    std_argv += ["--do_padding"] if args.do_padding else []
    prepro_std.main(std_argv)


if __name__ == "__main__":
    run_cli(main)
