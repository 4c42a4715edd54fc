"""What a person following a run sees (SPEC §6 logging, §7 outputs): progress lines when stderr is
not a terminal, ``--keep_last``, the ``--model_ckpt`` default, ``history.json`` and
``training_curves.png`` (and ``scripts/plot_run.py``), and ``scripts/dev_table.py``'s default epoch."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from test_train import REPO, strict_json, train_args

import mt_dnn.run_history as run_history
from data_utils.errors import MTDNNInputError
from data_utils.log_utils import ProgressClock, format_duration
from mt_dnn.checkpoint import prune_weight_files, weight_files
from mt_dnn.train_args import build_parser, options_from_args
from scripts import dev_table, plot_run
from train import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROGRESS = re.compile(
    r"epoch (\d+) \| task (rte|stsb) update (\d+)/(\d+) \| loss (\S+) lr (\S+) \| (\S+) examples/s \| "
    r"ETA epoch (\S+), run (\S+) \(training only\)"
)


def progress_lines(text: str) -> list[re.Match]:
    return [match for match in map(PROGRESS.search, text.splitlines()) if match]


# ---- progress lines ---------------------------------------------------------------------------
def test_progress_lines_by_time_when_stderr_is_redirected(tiny_model_dir, features_dir, tmp_path):
    out = tmp_path / "out"
    # Updates alone would log nothing (--log_per_updates 1000); the tiny interval logs every update.
    argv = train_args(tiny_model_dir, features_dir, out, "--epochs", "1", "--log_per_updates", "1000",
                      "--log_every_seconds", "1e-6")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    with open(tmp_path / "stderr.txt", "w") as stderr:
        subprocess.run([sys.executable, str(REPO / "train.py"), *argv], cwd=REPO, env=env, stderr=stderr, check=True,
                       timeout=600)
    for text in ((out / "mt-dnn-train.log").read_text(encoding="utf-8"), (tmp_path / "stderr.txt").read_text()):
        lines = progress_lines(text)
        assert [(int(m[1]), int(m[3]), int(m[4])) for m in lines] == [(0, n, 5) for n in range(1, 6)]
        for match in lines:
            float(match[5]), float(match[6]), float(match[7])  # loss, lr, examples/s are numbers
            assert re.fullmatch(r"\d+s|\d+m\d\ds|\d+h\d\dm", match[8]) and match[9] == match[8]  # one epoch: equal
    assert "\r" not in (tmp_path / "stderr.txt").read_text()  # no progress bar without a terminal


@pytest.mark.parametrize("terminal, seconds", [(False, "0"), (True, "1e-6")], ids=["turned_off", "bar_on_a_terminal"])
def test_no_time_lines_when_off_or_with_a_progress_bar(terminal, seconds, tiny_model_dir, features_dir, tmp_path,
                                                        monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    main(train_args(tiny_model_dir, features_dir, tmp_path, "--epochs", "1", "--log_per_updates", "1000",
                    "--log_every_seconds", seconds, datasets="stsb"))
    assert progress_lines((tmp_path / "mt-dnn-train.log").read_text(encoding="utf-8")) == []


def test_progress_clock_every_updates_or_seconds(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("data_utils.log_utils.time.monotonic", lambda: now[0])
    clock = ProgressClock(every_updates=4, every_seconds=30)
    assert [clock.due(n) for n in (1, 2, 3, 4)] == [False, False, False, True]
    now[0] += 29.9
    assert not clock.due(5)
    now[0] += 0.2  # 30.1 s since the line of update 4
    assert clock.due(6) and not clock.due(7)
    assert [ProgressClock(4, 0).due(n) for n in (1, 4)] == [False, True]  # 0: by updates only


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 3600, 7385)] == ["0s", "59s", "1m01s", "59m59s", "1h00m",
                                                                              "2h03m"]


# ---- checkpoints ------------------------------------------------------------------------------
def test_weight_files_are_ordered_by_epoch_then_update_and_pruned_oldest_first(tmp_path):
    names = ["model_1.pt", "model_0_3.pt", "model_10_40.pt", "model_0.pt", "model_1_6.pt", "model_2.pt", "last.pt",
             "model_x.pt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    order = ["model_0_3.pt", "model_0.pt", "model_1_6.pt", "model_1.pt", "model_2.pt", "model_10_40.pt"]
    assert [p.name for p in weight_files(tmp_path)] == order
    assert prune_weight_files(tmp_path, 0) == []
    assert [p.name for p in prune_weight_files(tmp_path, 2)] == order[:4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "model_10_40.pt", "model_2.pt", "model_x.pt"]


def test_model_ckpt_defaults_to_last_pt_of_the_output_dir(tiny_model_dir, features_dir, tmp_path):
    parse = lambda *argv: options_from_args(build_parser().parse_args(list(argv)))[0]  # noqa: E731
    assert parse("--output_dir", "runs/a", "--resume").model_ckpt == os.path.join("runs/a", "last.pt")
    assert parse("--resume", "--model_ckpt", "old/model_2.pt").model_ckpt == "old/model_2.pt"
    assert "(default: <output_dir>/last.pt)" in build_parser().format_help().replace("\n", " ").replace("  ", "")
    with pytest.raises(MTDNNInputError, match=r"last\.pt: checkpoint to resume not found"):
        main(train_args(tiny_model_dir, features_dir, tmp_path, "--resume"))


# ---- history, plot, dev table -------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, features_dir, tmp_path_factory) -> Path:
    """A 2-epoch rte+stsb run (5 updates an epoch) saving every 2 updates and keeping the newest 2 weight files."""
    out = tmp_path_factory.mktemp("run")
    main(train_args(tiny_model_dir, features_dir, out, "--save_per_updates_on", "--save_per_updates", "2",
                    "--keep_last", "2", "--log_every_seconds", "0"))
    return out


def test_keep_last_keeps_the_newest_weight_files_and_last_pt(run_dir):
    # Saved: model_0_2, model_0_4, model_0, model_1_6, model_1_8, model_1_10, model_1.
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["last.pt", "model_1.pt", "model_1_10.pt"]
    assert "--keep_last 2" in (run_dir / "mt-dnn-train.log").read_text(encoding="utf-8")


def test_history_has_one_entry_per_epoch_with_the_score_files_metrics(run_dir):
    history = strict_json(run_dir / "history.json")
    assert [(e["epoch"], e["updates"]) for e in history["epochs"]] == [(0, 5), (1, 10)]
    for entry in history["epochs"]:
        assert isinstance(entry["train_loss"], float) and entry["train_loss"] > 0
        for dataset in ("rte", "stsb"):
            metrics = strict_json(run_dir / f"{dataset}_dev_scores_epoch_{entry['epoch']}.json")["metrics"]
            assert entry["dev"][dataset] == metrics
    # One loss point per progress line (every 2 updates).
    assert [p["updates"] for p in history["points"]] == [2, 4, 6, 8, 10]
    assert all(isinstance(p["loss"], float) and p["lr"] >= 0 for p in history["points"])


def test_training_curves_are_a_png_and_plot_run_redraws_them(run_dir, tmp_path, capsys):
    drawn = run_dir / "training_curves.png"
    assert drawn.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.image.imread(drawn).shape[:2] == (420, 1100)
    redrawn = plot_run.main(["--output_dir", str(run_dir), "--out", str(tmp_path / "again.png")])
    assert redrawn.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.image.imread(redrawn).shape == matplotlib.image.imread(drawn).shape
    assert "2 epoch(s), 5 loss point(s)" in capsys.readouterr().out


def test_plot_run_without_a_history(tmp_path):
    with pytest.raises(MTDNNInputError, match="history.json not found"):
        plot_run.main(["--output_dir", str(tmp_path)])
    (tmp_path / "history.json").write_text(json.dumps({"epochs": {}}))
    with pytest.raises(MTDNNInputError, match="not a history.json of train.py"):
        plot_run.main(["--output_dir", str(tmp_path)])


def test_a_plot_that_fails_never_stops_training(tiny_model_dir, features_dir, tmp_path, monkeypatch):
    def broken_plot(history, path):
        raise RuntimeError("no display, no fonts, nothing")

    monkeypatch.setattr(run_history, "plot_history", broken_plot)
    main(train_args(tiny_model_dir, features_dir, tmp_path, "--epochs", "1", datasets="stsb"))
    assert (tmp_path / "model_0.pt").is_file() and (tmp_path / "stsb_dev_scores_epoch_0.json").is_file()
    log = (tmp_path / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert "could not draw" in log and "RuntimeError: no display, no fonts, nothing); training goes on" in log
    assert len(strict_json(tmp_path / "history.json")["epochs"]) == 1


def test_dev_table_shows_the_last_epoch_by_default_and_says_so(run_dir, capsys):
    rows = dev_table.main(["--output_dir", str(run_dir)])
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "dev metrics of epoch 1 (the last)"
    expected = [
        (name, metric, float(value))
        for name in ("rte", "stsb")
        for metric, value in strict_json(run_dir / f"{name}_dev_scores_epoch_1.json")["metrics"].items()
    ]
    assert rows == expected
    rows = dev_table.main(["--output_dir", str(run_dir), "--datasets", "stsb", "--epoch", "0"])
    assert capsys.readouterr().out.splitlines()[0] == "dev metrics of epoch 0 (the last is 1)"
    assert [row[0] for row in rows] == ["stsb", "stsb"]


def test_dev_table_faults(run_dir, tmp_path):
    with pytest.raises(MTDNNInputError, match="no dev score files"):
        dev_table.main(["--output_dir", str(tmp_path)])
    with pytest.raises(MTDNNInputError, match="no epoch has dev score files of all of rte, mnli"):
        dev_table.main(["--output_dir", str(run_dir), "--datasets", "rte,mnli"])
    with pytest.raises(MTDNNInputError, match="score file not found"):
        dev_table.main(["--output_dir", str(run_dir), "--epoch", "7"])
