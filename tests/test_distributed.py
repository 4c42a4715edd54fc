"""``torchrun`` data parallelism on CPU (gloo): two processes with global batch B end where one
process with batch B ends (SMART and gradient accumulation included), evaluation is sharded and
gathered back in order, a checkpoint written by two processes resumes in one, FSDP2 (``--fsdp``)
matches the replicated run, and ``--multi_gpu_on`` wraps the network in DataParallel only when one
process sees several GPUs."""
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
from test_train import GLUE_YAML, REPO, load_checkpoint, resume_state, train_args

from data_utils.errors import MTDNNInputError
from mt_dnn.distributed import DistContext, use_data_parallel
from mt_dnn.model import MTDNNModel
from mt_dnn.options import AdvOptions, TrainOptions
from train import main

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
    # fp32: bf16 autocast (--precision auto on CPUs with native bf16) rounds differently per batch shape.
    argv = train_args(model, data, out, "--bert_dropout_p", "0", "--dropout_p", "0", "--precision", "fp32", *extra)
    argv[argv.index("--task_def") + 1] = str(yaml_path)
    return argv


# train.py's main, keeping a copy of last.pt at every save (test_train.keeping_resume_states) to resume from.
ENTRY = """import sys
from test_train import keeping_resume_states
from train import main
with keeping_resume_states():
    main(sys.argv[1:])
"""


def torchrun(argv: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "HF_HUB_OFFLINE": "1"}
    entry = Path(argv[argv.index("--output_dir") + 1]).parent / "torchrun_entry.py"
    entry.write_text(ENTRY, encoding="utf-8")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(entry), *argv,
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def max_weight_difference(a: Path, b: Path) -> float:
    state_a, state_b = load_checkpoint(a)["state"], load_checkpoint(b)["state"]
    assert state_a.keys() == state_b.keys()
    return max((state_a[key].double() - state_b[key].double()).abs().max().item() for key in state_a)


def max_optimizer_difference(a: Path, b: Path) -> float:
    """Largest difference between the optimizer states of two resumable checkpoints (same layout required)."""
    state_a, state_b = load_checkpoint(a)["optimizer"], load_checkpoint(b)["optimizer"]
    assert [g["params"] for g in state_a["param_groups"]] == [g["params"] for g in state_b["param_groups"]]
    assert state_a["state"].keys() == state_b["state"].keys()
    worst = 0.0
    for index, slots in state_a["state"].items():
        assert slots.keys() == state_b["state"][index].keys()
        for name, value in slots.items():
            other = state_b["state"][index][name]
            worst = max(worst, (torch.as_tensor(value).double() - torch.as_tensor(other).double()).abs().max().item())
    return worst


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


ACCUMULATION = ("--grad_accumulation_step", "2")  # 5 batches an epoch: epoch 0 ends with an update pending
SMART = ("--adv_train", "--adv_step_size", "1e-3", "--adv_noise_var", "1e-3")


@pytest.mark.parametrize("flags", [(), ACCUMULATION, SMART], ids=["plain", "accumulation", "smart"])
def test_two_processes_end_where_one_process_ends(flags, runs):
    one, two = runs("run", 1, *flags), runs("run", 2, *flags)
    for epoch in (0, 1):
        assert max_weight_difference(one / f"model_{epoch}.pt", two / f"model_{epoch}.pt") < TOLERANCE
    assert load_checkpoint(two / "model_1.pt")["updates"] == load_checkpoint(one / "model_1.pt")["updates"]
    assert max_optimizer_difference(one / "last.pt", two / "last.pt") < TOLERANCE


def test_smart_noise_is_that_of_one_process(runs):
    # Exact because each example's noise is drawn as in one process; the term itself does change training.
    plain, smart = runs("run", 2), runs("run", 2, *SMART)
    # (other noise moves these weights by ~6e-5, SMART itself by ~3e-5: both far beyond TOLERANCE)
    assert max_weight_difference(plain / "model_1.pt", smart / "model_1.pt") > 10 * TOLERANCE


def test_gradients_are_communicated_once_per_update(build_network, task_defs, make_batch, monkeypatch):
    """Accumulating micro-steps communicate nothing (no ``no_sync`` needed): one all-reduce per update."""
    import mt_dnn.model as model_module

    calls: list[int] = []
    monkeypatch.setattr(model_module, "broadcast_parameters", lambda module: None)
    monkeypatch.setattr(model_module, "all_finite", lambda loss, ctx: True)
    monkeypatch.setattr(model_module, "all_reduce_gradients", lambda params, world_size: calls.append(model.micro_steps))
    rte = task_defs["rte"]
    ctx = DistContext(rank=0, world_size=2)
    model = MTDNNModel(build_network([rte]), [rte], TrainOptions(grad_accumulation_step=3), AdvOptions(), 2, torch.device("cpu"), ctx)
    for step in range(6):
        model.update(make_batch("rte", n=2, start=2 * step))
    assert calls == [3, 3] and model.updates == 2


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
    assert sorted(p.name for p in two.glob("*.pt")) == ["last.pt", "model_0.pt", "model_1.pt"]
    log = (two / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert "2 process(es), each with 1/2 of a batch" in log
    assert log.count("epoch 1 done") == 1


@pytest.mark.parametrize(
    "written_by", [("plain", ()), ("accumulation", ACCUMULATION), ("fsdp", ("--fsdp",))], ids=lambda w: w[0]
)
def test_a_checkpoint_of_two_processes_resumes_in_one(written_by, runs, tiny_model_dir, features_dir, no_dropout_yaml, tmp_path):
    # With accumulation, epoch 0 ends with an update pending: the checkpoint holds the ranks' mean gradients.
    flags = tuple(flag for flag in written_by[1] if flag != "--fsdp")
    one, two = runs("run", 1, *flags), runs("run", 2, *written_by[1])
    shutil.copy(resume_state(two, "model_0.pt"), tmp_path / "from_two.pt")  # last.pt as it was after epoch 0
    out = tmp_path / "out"
    main(run_args(tiny_model_dir, features_dir, out, no_dropout_yaml, *flags, "--resume", "--model_ckpt", str(tmp_path / "from_two.pt")))
    assert max_weight_difference(one / "model_1.pt", out / "model_1.pt") < (1e-5 if "--fsdp" in written_by[1] else TOLERANCE)
    assert load_checkpoint(out / "last.pt")["updates"] == load_checkpoint(one / "last.pt")["updates"]


def test_fsdp_matches_the_replicated_run(runs):
    """FSDP2 over two gloo processes: each layer and the root sharded, whole checkpoints in the one-process layout."""
    replicated, sharded = runs("run", 2), runs("run", 2, "--fsdp")
    for epoch in (0, 1):
        assert max_weight_difference(replicated / f"model_{epoch}.pt", sharded / f"model_{epoch}.pt") < 1e-5
    assert max_optimizer_difference(replicated / "last.pt", sharded / "last.pt") < 1e-5
    assert "fully_shard" not in "".join(load_checkpoint(sharded / "model_1.pt")["state"])


def test_fsdp_resumes_under_fsdp(runs, tiny_model_dir, features_dir, no_dropout_yaml, tmp_path):
    replicated, sharded = runs("run", 2), runs("run", 2, "--fsdp")
    shutil.copy(resume_state(sharded, "model_0.pt"), tmp_path / "from_fsdp.pt")
    out = tmp_path / "out"
    torchrun(run_args(tiny_model_dir, features_dir, out, no_dropout_yaml, "--fsdp", "--resume", "--model_ckpt", str(tmp_path / "from_fsdp.pt")))
    assert max_weight_difference(replicated / "model_1.pt", out / "model_1.pt") < 1e-5
    assert max_optimizer_difference(replicated / "last.pt", out / "last.pt") < 1e-5


def test_fsdp_needs_torchrun(tiny_model_dir, features_dir, no_dropout_yaml, tmp_path):
    with pytest.raises(MTDNNInputError, match="^--fsdp shards the network across processes: start the run with torchrun"):
        main(run_args(tiny_model_dir, features_dir, tmp_path, no_dropout_yaml, "--fsdp"))


# ---- --multi_gpu_on (DataParallel in one process) ----------------------------------------------------


def test_multi_gpu_on_wraps_only_with_several_gpus(monkeypatch):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert use_data_parallel(True, cuda, DistContext())
    assert not use_data_parallel(False, cuda, DistContext())
    assert not use_data_parallel(True, cpu, DistContext())  # --no-cuda: the GPUs are not used
    assert not use_data_parallel(True, cuda, DistContext(rank=0, world_size=2))  # torchrun: one GPU per process
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert not use_data_parallel(True, cuda, DistContext())


def test_data_parallel_checkpoints_hold_unwrapped_weights(build_network, task_defs, make_batch):
    rte = task_defs["rte"]
    network = build_network([rte])
    keys = set(network.state_dict())
    model = MTDNNModel(network, [rte], TrainOptions(), AdvOptions(adv_train=True), 2, torch.device("cpu"), DistContext(data_parallel=True))
    assert isinstance(model.forward_network, torch.nn.DataParallel) and model.network is network
    model.update(make_batch("rte"))  # SMART's extra forwards go through the wrapper too
    assert model.updates == 1 and set(model.training_state()["state"]) == keys


def test_multi_gpu_on_without_gpus_warns_and_trains_as_without(runs, tiny_model_dir, features_dir, no_dropout_yaml, tmp_path):
    out = tmp_path / "out"
    main(run_args(tiny_model_dir, features_dir, out, no_dropout_yaml, "--multi_gpu_on"))
    assert max_weight_difference(runs("run", 1) / "model_1.pt", out / "model_1.pt") == 0
    assert "--multi_gpu_on has no effect: this run sees 0 GPU(s)" in (out / "mt-dnn-train.log").read_text(encoding="utf-8")
