"""``torchrun`` data parallelism on CPU (gloo): two processes with global batch B end where one
process with batch B ends, evaluation is sharded and gathered back in order, and a checkpoint
written by two processes resumes in one."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from train import main

from test_train import GLUE_YAML, REPO, load_checkpoint, train_args

TOLERANCE = 1e-6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def no_dropout_yaml(tmp_path_factory) -> Path:
    """rte and stsb without head dropout (and the runs set --bert_dropout_p 0): the only randomness
    left in training is the data order, which the sampler shares across ranks."""
    tasks = yaml.safe_load(GLUE_YAML.read_text(encoding="utf-8"))
    for name in ("rte", "stsb"):
        tasks[name]["dropout_p"] = 0.0
    path = tmp_path_factory.mktemp("yaml") / "tasks.yml"
    path.write_text(yaml.safe_dump({"rte": tasks["rte"], "stsb": tasks["stsb"]}), encoding="utf-8")
    return path


def run_args(model: Path, data: Path, out: Path, yaml_path: Path, *extra: str) -> list[str]:
    argv = train_args(model, data, out, "--bert_dropout_p", "0", "--dropout_p", "0", *extra)
    argv[argv.index("--task_def") + 1] = str(yaml_path)
    return argv


def torchrun(argv: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(REPO / "train.py"), *argv,
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def max_weight_difference(a: Path, b: Path) -> float:
    state_a, state_b = load_checkpoint(a)["state"], load_checkpoint(b)["state"]
    assert state_a.keys() == state_b.keys()
    return max((state_a[key].double() - state_b[key].double()).abs().max().item() for key in state_a)


@pytest.fixture(scope="module")
def runs(tiny_model_dir, features_dir, no_dropout_yaml, tmp_path_factory):
    """``runs(name, nproc, *flags)``: the output folder of a finished run, made once per module."""
    done: dict[tuple, Path] = {}

    def get(name: str, nproc: int, *flags: str) -> Path:
        key = (name, nproc, flags)
        if key not in done:
            out = tmp_path_factory.mktemp(f"{name}_{nproc}")
            argv = run_args(tiny_model_dir, features_dir, out, no_dropout_yaml, *flags)
            main(argv) if nproc == 1 else torchrun(argv, nproc)
            done[key] = out
        return done[key]

    return get


@pytest.mark.parametrize("flags", [(), ("--grad_accumulation_step", "2")], ids=["plain", "accumulation"])
def test_two_processes_end_where_one_process_ends(flags, runs):
    one, two = runs("run", 1, *flags), runs("run", 2, *flags)
    for epoch in (0, 1):
        assert max_weight_difference(one / f"model_{epoch}.pt", two / f"model_{epoch}.pt") < TOLERANCE
    assert load_checkpoint(two / "model_1.pt")["updates"] == load_checkpoint(one / "model_1.pt")["updates"]


def test_sharded_evaluation_returns_every_example_once_in_order(runs, features_dir):
    one, two = runs("run", 1), runs("run", 2)
    for name in ("rte", "stsb"):
        uids = [str(json.loads(line)["uid"]) for line in (features_dir / f"{name}_dev.json").read_text().splitlines()]
        a = json.loads((one / f"{name}_dev_scores_epoch_1.json").read_text())
        b = json.loads((two / f"{name}_dev_scores_epoch_1.json").read_text())
        assert b["uids"] == a["uids"] == uids
        assert len(b["scores"]) == len(a["scores"])
        assert max(abs(x - y) for x, y in zip(a["scores"], b["scores"])) < 1e-5
        assert b["metrics"].keys() == a["metrics"].keys()
        for metric, value in a["metrics"].items():
            # The tiny model's STS-B scores are nearly constant: Pearson magnifies 1e-9 differences to ~1e-4.
            assert b["metrics"][metric] == pytest.approx(value, rel=1e-3, abs=1e-3)


def test_only_rank_0_writes(runs):
    two = runs("run", 2)
    assert sorted(p.name for p in two.glob("model_*.pt")) == ["model_0.pt", "model_1.pt"]
    log = (two / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert "2 process(es), each with 1/2 of a batch" in log
    assert log.count("epoch 1 done") == 1


def test_a_checkpoint_of_two_processes_resumes_in_one(runs, tiny_model_dir, features_dir, no_dropout_yaml, tmp_path):
    one, two = runs("run", 1), runs("run", 2)
    shutil.copy(two / "model_0.pt", tmp_path / "from_two.pt")
    argv = run_args(tiny_model_dir, features_dir, tmp_path / "out", no_dropout_yaml, "--resume",
                    "--model_ckpt", str(tmp_path / "from_two.pt"))
    main(argv)
    assert max_weight_difference(one / "model_1.pt", tmp_path / "out" / "model_1.pt") < TOLERANCE


def test_smart_trains_under_two_processes(runs):
    # The perturbation noise is drawn per rank, so SMART runs match one process in distribution, not bit for bit.
    plain, smart = runs("run", 2), runs("run", 2, "--adv_train", "--adv_step_size", "1e-3", "--adv_noise_var", "1e-3")
    assert max_weight_difference(plain / "model_1.pt", smart / "model_1.pt") > 0
    assert all(torch.isfinite(value).all() for value in load_checkpoint(smart / "model_1.pt")["state"].values())
