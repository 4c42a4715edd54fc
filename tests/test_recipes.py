"""The recipes in scripts/ end to end in SMOKE mode: real GLUE and the SciTail/SNLI samples, MiniLM, CPU.

Each recipe preprocesses a slice of its raw data in a temp folder, trains a few updates and must leave
a dev score file with finite metrics and a checkpoint; run_rte.sh also fine-tunes the checkpoint that
run_mt_dnn.sh wrote (the paper's two stages). DRY_RUN=1 checks the printed commands cheaply.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from mt_dnn.checkpoint import load_mtdnn_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
GLUE = SHARED / "data" / "glue"
GLUE_TASKS = ["rte", "mrpc", "sst", "cola", "stsb"]  # those with a training file in the offline GLUE copy


def run_recipe(script: str, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run ``bash scripts/<script> args…`` with SMOKE=1, MiniLM and the offline GLUE unless ``env`` says otherwise."""
    full_env = {
        **os.environ,
        "SMOKE": "1",
        "MTDNN_MODEL": str(MINILM),
        "MTDNN_GLUE_DIR": str(GLUE),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **env,
    }
    for name in ("OUT", "NGPU", "MTDNN_CHECKPOINT", "MTDNN_FEATURES", "MTDNN_WORK", "MTDNN_DATA_DIR", "SUBSETS"):
        if name not in env:
            full_env.pop(name, None)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_ok(result: subprocess.CompletedProcess) -> str:
    """The recipe's stdout and stderr together, after asserting it exited 0."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def dev_metrics(out: Path, dataset: str) -> dict[str, float]:
    """The metrics of ``<out>/<dataset>_dev_scores_epoch_0.json``, asserted present and finite."""
    metrics = json.loads((out / f"{dataset}_dev_scores_epoch_0.json").read_text())["metrics"]
    assert metrics, f"no metrics for {dataset}"
    for name, value in metrics.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{dataset} {name}: {value!r}"
    return metrics


def checkpoint_tasks(path: Path) -> list[str]:
    """The task names a ``model_<e>.pt`` holds heads for (it must load as an MT-DNN checkpoint)."""
    checkpoint = load_mtdnn_checkpoint(str(path))
    return [task["name"] for task in checkpoint["config"]["task_defs"]]


def train_command(output: str) -> str:
    """The one printed ``python train.py …`` or ``torchrun … train.py …`` command line."""
    lines = [line for line in output.splitlines() if re.match(r"\+ (python|torchrun) .*train\.py", line)]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def mt_dnn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Stage 1: run_mt_dnn.sh SMOKE on every GLUE task of the offline copy; (output folder, its output)."""
    out = tmp_path_factory.mktemp("mt_dnn")
    return out, check_ok(run_recipe("run_mt_dnn.sh", "", "", str(out)))


def test_run_mt_dnn_trains_every_glue_task_with_san(mt_dnn_run: tuple[Path, str]) -> None:
    out, output = mt_dnn_run
    assert "starting from the plain encoder" in output
    command = train_command(output)
    assert "--task_def experiments/glue/glue_san_task_def.yml" in command
    assert f"--train_datasets {','.join(GLUE_TASKS)} " in command
    for task in GLUE_TASKS:
        dev_metrics(out, task)
    assert checkpoint_tasks(out / "model_0.pt") == GLUE_TASKS
    assert "dataset    metric" in output  # the closing dev table


def test_run_rte_fine_tunes_the_mt_dnn_checkpoint(mt_dnn_run: tuple[Path, str], tmp_path: Path) -> None:
    mt_out, _ = mt_dnn_run
    out = tmp_path / "rte"
    output = check_ok(run_recipe("run_rte.sh", str(mt_out), "", str(out)))
    assert f"starting from the MT-DNN checkpoint {mt_out / 'model_0.pt'}" in output
    assert f"--init_checkpoint {mt_out / 'model_0.pt'} --tokenizer {MINILM}" in train_command(output)
    log = (out / "mt-dnn-train.log").read_text()
    assert "start fresh" not in log  # the RTE head came from stage 1
    dev_metrics(out, "rte")
    assert checkpoint_tasks(out / "model_0.pt") == ["rte"]


def test_run_stsb_from_the_plain_encoder_with_relative_out(tmp_path: Path) -> None:
    output = check_ok(run_recipe("run_stsb.sh", "", "", "stsb_out", cwd=tmp_path))
    assert f"no MT-DNN checkpoint given: starting from the plain encoder {MINILM}" in output
    assert set(dev_metrics(tmp_path / "stsb_out", "stsb")) == {"Pearson", "Spearman"}
    assert checkpoint_tasks(tmp_path / "stsb_out" / "model_0.pt") == ["stsb"]


def test_run_mt_dnn_gc_fp16_accumulates_and_falls_back_on_cpu(tmp_path: Path) -> None:
    output = check_ok(run_recipe("run_mt_dnn_gc_fp16.sh", "", "", str(tmp_path)))
    command = train_command(output)
    assert "--batch_size 8 --grad_accumulation_step 4" in command
    if torch.cuda.is_available():
        assert "--fp16" in command
    else:
        assert "torch sees no CUDA device" in output and "--fp16" not in command
    log = (tmp_path / "mt-dnn-train.log").read_text()
    assert "10 batches per epoch, 2 updates in all" in log  # 5 tasks × 16 rows / batch 8, one update per 4
    for task in GLUE_TASKS:
        dev_metrics(tmp_path, task)
    assert (tmp_path / "model_0.pt").is_file()


def test_scitail_domain_adaptation_trains_every_subset(tmp_path: Path) -> None:
    output = check_ok(run_recipe("scitail_domain_adaptation_bash.sh", "", "", str(tmp_path)))
    assert "no MT-DNN checkpoint given: starting from the plain encoder" in output
    assert "+ python experiments/domain_adaptation/domain_prepro.py --root_dir" in output
    # The SciTail sample has 30 training rows: subsets of max(1, round(f·30)) rows; SMOKE keeps 16 of the full set.
    check_domain_runs(output, tmp_path, "scitail", {"scitail_001": 1, "scitail_01": 1, "scitail_1": 3, "scitail": 16})


def test_snli_domain_adaptation_from_the_mt_dnn_checkpoint(mt_dnn_run: tuple[Path, str], tmp_path: Path) -> None:
    mt_out, _ = mt_dnn_run
    output = check_ok(run_recipe("snli_domain_adaptation_bash.sh", str(mt_out), "", str(tmp_path), SUBSETS="1 full"))
    assert f"starting from the MT-DNN checkpoint {mt_out / 'model_0.pt'}" in output
    # The SNLI sample (GLUE layout) has 10 labelled training rows; SUBSETS picks two of the four runs.
    check_domain_runs(output, tmp_path, "snli", {"snli_1": 1, "snli": 10})
    # A new snli head on the MT-DNN encoder.
    assert "start fresh: snli" in (tmp_path / "snli" / "mt-dnn-train.log").read_text()


def check_domain_runs(output: str, out: Path, task: str, train_rows: dict[str, int]) -> None:
    """One output folder per training subset, each with its example count printed, a dev score and a checkpoint."""
    assert sorted(path.name for path in out.iterdir()) == sorted(train_rows)
    for dataset, rows in train_rows.items():
        assert f"== {dataset}: {rows} training examples" in output
        assert set(dev_metrics(out / dataset, task)) == {"ACC"}
        assert checkpoint_tasks(out / dataset / "model_0.pt") == [task]


def test_dry_run_prints_torchrun_and_extra_flags_and_writes_nothing(tmp_path: Path) -> None:
    work = tmp_path / "work"
    args = ("", str(GLUE), str(tmp_path / "out"), "2", "--seed", "7")
    result = run_recipe("run_rte.sh", *args, SMOKE="0", DRY_RUN="1", MTDNN_WORK=str(work))
    output = check_ok(result)
    assert f"+ python experiments/glue/glue_prepro.py --root_dir {work} --tasks rte" in output
    assert f"+ python prepro_std.py --model {MINILM}" in output
    command = train_command(output)
    assert command.startswith("+ torchrun --nproc_per_node 2 train.py --init_checkpoint")
    assert "--learning_rate 2e-5 --batch_size 32 --epochs 5 --max_seq_len 512" in command
    assert command.endswith("--seed 7")
    assert not work.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "", "", "two"), "error: run_rte: NGPU must be a whole number above 0, not 'two'"),
        (("missing/model_3.pt",), "error: run_rte: MT-DNN checkpoint"),
        (("bad.pt",), "bad.pt: not a readable MT-DNN checkpoint"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_text("not a checkpoint\n")
    result = run_recipe("run_rte.sh", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and message in result.stderr
