"""Reproduce the paper's two-stage GLUE experiment with MiniLM: MTL refinement, then fine-tuning per task.

    bash scripts/reproduce_glue.sh                                          # the whole plan (resumable)
    python scripts/reproduce_glue.py --dry_run                              # only the plan and its estimated time
    python scripts/reproduce_glue.py --only a,b --tasks rte --seeds 2018    # one piece of it
    python scripts/reproduce_glue.py --smoke --work_dir /tmp/smoke          # a tiny end-to-end pass (CI)

Stage 1, refinement: one multi-task run on every GLUE task present (SAN heads on the pair tasks;
QNLI's dev set as an extra training task when QNLI has no training set), once with proportional
sampling (setting 'proportional') and once with temperature sampling ('temperature').
Selection: the fine-tuning values are chosen on (a): each of selection.alternatives in the YAML runs as
(a) with that one value changed (setting 'select', on the selection's tasks and seeds); the report
compares them with (a), and the chosen values stay in finetune: for (a)-(d).
Stage 2, fine-tuning per task and seed: (a) from the plain encoder, (b) from the proportional
refinement, (c) as (b) with SMART (--adv_train), (d) from the temperature refinement; a and b on
RTE, MRPC and STS-B, c and d on RTE and MRPC on a CPU (on all three with a GPU).
On a CPU, training sets above refinement.cpu_row_cap rows are sampled down to it; with a GPU
nothing is capped. Hyper-parameters: scripts/reproduce_glue.yml.

Raw GLUE → canonical TSV (glue_prepro.py) → capped copies → features (prepro_std.py) in the work
folder, each step skipped when done. Every run writes <run>/DONE once its last epoch's dev score
files exist and is skipped afterwards, so the plan can be run in pieces, stopped (Ctrl-C) and
started again; a run stopped midway continues from <run>/last.pt (train.py --resume). Each run
records <run>/timing.json; later estimates use the examples/s measured there. The end writes the
report (scripts/report.py): docs/results.md, or <work_dir>/results.md with --smoke.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from any folder: the repository's packages, not an installed copy

from data_utils.errors import MTDNNInputError, run_cli  # noqa: E402
from data_utils.file_io import atomic_write  # noqa: E402

DEFAULT_CONFIG = Path(__file__).with_name("reproduce_glue.yml")
REFINE_SETTINGS = ("proportional", "temperature")
FINETUNE_SETTINGS = ("a", "b", "c", "d")
SELECT_SETTING = "select"  # (a) with one fine-tuning value changed: the hyper-parameter selection
SELECTABLE = ("epochs", "batch_size", "learning_rate", "optimizer")  # fine-tuning values the selection may vary
SOURCE_REFINEMENT = {"b": "proportional", "c": "proportional", "d": "temperature"}
GLUE_FOLDERS = {
    "cola": "CoLA", "sst": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "rte": "RTE",
    "wnli": "WNLI", "mnli": "MNLI", "qqp": "QQP", "qnli": "QNLI",
}
HEADERLESS = {"cola"}  # raw train.tsv files without a header row (for the row count of the estimate)
PATH_FLAGS = ("--data_dir", "--output_dir", "--init_checkpoint", "--tokenizer", "--task_def", "--model_ckpt")
LOG_PER_UPDATES = 100


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setup:
    """The configuration as this invocation applies it: device, caps, tasks, folders."""

    config: dict[str, Any]
    config_path: Path
    work_dir: Path
    device: str  # "cpu" or "cuda"
    smoke: bool
    threads: int

    def stage(self, name: str, key: str) -> Any:
        """``refinement``/``finetune`` value ``key``; --smoke's own value wins where it has one."""
        if self.smoke and key in ("epochs", "batch_size"):
            return self.config["smoke"][key]
        return self.config[name][key]

    @property
    def max_seq_len(self) -> int:
        return int(self.config["smoke"]["max_seq_len"] if self.smoke else self.config["max_seq_len"])

    @property
    def row_cap(self) -> int | None:
        """Training rows kept per task: the smoke slice, the CPU cap, or None (all, with a GPU)."""
        if self.smoke:
            return int(self.config["smoke"]["rows"])
        return int(self.config["refinement"]["cpu_row_cap"]) if self.device == "cpu" else None

    @property
    def dev_cap(self) -> int | None:
        return int(self.config["smoke"]["rows"]) if self.smoke else None

    @property
    def variant(self) -> str:
        """Name of the data folder: what the training and dev files were cut to."""
        if self.smoke:
            return f"smoke{self.row_cap}"
        return f"cap{self.row_cap}" if self.row_cap else "full"

    def path(self, key: str) -> Path:
        """A path of the YAML, relative to the repository root."""
        value = Path(str(self.config[key]))
        return value if value.is_absolute() else REPO / value

    def model_arg(self) -> str:
        """The encoder as train.py and prepro_std.py get it (an absolute folder, or a hub id)."""
        folder = self.path("model")
        return str(folder) if folder.is_dir() else str(self.config["model"])

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data" / self.variant

    @property
    def features_dir(self) -> Path:
        folder = self.path("model")
        return self.data_dir / (folder.name if folder.is_dir() else str(self.config["model"]))

    def refine_candidates(self) -> list[str]:
        return list(self.config["smoke"]["tasks"] if self.smoke else self.config["refinement"]["tasks"])

    def finetune_tasks(self, setting: str) -> list[str]:
        if self.smoke:
            return list(self.config["smoke"]["tasks"])
        if setting in ("c", "d") and self.device == "cpu":
            return list(self.config["finetune"]["cpu_tasks_cd"])
        return list(self.config["finetune"]["tasks"])

    def seeds(self) -> list[int]:
        return [int(seed) for seed in (self.config["smoke"]["seeds"] if self.smoke else self.config["finetune"]["seeds"])]

    def selection_points(self) -> list[tuple[str, Any, int, str]]:
        """(key, value, seed, task) of every selection run: (a) with one fine-tuning value changed; none in --smoke."""
        sel = self.config["selection"]
        if self.smoke:
            return []
        return [(name, value, int(seed), task) for name, values in (sel["alternatives"] or {}).items()
                for value in values for seed in sel["seeds"] for task in sel["tasks"]
                if task in self.finetune_tasks("a")]


REQUIRED = {
    "": ("model", "glue_dir", "work_dir", "max_seq_len", "sample_seed", "batch_size_eval", "keep_checkpoints",
         "refinement", "finetune", "selection", "speed", "smoke"),
    "selection": ("alternatives", "tasks", "seeds", "outcome"),
    "refinement": ("task_def", "tasks", "dev_as_train", "cpu_row_cap", "epochs", "batch_size", "learning_rate",
                   "optimizer", "seed", "sampling_temperature", "extra_args"),
    "finetune": ("task_def", "tasks", "cpu_tasks_cd", "seeds", "epochs", "batch_size", "learning_rate", "optimizer",
                 "extra_args", "adv_args"),
    "speed": ("cpu", "cuda", "adv_slowdown"),
    "smoke": ("rows", "tasks", "seeds", "epochs", "max_seq_len", "batch_size"),
}


def load_config(path: Path) -> dict[str, Any]:
    """The YAML of hyper-parameters; a missing section or key is one line naming it."""
    if not path.is_file():
        raise MTDNNInputError("configuration file not found", path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise MTDNNInputError(f"not valid YAML: {str(err).splitlines()[0]}", path) from None
    if not isinstance(config, dict):
        raise MTDNNInputError("expected a mapping of settings", path)
    for section, keys in REQUIRED.items():
        block = config if not section else config.get(section)
        if not isinstance(block, dict):
            raise MTDNNInputError(f"section {section!r} is missing or not a mapping", path)
        missing = [key for key in keys if key not in block]
        if missing:
            raise MTDNNInputError(f"missing key(s) {', '.join(missing)} in {section or 'the top level'}", path)
    alternatives = config["selection"]["alternatives"] or {}
    if not isinstance(alternatives, dict) or not all(
            key in SELECTABLE and isinstance(values, list) for key, values in alternatives.items()):
        raise MTDNNInputError(f"selection.alternatives must map fine-tuning keys ({', '.join(SELECTABLE)}) "
                              "to lists of values", path)
    if config["keep_checkpoints"] not in ("last", "all"):
        raise MTDNNInputError(f"keep_checkpoints must be 'last' or 'all', got {config['keep_checkpoints']!r}", path)
    return config


# ----------------------------------------------------------------------------- data
def raw_train_file(s: Setup, task: str) -> Path:
    """The raw file a task trains on: train.tsv, or dev.tsv for a ``dev_as_train`` task."""
    split = "dev" if task in s.config["refinement"]["dev_as_train"] else "train"
    return s.path("glue_dir") / GLUE_FOLDERS[task] / f"{split}.tsv"


def present_tasks(s: Setup) -> list[str]:
    """Refinement tasks whose training file (or, for dev_as_train, dev file) is in the GLUE folder."""
    unknown = [task for task in s.refine_candidates() if task not in GLUE_FOLDERS]
    if unknown:
        raise MTDNNInputError(f"unknown GLUE task(s) {', '.join(unknown)} (known: {', '.join(GLUE_FOLDERS)})", s.config_path)
    return [task for task in s.refine_candidates() if raw_train_file(s, task).is_file()]


def _line_count(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def training_rows(s: Setup, tasks: list[str]) -> dict[str, dict[str, int]]:
    """Per task ``{"rows": used, "full": available}``: from data.json once prepared, else counted in the raw files."""
    info = s.data_dir / "data.json"
    if info.is_file():
        known = json.loads(info.read_text(encoding="utf-8"))["train"]
        if all(task in known for task in tasks):
            return {task: known[task] for task in tasks}
    rows = {}
    for task in tasks:
        full = _line_count(raw_train_file(s, task)) - (0 if task in HEADERLESS else 1)
        rows[task] = {"rows": min(full, s.row_cap) if s.row_cap else full, "full": full}
    return rows


def _canonical_dev_files(canonical: Path, task: str) -> list[Path]:
    """``{task}_dev.tsv`` and the named dev splits (``mnli_matched_dev.tsv``)."""
    return sorted(canonical.glob(f"{task}_dev.tsv")) + sorted(canonical.glob(f"{task}_*_dev.tsv"))


def _write_rows(source: Path, target: Path, cap: int | None, seed: int) -> tuple[int, int]:
    """Copy a canonical TSV, sampled down to ``cap`` rows (seeded, original order kept); (rows kept, rows in all)."""
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = lines
    if cap is not None and len(lines) > cap:
        keep = sorted(random.Random(seed).sample(range(len(lines)), cap))
        kept = [lines[index] for index in keep]
    with atomic_write(target) as handle:
        handle.write("".join(line + "\n" for line in kept))
    return len(kept), len(lines)


def _run_tool(command: list[str], s: Setup, what: str) -> None:
    """Run a repository tool; a failure stops the driver with one line."""
    print(f"== {what}", flush=True)
    result = subprocess.run(command, cwd=REPO, env=child_env(s.threads))
    if result.returncode != 0:
        raise MTDNNInputError(f"{what} failed (exit code {result.returncode}): {' '.join(command)}")


def prepare_data(s: Setup, tasks: list[str]) -> dict[str, Any]:
    """Raw GLUE → canonical TSV → capped copies → MiniLM features, each step skipped when already done."""
    raw = s.work_dir / "raw"
    canonical = raw / "canonical_data"
    marker = canonical / ".done.json"
    done_tasks = set(json.loads(marker.read_text())["tasks"]) if marker.is_file() else set()
    if not set(tasks) <= done_tasks:
        raw.mkdir(parents=True, exist_ok=True)
        for task in tasks:
            link = raw / GLUE_FOLDERS[task]
            if not link.exists():
                link.symlink_to(s.path("glue_dir").resolve() / GLUE_FOLDERS[task], target_is_directory=True)
        _run_tool([sys.executable, str(REPO / "experiments/glue/glue_prepro.py"), "--root_dir", str(raw),
                   "--tasks", ",".join(tasks)], s, "raw GLUE → canonical TSV")
        with atomic_write(marker) as handle:
            json.dump({"tasks": sorted(set(tasks) | done_tasks)}, handle)

    info_path = s.data_dir / "data.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    if info is None or not set(tasks) <= set(info["train"]):
        print(f"== training sets → {s.data_dir} (cap {s.row_cap or 'none'})", flush=True)
        info = {"cap": s.row_cap, "dev_cap": s.dev_cap, "seed": s.config["sample_seed"], "train": {}, "dev": {}}
        seed = int(s.config["sample_seed"])
        for task in tasks:
            as_train = task in s.config["refinement"]["dev_as_train"]
            source = canonical / f"{task}_{'dev' if as_train else 'train'}.tsv"
            kept, full = _write_rows(source, s.data_dir / f"{task}_train.tsv", s.row_cap, seed)
            info["train"][task] = {"rows": kept, "full": full, "source": source.name}
            for dev in [] if as_train else _canonical_dev_files(canonical, task):
                kept, full = _write_rows(dev, s.data_dir / dev.name, s.dev_cap, seed)
                info["dev"][dev.stem[: -len("_dev")]] = {"rows": kept, "full": full, "task": task}
        with atomic_write(info_path) as handle:
            json.dump(info, handle, indent=2)

    features_marker = s.features_dir / ".done.json"
    wanted = {"max_seq_len": s.max_seq_len, "files": sorted([f"{t}_train" for t in info["train"]]
                                                           + [f"{d}_dev" for d in info["dev"]])}
    if not features_marker.is_file() or json.loads(features_marker.read_text()) != wanted:
        _run_tool([sys.executable, str(REPO / "prepro_std.py"), "--model", s.model_arg(), "--root_dir", str(s.data_dir),
                   "--task_def", str(REPO / s.config["refinement"]["task_def"]), "--max_seq_len", str(s.max_seq_len),
                   "--datasets", ",".join(wanted["files"])], s, f"features ({s.model_arg()}, max_seq_len {s.max_seq_len})")
        with atomic_write(features_marker) as handle:
            json.dump(wanted, handle)
    return info


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Run:
    """One train.py run of the plan."""

    stage: str  # "refine" or "finetune"
    setting: str  # proportional/temperature, or a/b/c/d
    task: str  # the fine-tuned task; "all" for a refinement
    seed: int
    train_datasets: tuple[str, ...]
    test_datasets: tuple[str, ...]
    epochs: int
    depends_on: str | None = None  # key of the refinement it starts from
    override: tuple[str, Any] | None = None  # a selection run: (fine-tuning key, the value tried instead)

    @property
    def key(self) -> str:
        if self.stage == "refine":
            return f"refine/{self.setting}"
        if self.override:
            return f"finetune/{self.setting}/{self.override[0]}_{self.override[1]}/{self.task}/seed{self.seed}"
        return f"finetune/{self.setting}/{self.task}/seed{self.seed}"

    @property
    def adv(self) -> bool:
        return self.setting == "c"

    def output_dir(self, s: Setup) -> Path:
        return s.work_dir / "runs" / self.key

    def examples(self, rows: dict[str, dict[str, int]]) -> int:
        """Training examples over all epochs."""
        return sum(rows[name]["rows"] for name in self.train_datasets) * self.epochs


def dev_datasets(s: Setup, task: str) -> list[str]:
    """The dev datasets of a task as train.py names them (``mnli_matched`` for mnli_matched_dev.json)."""
    info = s.data_dir / "data.json"
    if info.is_file():
        return [name for name, dev in json.loads(info.read_text())["dev"].items() if dev["task"] == task]
    if task in s.config["refinement"]["dev_as_train"]:
        return []
    return ["mnli_matched", "mnli_mismatched"] if task == "mnli" else [task]


def build_plan(s: Setup, tasks: list[str]) -> list[Run]:
    """Every run in dependency order: both refinements, then per seed, task and setting the fine-tunes."""
    refine_epochs, finetune_epochs = int(s.stage("refinement", "epochs")), int(s.stage("finetune", "epochs"))
    tests = tuple(name for task in tasks for name in dev_datasets(s, task))
    seed = int(s.config["refinement"]["seed"])
    plan = [Run("refine", setting, "all", seed, tuple(tasks), tests, refine_epochs) for setting in REFINE_SETTINGS]
    for name, value, seed, task in s.selection_points():
        epochs = int(value) if name == "epochs" else finetune_epochs
        plan.append(Run("finetune", SELECT_SETTING, task, seed, (task,), (task,), epochs, override=(name, value)))
    for seed in s.seeds():
        for task in s.finetune_tasks("a"):
            for setting in FINETUNE_SETTINGS:
                if task not in s.finetune_tasks(setting):
                    continue
                source = SOURCE_REFINEMENT.get(setting)
                plan.append(Run("finetune", setting, task, seed, (task,), (task,), finetune_epochs,
                                f"refine/{source}" if source else None))
    return plan


def select(plan: list[Run], only: list[str] | None, tasks: list[str] | None, seeds: list[int] | None) -> list[Run]:
    """The runs a piece asks for, plus the refinements they start from (in plan order)."""
    chosen = [
        run for run in plan
        if (not only or run.setting in only)
        and (run.stage == "refine" or ((not tasks or run.task in tasks) and (not seeds or run.seed in seeds)))
    ]
    needed = {run.depends_on for run in chosen if run.depends_on}
    return [run for run in plan if run in chosen or run.key in needed]


def train_args(run: Run, s: Setup) -> list[str]:
    """The train.py flags of a run (without --resume)."""
    stage = "refinement" if run.stage == "refine" else "finetune"
    cfg = dict(s.config[stage], batch_size=s.stage(stage, "batch_size"))  # --smoke's batch size, if any
    if run.override:
        cfg[run.override[0]] = run.override[1]
    init = s.model_arg()
    if run.depends_on:
        init = str(s.work_dir / "runs" / run.depends_on / f"model_{int(s.stage('refinement', 'epochs')) - 1}.pt")
    args = [
        "--init_checkpoint", init, "--tokenizer", s.model_arg(), "--data_dir", str(s.features_dir),
        "--task_def", str(REPO / cfg["task_def"]), "--train_datasets", ",".join(run.train_datasets),
        "--test_datasets", ",".join(run.test_datasets), "--max_seq_len", str(s.max_seq_len),
        "--batch_size", str(cfg["batch_size"]),
        "--batch_size_eval", str(s.config["batch_size_eval"]),
        "--optimizer", str(cfg["optimizer"]), "--learning_rate", str(cfg["learning_rate"]),
        "--epochs", str(run.epochs), "--seed", str(run.seed), "--output_dir", str(run.output_dir(s)),
        "--log_per_updates", str(LOG_PER_UPDATES), "--dataloader_num_workers", "0" if s.device == "cpu" else "2",
        "--cuda" if s.device == "cuda" else "--no-cuda",
    ]
    if run.stage == "refine":
        args += ["--sampling", run.setting]
        if run.setting == "temperature":
            args += ["--sampling_temperature", str(cfg["sampling_temperature"])]
    extra = dict(cfg["extra_args"] or {})
    if run.adv:
        args.append("--adv_train")
        extra.update(cfg["adv_args"] or {})
    for flag, value in extra.items():
        args += [f"--{flag}"] if value is True else [f"--{flag}", str(value)]
    return args


def fingerprint(args: list[str], work_dir: Path) -> list[str]:
    """The flags with path values made relative to the work folder (or cut to their name): what must match on reuse."""
    out = list(args)
    for index, item in enumerate(out[:-1]):
        if item in PATH_FLAGS:
            path = Path(out[index + 1])
            out[index + 1] = str(path.relative_to(work_dir)) if path.is_relative_to(work_dir) else path.name
    return out


# ----------------------------------------------------------------------------- status and estimate
def run_status(run: Run, s: Setup) -> str:
    """done, resume (a last.pt to continue from), or todo; a done run with other flags is an error."""
    folder = run.output_dir(s)
    if (folder / "DONE").is_file():
        recorded = json.loads((folder / "run.json").read_text(encoding="utf-8"))["fingerprint"]
        if recorded != fingerprint(train_args(run, s), s.work_dir):
            raise MTDNNInputError(
                f"{run.key} was done with other settings than {s.config_path.name} now gives "
                "(use another --work_dir, or delete that run folder to redo it)", folder / "run.json")
        return "done"
    return "resume" if (folder / "last.pt").is_file() else "todo"


def kind(run: Run) -> str:
    return "refine" if run.stage == "refine" else ("finetune_adv" if run.adv else "finetune")


def measured_speeds(s: Setup) -> dict[str, float]:
    """Median effective examples/s of finished runs on this device, per kind of run."""
    by_kind: dict[str, list[float]] = {}
    for path in (s.work_dir / "runs").glob("**/timing.json"):
        timing = json.loads(path.read_text(encoding="utf-8"))
        if timing.get("finished") and timing.get("device") == s.device and timing.get("wall_s", 0) > 0:
            by_kind.setdefault(timing["kind"], []).append(timing["examples"] / timing["wall_s"])
    return {name: statistics.median(rates) for name, rates in by_kind.items()}


def speed_of(run: Run, s: Setup, measured: dict[str, float]) -> tuple[float, str]:
    """Examples/s expected for a run and where that number comes from."""
    slowdown = float(s.config["speed"]["adv_slowdown"])
    if kind(run) in measured:
        return measured[kind(run)], "measured"
    plain = [rate for name, rate in measured.items() if name != "finetune_adv"]
    if plain:
        rate = statistics.median(plain)
        return (rate / slowdown if run.adv else rate), "measured (other kind)"
    rate = float(s.config["speed"][s.device])
    return (rate / slowdown if run.adv else rate), "default"


def format_duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def print_plan(runs: list[Run], s: Setup, rows: dict[str, dict[str, int]], tasks: list[str]) -> float:
    """Print the plan with each run's status and estimated time; returns the estimate of what is left (s)."""
    caps = ", ".join(f"{t} {r['rows']}/{r['full']}" for t, r in rows.items() if r["rows"] < r["full"]) or "none"
    print(f"device: {s.device} ({s.threads} thread(s) per run); work folder: {s.work_dir}")
    if s.device == "cuda":
        print("GPU found: no row caps; settings c and d on every fine-tuning task")
    print(f"refinement tasks: {', '.join(tasks)}; capped training sets (rows used/available): {caps}")
    measured = measured_speeds(s)
    width = max([34] + [len(run.key) for run in runs])
    print(f"{'#':>3}  {'run':<{width}} {'status':<7} {'examples':>9} {'ex/s':>6} {'estimate':>9}  from")
    left = 0.0
    for number, run in enumerate(runs, start=1):
        status = run_status(run, s)
        examples = run.examples(rows)
        rate, source = speed_of(run, s, measured)
        seconds = 0.0 if status == "done" else examples / rate
        left += seconds
        print(f"{number:>3}  {run.key:<{width}} {status:<7} {examples:>9} {rate:>6.1f} {format_duration(seconds):>9}  "
              f"{source if status != 'done' else ''}")
    print(f"estimated time left: {format_duration(left)} ({sum(run_status(r, s) != 'done' for r in runs)} of "
          f"{len(runs)} runs to do)", flush=True)
    return left


# ----------------------------------------------------------------------------- running
def child_env(threads: int) -> dict[str, str]:
    """The environment of a tool: the repository importable, the thread count fixed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    return env


@dataclass
class Timing:
    """<run>/timing.json: the wall-clock of every piece a run took, and its effective examples/s."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, run: Run, s: Setup, examples: int) -> Timing:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        data.update(key=run.key, kind=kind(run), device=s.device, threads=s.threads, examples=examples)
        data.setdefault("segments", [])
        return cls(path, data)

    def add(self, started: float, ended: float, exit_code: int, resumed: bool) -> None:
        self.data["segments"].append({"started": started, "ended": ended, "wall_s": round(ended - started, 1),
                                      "exit_code": exit_code, "resumed": resumed})
        self.data["wall_s"] = round(sum(seg["wall_s"] for seg in self.data["segments"]), 1)
        self.save()

    def finish(self) -> None:
        self.data["finished"] = True
        self.data["examples_per_s"] = round(self.data["examples"] / max(self.data["wall_s"], 1e-9), 2)
        self.save()

    def save(self) -> None:
        with atomic_write(self.path) as handle:
            json.dump(self.data, handle, indent=2)


def _score_path(folder: Path, dataset: str, epoch: int) -> Path:
    return folder / f"{dataset}_dev_scores_epoch_{epoch}.json"


def _recover_last_scores(run: Run, s: Setup) -> None:
    """Score the last epoch's dev sets with predict.py when the run was stopped between its last save and evaluation."""
    folder, last = run.output_dir(s), run.epochs - 1
    checkpoint = folder / f"model_{last}.pt"
    for dataset in run.test_datasets:
        if _score_path(folder, dataset, last).is_file() or not checkpoint.is_file():
            continue
        _run_tool([sys.executable, str(REPO / "predict.py"), "--task", dataset, "--checkpoint", str(checkpoint),
                   "--prep_input", str(s.features_dir / f"{dataset}_dev.json"), "--with_label",
                   "--max_seq_len", str(s.max_seq_len), "--batch_size_eval", str(s.config["batch_size_eval"]),
                   "--score", str(_score_path(folder, dataset, last)), "--cuda" if s.device == "cuda" else "--no-cuda"],
                  s, f"{run.key}: scoring {dataset} dev of epoch {last} (the run stopped before its evaluation)")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the driver."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _stop(process: subprocess.Popen) -> None:
    """Wait for train.py to stop (Ctrl-C in a terminal reaches it too), else send it SIGINT; kill it after 2 minutes."""
    try:
        process.wait(timeout=5)
        return
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # train.py stops and names its checkpoint
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def prune_checkpoints(run: Run, s: Setup) -> None:
    """With keep_checkpoints 'last', a finished run keeps only its last epoch's weights (model_{last}.pt)."""
    if s.config["keep_checkpoints"] == "all":
        return
    keep = f"model_{run.epochs - 1}.pt"
    for path in [run.output_dir(s) / "last.pt", *run.output_dir(s).glob("model_*.pt")]:
        if path.name != keep:
            path.unlink(missing_ok=True)


def execute(run: Run, s: Setup, rows: dict[str, dict[str, int]]) -> bool:
    """Train one run (resuming from last.pt when there is one); True once its DONE marker is written."""
    folder = run.output_dir(s)
    folder.mkdir(parents=True, exist_ok=True)
    args = train_args(run, s)
    with atomic_write(folder / "run.json") as handle:
        json.dump({"key": run.key, "args": args, "fingerprint": fingerprint(args, s.work_dir)}, handle, indent=2)
    resumed = (folder / "last.pt").is_file()
    if resumed:
        args += ["--resume", "--model_ckpt", str(folder / "last.pt")]
    timing = Timing.load(folder / "timing.json", run, s, run.examples(rows))
    print(f"== {run.key}: {'resuming from last.pt' if resumed else 'starting'} → {folder}", flush=True)
    started = time.time()
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=child_env(s.threads))
    try:
        code = process.wait()
    except Interrupted:
        _stop(process)
        timing.add(started, time.time(), process.returncode, resumed)
        raise
    timing.add(started, time.time(), code, resumed)
    if code != 0:
        print(f"!! {run.key}: train.py exited with code {code} (log: {folder / 'mt-dnn-train.log'})", flush=True)
        return False
    _recover_last_scores(run, s)
    missing = [p.name for p in (_score_path(folder, d, run.epochs - 1) for d in run.test_datasets) if not p.is_file()]
    if missing:
        print(f"!! {run.key}: finished without {', '.join(missing)}", flush=True)
        return False
    timing.finish()
    metrics = {d: json.loads(_score_path(folder, d, run.epochs - 1).read_text())["metrics"] for d in run.test_datasets}
    with atomic_write(folder / "DONE") as handle:
        json.dump({"key": run.key, "epochs": run.epochs, "dev_metrics": metrics}, handle, indent=2)
    prune_checkpoints(run, s)
    print(f"== {run.key}: done in {format_duration(timing.data['wall_s'])}; {json.dumps(metrics)}", flush=True)
    return True


def write_plan_file(s: Setup, plan: list[Run], tasks: list[str], rows: dict[str, dict[str, int]]) -> None:
    """<work_dir>/plan.json: the whole plan and its settings, for report.py; a folder keeps one device/cap."""
    path = s.work_dir / "plan.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if (old["device"], old["variant"]) != (s.device, s.variant):
            raise MTDNNInputError(
                f"this work folder holds {old['device']} runs (data {old['variant']}), not {s.device} ({s.variant}): "
                "use another --work_dir", path)
    stages = {name: {key: value for key, value in s.config[name].items() if key not in ("tasks", "cpu_tasks_cd")}
              for name in ("refinement", "finetune")}
    for name in stages:
        stages[name].update(epochs=s.stage(name, "epochs"), batch_size=s.stage(name, "batch_size"))
    payload = {
        "device": s.device, "variant": s.variant, "smoke": s.smoke, "threads": s.threads, "model": str(s.config["model"]),
        "max_seq_len": s.max_seq_len, "row_cap": s.row_cap, "dev_cap": s.dev_cap, "refine_tasks": tasks,
        "rows": rows, "data_dir": str(s.data_dir.relative_to(s.work_dir)), "selection": s.config["selection"],
        "finetune_task_def": str(s.config["finetune"]["task_def"]), "stages": stages,
        "runs": [{"key": r.key, "stage": r.stage, "setting": r.setting, "task": r.task, "seed": r.seed,
                  "epochs": r.epochs, "test_datasets": list(r.test_datasets), "depends_on": r.depends_on,
                  "override": list(r.override) if r.override else None} for r in plan],
    }
    with atomic_write(path) as handle:
        json.dump(payload, handle, indent=2, default=str)


# ----------------------------------------------------------------------------- CLI
def _csv(text: str | None) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the driver."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML of hyper-parameters (default: %(default)s)")
    p.add_argument("--work_dir", default=None,
                   help="data, runs and plan.json (default: the YAML's work_dir; with --smoke, that name + '_smoke')")
    p.add_argument("--dry_run", action="store_true", help="print the plan and its estimated time, run nothing (default: off)")
    p.add_argument("--only", default=None, help="settings to run: select,a,b,c,d,proportional,temperature "
                   "(default: all); the refinements a chosen setting starts from are run too")
    p.add_argument("--tasks", default=None, help="fine-tuning tasks to run, e.g. rte,mrpc (default: all of the plan)")
    p.add_argument("--seeds", default=None, help="fine-tuning seeds to run, e.g. 2018 (default: all of the plan)")
    p.add_argument("--smoke", action="store_true",
                   help="the YAML's smoke slice: a few rows, 1 epoch, short sequences (default: off)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda when torch sees a GPU (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of each run (OMP_NUM_THREADS; default: $OMP_NUM_THREADS, else all cores)")
    p.add_argument("--report", default=None,
                   help="results file written at the end (default: docs/results.md; with --smoke <work_dir>/results.md)")
    p.add_argument("--no_report", action="store_true", help="do not write the report at the end (default: off)")
    return p


def make_setup(args: argparse.Namespace) -> Setup:
    """The Setup of an invocation: configuration, device, work folder and threads."""
    config_path = Path(args.config)
    config = load_config(config_path)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.work_dir:
        work_dir = Path(args.work_dir)
    else:
        work_dir = Path(str(config["work_dir"]) + ("_smoke" if args.smoke else ""))
        work_dir = work_dir if work_dir.is_absolute() else REPO / work_dir
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    if threads < 1:
        raise MTDNNInputError(f"--threads must be at least 1, got {threads}")
    return Setup(config, config_path, work_dir.resolve(), device, args.smoke, threads)


def check_selection(values: list[str] | None, allowed: list[str], flag: str) -> None:
    unknown = [value for value in values or [] if value not in allowed]
    if unknown:
        raise MTDNNInputError(f"{flag}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})")


def main(argv: list[str] | None = None) -> int:
    """Print the plan, then prepare the data and run what is not done yet; returns the exit code."""
    args = build_parser().parse_args(argv)
    s = make_setup(args)
    tasks = present_tasks(s)
    if not tasks:
        raise MTDNNInputError("no GLUE task of the plan has a training file here", s.path("glue_dir"))
    plan = build_plan(s, tasks)
    only, sel_tasks = _csv(args.only), _csv(args.tasks)
    check_selection(only, [*REFINE_SETTINGS, *FINETUNE_SETTINGS, SELECT_SETTING], "--only")
    check_selection(sel_tasks, sorted({run.task for run in plan if run.stage == "finetune"}), "--tasks")
    try:
        seeds = [int(seed) for seed in _csv(args.seeds) or []] or None
    except ValueError:
        raise MTDNNInputError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    check_selection([str(x) for x in seeds or []], sorted({str(r.seed) for r in plan if r.stage == "finetune"}),
                    "--seeds")
    runs = select(plan, only, sel_tasks, seeds)
    rows = training_rows(s, tasks)
    print_plan(runs, s, rows, tasks)
    if args.dry_run:
        return 0

    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: list[str] = []
    try:
        s.work_dir.mkdir(parents=True, exist_ok=True)
        write_plan_file(s, plan, tasks, rows)
        prepare_data(s, tasks)
        rows = training_rows(s, tasks)
        plan = build_plan(s, tasks)  # the dev datasets are now those the data folder holds
        runs = select(plan, only, sel_tasks, seeds)
        write_plan_file(s, plan, tasks, rows)
        for run in runs:
            if run_status(run, s) == "done":
                print(f"== {run.key}: done already, skipped", flush=True)
                continue
            if run.depends_on in failed or (run.depends_on and run_status(_by_key(plan, run.depends_on), s) != "done"):
                print(f"!! {run.key}: skipped, {run.depends_on} is not done", flush=True)
                failed.append(run.key)
                continue
            if not execute(run, s, rows):
                failed.append(run.key)
    except Interrupted as stop:
        print(f"!! stopped ({stop}); run the same command again to continue", flush=True)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not args.no_report:
        write_report(s, args.report)
    if failed:
        print(f"!! {len(failed)} run(s) did not finish: {', '.join(failed)}", flush=True)
        return 1
    return 0


def _by_key(plan: list[Run], key: str) -> Run:
    return next(run for run in plan if run.key == key)


def write_report(s: Setup, report: str | None) -> None:
    """Write the results file with scripts/report.py."""
    out = Path(report) if report else (s.work_dir / "results.md" if s.smoke else REPO / "docs" / "results.md")
    readme = ["--readme", str(REPO / "README.md")] if report is None and not s.smoke else []
    _run_tool([sys.executable, str(Path(__file__).with_name("report.py")), "--work_dir", str(s.work_dir),
               "--out", str(out), *readme], s, f"report → {out}")


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
