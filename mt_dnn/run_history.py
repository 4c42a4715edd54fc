"""A run's training loss and dev metrics over time: ``<output_dir>/history.json`` and its plot
``<output_dir>/training_curves.png`` (SPEC §6 logging).

``train.py`` feeds it every batch loss, a point at each progress line and each epoch's dev metrics;
the history also travels inside ``last.pt``, so a resumed run (even into another folder) keeps it.
``scripts/plot_run.py`` redraws the plot from ``history.json``::

    history = load_history(Path("checkpoint") / HISTORY_FILE)
    plot_history(history, Path("checkpoint") / PLOT_FILE)
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_utils.errors import MTDNNInputError
from data_utils.file_io import atomic_write, read_text
from data_utils.score_files import read_score_file, score_file_name

logger = logging.getLogger("mt_dnn")

HISTORY_FILE = "history.json"
PLOT_FILE = "training_curves.png"


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics a curve can show: numbers (not confusion matrices or reports)."""
    return {
        name: float(value) for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


@dataclass
class RunHistory:
    """Training-loss points (``{"epoch", "updates", "loss", "lr"}``), one entry per finished epoch
    (``{"epoch", "updates", "train_loss", "dev": {dataset: {metric: value}}}``) and the running loss."""

    points: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    running_loss: float | None = None
    loss_sum: float = 0.0
    loss_count: int = 0

    def start_epoch(self) -> None:
        """A new epoch: its running and mean loss start afresh."""
        self.running_loss, self.loss_sum, self.loss_count = None, 0.0, 0

    def add_loss(self, loss: float) -> None:
        """One batch's loss: the running loss (0.99 decay) and the epoch mean (finite losses only)."""
        self.running_loss = loss if self.running_loss is None else 0.99 * self.running_loss + 0.01 * loss
        if math.isfinite(loss):
            self.loss_sum += loss
            self.loss_count += 1

    def add_point(self, epoch: int, updates: int, learning_rate: float) -> None:
        """The running loss at a progress line."""
        self.points.append(
            {"epoch": epoch, "updates": updates, "loss": _finite_or_none(self.running_loss), "lr": learning_rate}
        )

    def end_epoch(self, epoch: int, updates: int) -> None:
        """Close ``epoch`` with its mean training loss; its dev metrics come with ``add_dev_metrics``."""
        mean = self.loss_sum / self.loss_count if self.loss_count else None
        self.epochs = [entry for entry in self.epochs if entry["epoch"] != epoch]
        self.epochs.append({"epoch": epoch, "updates": updates, "train_loss": _finite_or_none(mean), "dev": {}})

    def add_dev_metrics(self, epoch: int, dataset: str, metrics: dict[str, Any]) -> None:
        """The numeric dev metrics of ``dataset`` after ``epoch``."""
        for entry in self.epochs:
            if entry["epoch"] == epoch:
                entry["dev"][dataset] = _numeric_metrics(metrics)

    def fill_dev_from_score_files(self, output_dir: Path, datasets: list[str]) -> None:
        """Dev metrics of epochs saved before they were evaluated (a resumed run), from their score files."""
        for entry in self.epochs:
            for dataset in datasets:
                path = score_file_name(output_dir, dataset, "dev", epoch=entry["epoch"])
                if dataset not in entry["dev"] and path.is_file():
                    try:
                        entry["dev"][dataset] = _numeric_metrics(read_score_file(path).metrics)
                    except MTDNNInputError as err:
                        logger.warning("history: %s", err)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data, for ``last.pt`` and ``history.json``."""
        return {
            "points": self.points,
            "epochs": self.epochs,
            "running_loss": _finite_or_none(self.running_loss),
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any] | None) -> RunHistory:
        """Inverse of ``state_dict``; an empty history for checkpoints of earlier versions (no history)."""
        state = state or {}
        return cls(
            points=list(state.get("points", [])),
            epochs=list(state.get("epochs", [])),
            running_loss=state.get("running_loss"),
            loss_sum=float(state.get("loss_sum", 0.0)),
            loss_count=int(state.get("loss_count", 0)),
        )

    def write(self, path: Path) -> None:
        """Atomically write the history as ``history.json``."""
        with atomic_write(path) as handle:
            json.dump(self.state_dict(), handle, indent=1)


def load_history(path: Path) -> RunHistory:
    """Read a ``history.json``; a clear error when it is missing or not one."""
    if not path.is_file():
        raise MTDNNInputError("history.json not found (train.py writes it after each epoch)", path)
    try:
        state = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise MTDNNInputError(f"not valid JSON ({err.msg}, line {err.lineno})", path) from None
    if not isinstance(state, dict) or not all(isinstance(state.get(key), list) for key in ("epochs", "points")):
        raise MTDNNInputError("not a history.json of train.py (expected 'points' and 'epochs' lists)", path)
    return RunHistory.from_state_dict(state)


def plot_history(history: RunHistory, path: Path) -> None:
    """Draw the training loss (by update) and each dev metric (by epoch) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss_axes, dev_axes = figure.subplots(1, 2)
    points = [(p["updates"], p["loss"]) for p in history.points if p.get("loss") is not None]
    if points:
        loss_axes.plot(*zip(*points), color="tab:blue", linewidth=1, label="running loss")
    means = [(e["updates"], e["train_loss"]) for e in history.epochs if e.get("train_loss") is not None]
    if means:
        loss_axes.plot(*zip(*means), "o", color="tab:red", label="epoch mean")
    loss_axes.set(title="training loss", xlabel="update", ylabel="loss")
    curves: dict[str, list[tuple[int, float]]] = {}
    for entry in history.epochs:
        for dataset, metrics in entry.get("dev", {}).items():
            for metric, value in metrics.items():
                curves.setdefault(f"{dataset} {metric}", []).append((entry["epoch"], value))
    for label, values in sorted(curves.items()):
        dev_axes.plot(*zip(*sorted(values)), marker="o", label=label)
    dev_axes.set(title="dev metrics", xlabel="epoch", ylabel="score")
    if history.epochs:  # half an epoch of margin, so even one epoch gets integer ticks
        epochs = [entry["epoch"] for entry in history.epochs]
        dev_axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    for axes in (loss_axes, dev_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def write_history_and_plot(history: RunHistory, output_dir: Path) -> None:
    """``history.json`` and ``training_curves.png`` in ``output_dir``; a failure is a warning, never a stop."""
    try:
        history.write(output_dir / HISTORY_FILE)
    except OSError as err:
        logger.warning("could not write %s (%s); training goes on", output_dir / HISTORY_FILE, err)
        return
    try:
        plot_history(history, output_dir / PLOT_FILE)
    except Exception as err:  # noqa: BLE001 - a plot must never stop training: any failure is only reported
        logger.warning("could not draw %s (%s: %s); training goes on", output_dir / PLOT_FILE, type(err).__name__, err)
