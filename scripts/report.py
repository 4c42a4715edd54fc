"""Results of scripts/reproduce_glue.py as Markdown with plots; partial results render, missing runs are listed.

    python scripts/report.py --work_dir data/reproduce_glue [--out docs/results.md] [--img_dir docs/img]

Reads <work_dir>/plan.json (written by the driver), each finished run's last-epoch dev score files
(<run>/DONE marks a finished run), <run>/timing.json and the dev files of the data folder, and writes:
a table of task × setting (mean ± sample standard deviation over seeds, n shown; "—" where no seed
has finished), the majority-class floor of each dev set, the refinement's own dev scores, the
missing runs, the row caps, the wall-clock per stage, and plots (matplotlib, Agg): per-task bars
with error bars for settings a-d and the dev metric per epoch per task.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from any folder: the repository's packages, not an installed copy

from data_utils.errors import MTDNNInputError, run_cli  # noqa: E402
from data_utils.file_io import atomic_write  # noqa: E402

SETTINGS = {
    "a": "(a) encoder → fine-tune",
    "b": "(b) MTL proportional → fine-tune",
    "c": "(c) (b) + SMART",
    "d": "(d) MTL temperature → fine-tune",
}
TASK_NAMES = {"cola": "CoLA", "sst": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "rte": "RTE", "wnli": "WNLI",
              "qnli": "QNLI", "qqp": "QQP", "mnli_matched": "MNLI-m", "mnli_mismatched": "MNLI-mm"}
README_START = "<!-- reproduce_glue results: start -->"
README_END = "<!-- reproduce_glue results: end -->"
METRIC_NAMES = {"ACC": "acc", "F1": "F1", "MCC": "MCC", "Pearson": "Pearson", "Spearman": "Spearman"}


# ----------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation of the finished seeds of one cell."""

    values: tuple[float, ...]
    expected: int

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n >= 2 else None

    def cell(self) -> str:
        """``62.00 ± 2.00 (n=3)``; a partial cell says ``n=2 of 3``; an empty one ``— (0 of 3)``."""
        if not self.values:
            return f"— (0 of {self.expected})"
        count = f"n={self.n}" if self.n == self.expected else f"n={self.n} of {self.expected}"
        spread = f" ± {self.std:.2f}" if self.std is not None else ""
        return f"{self.mean:.2f}{spread} ({count})"


def read_json(path: Path) -> Any:
    """A JSON file; a malformed one is one line naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MTDNNInputError(f"not valid JSON ({err})", path) from None


class Results:
    """The runs of a work folder: plan, finished runs, their dev metrics per epoch and timings."""

    def __init__(self, work_dir: Path):
        plan_path = work_dir / "plan.json"
        if not plan_path.is_file():
            raise MTDNNInputError("no plan.json: run scripts/reproduce_glue.py (without --dry_run) first", plan_path)
        self.work_dir = work_dir
        self.plan = read_json(plan_path)
        self.runs = {run["key"]: run for run in self.plan["runs"]}

    def folder(self, key: str) -> Path:
        return self.work_dir / "runs" / key

    def done(self, key: str) -> bool:
        return (self.folder(key) / "DONE").is_file()

    def metrics(self, key: str, dataset: str, epoch: int) -> dict[str, float] | None:
        """The dev metrics of one epoch of a finished run (None: not finished, or no such file)."""
        path = self.folder(key) / f"{dataset}_dev_scores_epoch_{epoch}.json"
        if not self.done(key) or not path.is_file():
            return None
        metrics = read_json(path).get("metrics")
        if not isinstance(metrics, dict):
            raise MTDNNInputError("score file without a 'metrics' object", path)
        return {name: float(v) for name, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}

    def finetune_runs(self, setting: str, task: str) -> list[dict[str, Any]]:
        return [r for r in self.plan["runs"] if r["stage"] == "finetune" and r["setting"] == setting and r["task"] == task]

    def summary(self, setting: str, task: str, metric: str, epoch: int | None = None) -> Summary | None:
        """The cell of a fine-tuning setting; None when the plan has no such run."""
        runs = self.finetune_runs(setting, task)
        if not runs:
            return None
        values = []
        for run in runs:
            found = self.metrics(run["key"], task, run["epochs"] - 1 if epoch is None else epoch)
            if found is not None and metric in found:
                values.append(found[metric])
        return Summary(tuple(values), len(runs))

    def timing(self, key: str) -> dict[str, Any] | None:
        path = self.folder(key) / "timing.json"
        return read_json(path) if path.is_file() else None


def _task_def(plan: dict[str, Any], task: str) -> dict[str, Any]:
    """A task's entry in the fine-tuning task definitions (``mnli_matched`` → ``mnli``)."""
    path = Path(plan["finetune_task_def"])
    path = path if path.is_absolute() else REPO / path
    defs = yaml.safe_load(path.read_text(encoding="utf-8"))
    name = "mnli" if task.startswith("mnli") else task
    if not isinstance(defs, dict) or name not in defs:
        raise MTDNNInputError(f"task {name!r} is not defined", path)
    return defs[name]


def task_metrics(plan: dict[str, Any], task: str) -> list[str]:
    """The task's metric_meta in the fine-tuning task definitions (the paper's metrics)."""
    return [str(metric) for metric in _task_def(plan, task)["metric_meta"]]


def majority_floor(plan: dict[str, Any], task: str, dev_file: Path) -> dict[str, float]:
    """What always answering the dev set's most frequent label scores: accuracy, F1 (positive class '1'), MCC 0.

    Empty for a regression task (a constant prediction has no correlation) or a missing dev file.
    """
    if not dev_file.is_file() or _task_def(plan, task)["task_type"] == "Regression":
        return {}
    labels = [line.split("\t")[1] for line in dev_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        return {}
    counts = Counter(labels)
    label, count = counts.most_common(1)[0]
    share = count / len(labels)
    floor = {"ACC": 100 * share, "MCC": 0.0}
    if set(counts) <= {"0", "1"}:
        floor["F1"] = 100 * 2 * share / (1 + share) if label == "1" else 0.0
    metrics = task_metrics(plan, task)
    return {metric: value for metric, value in floor.items() if metric in metrics}


# ----------------------------------------------------------------------------- the page
def _fmt_rows(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(row) + " |" for row in rows]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return _fmt_rows([header, ["---"] * len(header)] + rows)


def finetune_tasks(results: Results) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in results.plan["runs"] if r["stage"] == "finetune"))


def finetune_table(results: Results) -> list[str]:
    data_dir = results.work_dir / results.plan["data_dir"]
    header = ["task", "metric", "majority class"] + list(SETTINGS.values())
    rows = []
    for task in finetune_tasks(results):
        metrics = task_metrics(results.plan, task)
        floors = majority_floor(results.plan, task, data_dir / f"{task}_dev.tsv")
        for metric in metrics:
            cells = [results.summary(setting, task, metric) for setting in SETTINGS]
            rows.append([TASK_NAMES.get(task, task), METRIC_NAMES.get(metric, metric),
                         f"{floors[metric]:.1f}" if metric in floors else "—"]
                        + [cell.cell() if cell else "not planned" for cell in cells])
    return _table(header, rows)


def selection_table(results: Results) -> list[str]:
    """The hyper-parameter selection: (a) with finetune's values against each alternative, mean over the selection seeds."""
    plan, selection = results.plan, results.plan["selection"]
    tasks = [t for t in selection["tasks"] if results.finetune_runs("a", t)]
    if not selection["alternatives"] or not tasks:
        return ["No alternatives: the fine-tuning values were not compared."]
    seeds = [int(seed) for seed in selection["seeds"]]
    columns = [(task, metric) for task in tasks for metric in task_metrics(plan, task)]

    def row(label: str, runs: list[dict[str, Any]]) -> list[str]:
        cells = []
        for task, metric in columns:
            found = [results.metrics(r["key"], task, r["epochs"] - 1) for r in runs if r["task"] == task]
            cells.append(Summary(tuple(m[metric] for m in found if m and metric in m), len(found)).cell())
        return [label] + cells

    fin = plan["stages"]["finetune"]
    base = [r for t in tasks for r in results.finetune_runs("a", t) if r["seed"] in seeds]
    chosen = ", ".join(f"{name} {fin[name]}" for name in selection["alternatives"])
    rows = [row(f"{chosen} (finetune's values: the (a) runs)", base)]
    for name, values in selection["alternatives"].items():
        for value in values:
            runs = [r for r in results.plan["runs"] if r["setting"] == "select" and r["override"] == [name, value]]
            rows.append(row(f"{name} {value}", runs))
    header = ["fine-tuning value"] + [f"{TASK_NAMES.get(t, t)} {METRIC_NAMES.get(m, m)}" for t, m in columns]
    return [f"Setting (a) on seeds {', '.join(map(str, seeds))}, dev, last epoch; one value changed per row.", ""] + \
        _table(header, rows)


def refinement_table(results: Results) -> list[str]:
    refinements = [r for r in results.plan["runs"] if r["stage"] == "refine"]
    if not refinements:
        return []
    header = ["dev set", "metric"] + [r["setting"] for r in refinements]
    rows = []
    for dataset in refinements[0]["test_datasets"]:
        for metric in task_metrics(results.plan, dataset):
            values = [results.metrics(r["key"], dataset, r["epochs"] - 1) for r in refinements]
            rows.append([TASK_NAMES.get(dataset, dataset), METRIC_NAMES.get(metric, metric)]
                        + [f"{v[metric]:.2f}" if v and metric in v else "—" for v in values])
    return _table(header, rows)


def capped_note(results: Results) -> str:
    """A sentence naming the fine-tuning tasks trained on fewer rows than they have."""
    rows = results.plan["rows"]
    capped = [f"{TASK_NAMES.get(t, t)} {rows[t]['rows']:,} of {rows[t]['full']:,}" for t in finetune_tasks(results)
              if t in rows and rows[t]["rows"] < rows[t]["full"]]
    return f" Training rows capped (see Training data): {', '.join(capped)}." if capped else ""


def caps_lines(plan: dict[str, Any]) -> list[str]:
    rows = plan["rows"]
    capped = [task for task, r in rows.items() if r["rows"] < r["full"]]
    if plan["smoke"]:
        head = f"Smoke run: {plan['row_cap']} training and {plan['dev_cap']} dev rows per task — not a result."
    elif plan["row_cap"]:
        head = (f"On {plan['device'].upper()}, training sets above {plan['row_cap']:,} rows were sampled down to "
                f"{plan['row_cap']:,} (seeded, original order kept); dev sets are complete.")
    else:
        head = "No caps: every training set complete (GPU)."
    table = _table(["training set", "rows used", "rows available"],
                   [[TASK_NAMES.get(t, t) + (" (capped)" if t in capped else ""), f"{r['rows']:,}", f"{r['full']:,}"]
                    for t, r in rows.items()])
    return [head, ""] + table


def wallclock_table(results: Results) -> list[str]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in results.plan["runs"]:
        label = (f"refinement ({run['setting']})" if run["stage"] == "refine" else
                 f"fine-tuning {SETTINGS.get(run['setting'], 'selection on (a)')}")
        groups.setdefault(label, []).append(run)
    rows = []
    for label, runs in groups.items():
        done = [r["key"] for r in runs if results.done(r["key"])]
        timings = [t for t in map(results.timing, done) if t and t.get("wall_s")]
        total = sum(t["wall_s"] for t in timings)
        rates = [t["examples"] / t["wall_s"] for t in timings]
        threads = sorted({t["threads"] for t in timings if t.get("threads")})
        rows.append([label, f"{len(done)} of {len(runs)}", _duration(total) if timings else "—",
                     _duration(total / len(timings)) if timings else "—",
                     f"{statistics.median(rates):.1f}" if rates else "—", ", ".join(map(str, threads)) or "—"])
    return _table(["stage", "runs done", "wall-clock", "per run", "examples/s (median)", "threads per run"], rows)


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def missing_lines(results: Results) -> list[str]:
    missing = [r["key"] for r in results.plan["runs"] if not results.done(r["key"])]
    if not missing:
        return ["None: every planned run has finished."]
    lines = [f"{len(missing)} of {len(results.plan['runs'])} planned runs have not finished:", ""]
    for key in missing:
        state = "stopped midway (resumes from last.pt)" if (results.folder(key) / "last.pt").is_file() else "not run"
        lines.append(f"- `{key}` — {state}")
    return lines


def settings_lines(plan: dict[str, Any]) -> list[str]:
    ref, fin = plan["stages"]["refinement"], plan["stages"]["finetune"]
    tasks = ", ".join(TASK_NAMES.get(t, t) + (" (dev set as training data, not reported)" if t in ref["dev_as_train"]
                                              else "") for t in plan["refine_tasks"])
    device = plan["device"].upper() + (" — GPU found: no caps, settings c and d on every task" if plan["device"] == "cuda"
                                       else " (threads of each run: the wall-clock table)")
    seeds = sorted({r["seed"] for r in plan["runs"] if r["stage"] == "finetune"})
    return [
        f"- Encoder `{plan['model']}`, max_seq_len {plan['max_seq_len']}, device {device}.",
        f"- Refinement (stage 1): {tasks}; `{ref['task_def']}` (SAN on the pair classification tasks); "
        f"{ref['epochs']} epoch(s), batch {ref['batch_size']}, lr {ref['learning_rate']}, {ref['optimizer']}, "
        f"seed {ref['seed']}; proportional sampling, and temperature sampling with T = {ref['sampling_temperature']}.",
        f"- Fine-tuning (stage 2): `{fin['task_def']}`, {fin['epochs']} epoch(s), batch {fin['batch_size']}, "
        f"lr {fin['learning_rate']}, {fin['optimizer']}, seeds {', '.join(map(str, seeds))}; setting c adds SMART "
        f"({', '.join(f'{k} {v}' for k, v in (fin['adv_args'] or {}).items())}).",
        f"- Hyper-parameter selection (below): {plan['selection']['outcome']}",
    ]


def build_page(results: Results, plots: list[str], plot_note: str | None) -> str:
    """The whole Markdown page."""
    plan = results.plan
    done = sum(results.done(r["key"]) for r in plan["runs"])
    lines = [
        "# Reproducing MT-DNN's two-stage GLUE experiment with MiniLM",
        "",
        f"Written by `scripts/report.py` from {done} of {len(plan['runs'])} planned runs of "
        "`scripts/reproduce_glue.py` (settings: `scripts/reproduce_glue.yml`). Dev sets, last epoch. "
        "Cells: mean ± sample standard deviation over the finished seeds (n); \"—\" where none has finished.",
        "",
        "## Setup",
        "",
        *settings_lines(plan),
        "",
        "## Fine-tuning (stage 2) on the dev sets",
        "",
        *finetune_table(results),
        "",
        "Majority class: the score of always answering the dev set's most frequent label (F1: of the positive "
        "class), computed from the dev files the runs were scored on." + capped_note(results)
        + (" Not planned: on a CPU, settings c and d run on RTE and MRPC only." if plan["device"] == "cpu"
           and any("not planned" in line for line in finetune_table(results)) else ""),
        "",
        "## Hyper-parameter selection on (a)",
        "",
        *selection_table(results),
        "",
        "## Refinement (stage 1) on the dev sets, before fine-tuning",
        "",
        *refinement_table(results),
        "",
        "## Training data",
        "",
        *caps_lines(plan),
        "",
        "## Missing runs",
        "",
        *missing_lines(results),
        "",
        "## Wall-clock",
        "",
        *wallclock_table(results),
        "",
        "Effective examples/s: training examples over the whole wall-clock, evaluation and start-up included.",
        "",
        "## Plots",
        "",
    ]
    lines += [plot_note] if plot_note else [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots
def make_plots(results: Results, img_dir: Path, link_base: Path) -> tuple[list[str], str | None]:
    """Per-task bars (a)-(d) with error bars and per-epoch dev curves; (links, note when matplotlib is missing)."""
    try:
        import matplotlib
    except ImportError:
        return [], "Plots skipped: matplotlib is not installed (`pip install matplotlib`)."
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = []
    for task in finetune_tasks(results):
        metrics = task_metrics(results.plan, task)
        if not any(results.summary(setting, task, metrics[0]).n for setting in SETTINGS
                   if results.finetune_runs(setting, task)):
            continue  # no finished run of this task yet
        links.append(_bars(plt, results, task, metrics, img_dir / f"finetune_{task}.png"))
        links.append(_epochs(plt, results, task, metrics, img_dir / f"dev_per_epoch_{task}.png"))
    if not links:
        return [], "No plots yet: no fine-tuning run has finished."
    return [str(Path(link).relative_to(link_base)) if Path(link).is_relative_to(link_base) else link for link in links], None


def _save(plt: Any, figure: Any, path: Path) -> str:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)
    plt.close(figure)
    return str(path)


def _bars(plt: Any, results: Results, task: str, metrics: list[str], path: Path) -> str:
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    width = 0.8 / len(SETTINGS)
    for index, setting in enumerate(SETTINGS):
        summaries = [results.summary(setting, task, metric) for metric in metrics]
        xs = [m + (index - (len(SETTINGS) - 1) / 2) * width for m in range(len(metrics))]
        means = [s.mean if s and s.mean is not None else 0.0 for s in summaries]
        errors = [s.std if s and s.std is not None else 0.0 for s in summaries]
        axis.bar(xs, means, width, yerr=errors, capsize=3, label=SETTINGS[setting])
        for x, mean, error, summary in zip(xs, means, errors, summaries):
            axis.text(x, mean + error + 0.5, f"n={summary.n}" if summary else "–", ha="center", va="bottom", fontsize=7)
    floors = majority_floor(results.plan, task, results.work_dir / results.plan["data_dir"] / f"{task}_dev.tsv")
    for m, metric in enumerate(metrics):
        if metric in floors:
            axis.hlines(floors[metric], m - 0.45, m + 0.45, colors="black", linestyles="dashed",
                        label="majority class" if m == 0 else None)
    axis.set_xticks(range(len(metrics)), [METRIC_NAMES.get(m, m) for m in metrics])
    axis.set_ylabel("dev, last epoch")
    axis.set_title(f"{TASK_NAMES.get(task, task)}: mean ± std over seeds")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return _save(plt, figure, path)


def _epochs(plt: Any, results: Results, task: str, metrics: list[str], path: Path) -> str:
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for setting in SETTINGS:
            runs = results.finetune_runs(setting, task)
            if not runs:
                continue
            points = [(e, results.summary(setting, task, metric, epoch=e)) for e in range(runs[0]["epochs"])]
            points = [(e + 1, s.mean) for e, s in points if s and s.mean is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=SETTINGS[setting])
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (mean over seeds)")
        axis.set_title(f"{TASK_NAMES.get(task, task)} dev per epoch")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    return _save(plt, figure, path)


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", required=True, help="the driver's work folder (holds plan.json and runs/)")
    p.add_argument("--out", default=str(REPO / "docs" / "results.md"), help="Markdown file (default: %(default)s)")
    p.add_argument("--img_dir", default=None, help="folder of the plots (default: img/ beside --out)")
    p.add_argument("--readme", default=None,
                   help="also put the fine-tuning table and the RTE plot between this file's "
                        f"{README_START} and {README_END} lines (default: none)")
    return p


def embed_in_readme(readme: Path, results: Results, out: Path, plots: list[str]) -> None:
    """Replace the lines between the README's markers with the fine-tuning table and the first plot."""
    text = readme.read_text(encoding="utf-8")
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise MTDNNInputError(f"expected one {README_START} line and one {README_END} line", readme)
    done = sum(results.done(r["key"]) for r in results.plan["runs"])
    link = os.path.relpath(out, readme.parent)
    block = [README_START, "",
             f"Dev sets, last epoch, mean ± std over seeds (from {done} of {len(results.plan['runs'])} planned runs; "
             f"all figures, the selection and the wall-clock: [{link}]({link})):", "", *finetune_table(results), ""]
    if plots:
        image = os.path.relpath(out.parent / plots[0], readme.parent)
        block += [f"![{Path(plots[0]).stem}]({image})", ""]
    head, rest = text.split(README_START)
    tail = rest.split(README_END)[1]
    with atomic_write(readme) as handle:
        handle.write(head + "\n".join(block) + "\n" + README_END + tail)


def main(argv: list[str] | None = None) -> str:
    """Write the results page and its plots; returns the page."""
    args = build_parser().parse_args(argv)
    out = Path(args.out).resolve()
    results = Results(Path(args.work_dir).resolve())
    img_dir = Path(args.img_dir).resolve() if args.img_dir else out.parent / "img"
    plots, note = make_plots(results, img_dir, out.parent)
    page = build_page(results, plots, note)
    with atomic_write(out) as handle:
        handle.write(page)
    if args.readme:
        embed_in_readme(Path(args.readme).resolve(), results, out, plots)
    print(f"wrote {out}" + (f" and {len(plots)} plot(s) in {img_dir}" if plots else "")
          + (f"; table embedded in {args.readme}" if args.readme else ""))
    return page


if __name__ == "__main__":
    run_cli(main)
