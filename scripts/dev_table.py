"""Print the dev metrics of a training run as a table, from its score files.

    python scripts/dev_table.py --output_dir checkpoint [--datasets rte,mrpc,stsb] [--epoch 2]

Without --epoch it shows the last epoch that has a dev score file of every dataset, and says
which epoch it shows; without --datasets, every dataset with dev score files in the folder.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.score_files import read_score_file, score_file_name

_DEV_SCORE_FILE = re.compile(r"(.+)_dev_scores_epoch_(\d+)\.json")


def dev_epochs(output_dir: Path) -> dict[str, set[int]]:
    """The epochs that have a ``<dataset>_dev_scores_epoch_<e>.json`` file, per dataset."""
    found: dict[str, set[int]] = {}
    for path in output_dir.glob("*_dev_scores_epoch_*.json"):
        match = _DEV_SCORE_FILE.fullmatch(path.name)
        if match:
            found.setdefault(match[1], set()).add(int(match[2]))
    return found


def pick_epoch(found: dict[str, set[int]], datasets: list[str], output_dir: Path) -> int:
    """The last epoch every one of ``datasets`` has a dev score file for."""
    common = set.intersection(*(found.get(dataset, set()) for dataset in datasets))
    if not common:
        raise MTDNNInputError(f"no epoch has dev score files of all of {', '.join(datasets)}", output_dir)
    return max(common)


def main(argv: list[str] | None = None) -> list[tuple[str, str, float]]:
    """Print ``dataset | metric | value`` rows for one epoch's dev score files and return them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="the --output_dir of a train.py run (required)")
    parser.add_argument(
        "--datasets", default=None,
        help="comma-separated dataset names (default: every dataset with dev score files in --output_dir)",
    )
    parser.add_argument(
        "--epoch", type=int, default=None,
        help="the epoch to show (default: the last one with a dev score file of every dataset)",
    )
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    if not output_dir.is_dir():
        raise MTDNNInputError("--output_dir: folder not found", output_dir)
    found = dev_epochs(output_dir)
    datasets = [name for name in (args.datasets or "").split(",") if name] or sorted(found)
    if not datasets:
        raise MTDNNInputError("no dev score files (<dataset>_dev_scores_epoch_<e>.json) in this folder", output_dir)
    epoch = args.epoch if args.epoch is not None else pick_epoch(found, datasets, output_dir)
    rows = []
    for dataset in datasets:
        path = score_file_name(output_dir, dataset, "dev", epoch=epoch)
        if not path.is_file():
            raise MTDNNInputError("score file not found (did the run finish this epoch?)", path)
        for metric, value in read_score_file(path).metrics.items():
            if isinstance(value, (int, float)):
                rows.append((dataset, metric, float(value)))
    last = max(max(epochs) for epochs in found.values())
    print(f"dev metrics of epoch {epoch}" + (" (the last)" if epoch == last else f" (the last is {last})"))
    print(f"{'dataset':<10} {'metric':<10} {'dev':>8}")
    for dataset, metric, value in rows:
        print(f"{dataset:<10} {metric:<10} {value:>8.2f}")
    return rows


if __name__ == "__main__":
    run_cli(main)
