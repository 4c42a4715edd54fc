"""Redraw the training curves of a run (training loss by update, dev metrics by epoch) from its history.json.

    python scripts/plot_run.py --output_dir checkpoint [--out checkpoint/training_curves.png]

train.py draws the same plot after every evaluation; this redraws it, e.g. for a run whose plot
failed or was deleted, or into another file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from data_utils.errors import run_cli
from mt_dnn.run_history import HISTORY_FILE, PLOT_FILE, load_history, plot_history


def main(argv: list[str] | None = None) -> Path:
    """Draw ``<output_dir>/history.json`` into a PNG; returns its path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="the --output_dir of a train.py run (required)")
    parser.add_argument("--out", default=None, help=f"PNG file to write (default: <output_dir>/{PLOT_FILE})")
    args = parser.parse_args(argv)
    history = load_history(Path(args.output_dir) / HISTORY_FILE)
    out = Path(args.out) if args.out else Path(args.output_dir) / PLOT_FILE
    plot_history(history, out)
    print(f"wrote {out} ({len(history.epochs)} epoch(s), {len(history.points)} loss point(s))")
    return out


if __name__ == "__main__":
    run_cli(main)
