"""Print the dev metrics of a training run as a table, from its score files.

    python scripts/dev_table.py --output_dir checkpoint --datasets rte,mrpc,stsb [--epoch 2]
"""
from __future__ import annotations

import argparse

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.score_files import read_score_file, score_file_name


def main(argv: list[str] | None = None) -> list[tuple[str, str, float]]:
    """Print ``dataset | metric | value`` rows for one epoch's dev score files and return them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--datasets", required=True, help="comma-separated dataset names")
    parser.add_argument("--epoch", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    for dataset in args.datasets.split(","):
        path = score_file_name(args.output_dir, dataset, "dev", epoch=args.epoch)
        if not path.is_file():
            raise MTDNNInputError("score file not found (did the run finish this epoch?)", path)
        for metric, value in read_score_file(path).metrics.items():
            if isinstance(value, (int, float)):
                rows.append((dataset, metric, float(value)))
    print(f"{'dataset':<10} {'metric':<10} {'dev':>8}")
    for dataset, metric, value in rows:
        print(f"{dataset:<10} {metric:<10} {value:>8.2f}")
    return rows


if __name__ == "__main__":
    run_cli(main)
