"""Performance levers of train.py: --precision, --attn_implementation, --gradient_checkpointing,
token-budget batches, --threads — each reaches what it claims to change (speed is measured in bench/)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from test_train import train_args

import mt_dnn.options as options_module
from data_utils.errors import MTDNNInputError
from mt_dnn.encoder import load_encoder
from mt_dnn.options import ModelOptions, resolve_pad_to_multiple_of, resolve_precision
from train import build_parser, main, options_from_args


def parse(*flags: str):
    return options_from_args(build_parser().parse_args(["--init_checkpoint", "x", *flags]))


@pytest.mark.parametrize("native, expected", [(True, (False, True)), (False, (False, False))])
def test_precision_auto_follows_the_hardware(monkeypatch, native, expected):
    monkeypatch.setattr(options_module, "native_bf16", lambda device_type: native)
    train_opts = parse()[3]
    assert (train_opts.fp16, train_opts.bf16) == expected
    assert resolve_precision("fp32", "cpu") == "fp32"


@pytest.mark.parametrize(
    "flags, expected",
    [(("--precision", "fp32"), (False, False)), (("--bf16",), (False, True)), (("--fp16",), (True, False)),
     (("--precision", "bf16", "--bf16"), (False, True))],
)
def test_explicit_precision_wins(flags, expected):
    train_opts = parse(*flags)[3]
    assert (train_opts.fp16, train_opts.bf16) == expected


@pytest.mark.parametrize("native, expected", [(True, 8), (False, 1)])
def test_pad_to_multiple_of_auto_is_8_under_reduced_precision_on_a_cpu(monkeypatch, native, expected):
    monkeypatch.setattr(options_module, "native_bf16", lambda device_type: native)
    assert build_parser().parse_args([]).pad_to_multiple_of == "auto"
    assert parse()[1].pad_to_multiple_of == expected  # bf16 where the CPU runs it natively, else fp32
    assert parse("--precision", "fp32")[1].pad_to_multiple_of == 1
    assert parse("--fp16")[1].pad_to_multiple_of == 8
    assert parse("--pad_to_multiple_of", "1")[1].pad_to_multiple_of == 1  # a number wins
    assert parse("--pad_to_multiple_of", "16", "--precision", "fp32")[1].pad_to_multiple_of == 16
    assert parse()[0].cpu_primitive_cache == 512  # room for the kernels of every padded length


def test_pad_to_multiple_of_auto_on_a_gpu_and_bad_values():
    assert resolve_pad_to_multiple_of("auto", "cuda", "bf16") == 1
    assert resolve_pad_to_multiple_of("auto", "cpu", "fp32") == 1
    assert resolve_pad_to_multiple_of(4, "cpu", "bf16") == 4
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--pad_to_multiple_of", "eight"])
    with pytest.raises(MTDNNInputError, match="--pad_to_multiple_of must be at least 1, got 0"):
        parse("--pad_to_multiple_of", "0")


def test_contradicting_precision_flags_are_refused():
    with pytest.raises(MTDNNInputError, match="--fp16 contradicts --precision bf16"):
        parse("--fp16", "--precision", "bf16")


def test_attention_kernel_and_checkpointing_reach_the_encoder(tiny_model_dir: Path):
    eager = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir), attn_implementation="eager"))
    sdpa = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir), gradient_checkpointing=True))
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    checkpointing = lambda m: getattr(m, "is_activation_checkpointing", None) or m.is_gradient_checkpointing  # noqa: E731
    assert checkpointing(sdpa) and not checkpointing(eager)
    ids = torch.tensor([[101, 2023, 2003, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    sdpa.train()
    out = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
    # Recomputed in the backward pass, gradients still reach the embeddings. (Not a plain sum: the last LayerNorm
    # makes the sum over hidden units constant, so its gradient is zero up to rounding.)
    out[:, :4].pow(2).sum().backward()
    assert sdpa.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    eager.eval()
    sdpa.eval()
    with torch.no_grad():
        a = eager(input_ids=ids, attention_mask=mask).last_hidden_state[:, :4]
        b = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state[:, :4]
    assert torch.allclose(a, b, atol=1e-5)


def test_token_budget_run_schedules_its_real_number_of_updates(tiny_model_dir, features_dir, tmp_path):
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        main(train_args(tiny_model_dir, features_dir, out, "--batch_size", "32", "--max_tokens_per_batch", "96",
                        "--threads", "1", "--precision", "fp32"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["max_tokens_per_batch"] == 96 and config["data"]["group_by_length"] is True
    log = (out / "mt-dnn-train.log").read_text(encoding="utf-8")
    total = int(re.search(r"(\d+) updates in all", log).group(1))
    per_epoch = [int(n) for n in re.findall(r"INFO epoch \d+: (\d+) batches", log)]
    # 2 tasks at --batch_size 32 would be 2 batches an epoch: the budget cut more, and the schedule counts them.
    assert len(per_epoch) == 2 and min(per_epoch) > 2 and total == sum(per_epoch)
    assert (out / "rte_dev_scores_epoch_1.json").is_file()


def test_memory_probe_runs_each_tasks_largest_batch_once_and_changes_no_number(tiny_model_dir, features_dir,
                                                                                tmp_path, monkeypatch):
    from test_train import assert_same_weights

    import train as train_module

    flags = ("--precision", "fp32", "--adv_train", "--epochs", "1")
    probed: list[tuple[str, int, int]] = []
    real_probe = train_module.MTDNNModel.probe_memory

    def spy(model, batch):
        probed.append((batch.task_def.name, batch.batch_size, model.updates))
        real_probe(model, batch)

    monkeypatch.setattr(train_module.MTDNNModel, "probe_memory", spy)
    main(train_args(tiny_model_dir, features_dir, tmp_path / "probed", *flags))
    assert [(name, updates) for name, _, updates in probed] == [("rte", 1), ("stsb", 1)]  # once, after update 1
    assert all(rows == 4 for _, rows, _ in probed)
    monkeypatch.setattr(train_module, "probe_memory", lambda *args: None)
    main(train_args(tiny_model_dir, features_dir, tmp_path / "plain", *flags))
    assert_same_weights(tmp_path / "probed" / "model_0.pt", tmp_path / "plain" / "model_0.pt")


def test_cpu_bf16_runs_each_batch_shape_of_the_epoch_once_after_update_1_and_changes_no_number(
        tiny_model_dir, features_dir, tmp_path, monkeypatch):
    from test_train import assert_same_weights

    import train as train_module

    flags = ("--precision", "bf16", "--pad_to_multiple_of", "8", "--epochs", "1", "--batch_size", "3")
    probed: list[tuple[tuple[int, int], int]] = []
    trained: list[tuple[int, int]] = []
    real_probe, real_update = train_module.MTDNNModel.probe_memory, train_module.MTDNNModel.update

    def probe_spy(model, batch):
        probed.append((tuple(batch.input_ids.shape), model.updates))
        real_probe(model, batch)

    def update_spy(model, batch):
        trained.append(tuple(batch.input_ids.shape))
        return real_update(model, batch)

    monkeypatch.setattr(train_module.MTDNNModel, "probe_memory", probe_spy)
    monkeypatch.setattr(train_module.MTDNNModel, "update", update_spy)
    main(train_args(tiny_model_dir, features_dir, tmp_path / "warmed", *flags))
    log = (tmp_path / "warmed" / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert all(updates == 1 for _, updates in probed)
    warmed = [shape for shape, _ in probed[2:]]  # after each task's largest batch
    assert sorted(warmed) == sorted(set(trained)) and len(set(trained)) > 2  # every shape of the epoch, once each
    assert all(length % 8 == 0 for _, length in trained)
    assert f"ran each of the first epoch's {len(warmed)} batch shapes once" in log
    assert "bf16 on cpu; training batches padded to a multiple of 8 tokens" in log
    monkeypatch.setattr(train_module, "warm_batch_shapes", lambda *args: 0)
    main(train_args(tiny_model_dir, features_dir, tmp_path / "plain", *flags))
    assert_same_weights(tmp_path / "warmed" / "model_0.pt", tmp_path / "plain" / "model_0.pt")


def test_warming_batch_shapes_stops_above_its_limit(features_dir, task_defs):
    from mt_dnn.batcher import Collater, TaskDataset
    from mt_dnn.run_setup import warm_batch_shapes
    from mt_dnn.sampler import MultiTaskBatchSampler

    class Counting:  # counts the batches it is asked to run
        runs = 0

        def probe_memory(self, batch):
            self.runs += 1

    sets = [TaskDataset(Path(features_dir) / "rte_train.json", task_defs["rte"], "rte", 128, is_train=True)]
    sampler, collate, model = MultiTaskBatchSampler(sets, 2), Collater(0, 128), Counting()
    shapes = {(len(indices), collate.padded_length(max(sets[0].lengths()[i] for i in indices)))
              for _, indices in sampler.epoch_plan(0)}
    assert warm_batch_shapes(model, sampler, sets, collate) == len(shapes) == model.runs
    model.runs = 0
    assert warm_batch_shapes(model, sampler, sets, collate, limit=len(shapes) - 1) == 0 and model.runs == 0


def saved_for_backward_bytes(encoder: torch.nn.Module, attention_mask: torch.Tensor) -> int:
    """Bytes of the distinct tensors the encoder's forward keeps for its backward, under bfloat16 autocast."""
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    ids = torch.full(attention_mask.shape, 5)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), torch.autocast("cpu", torch.bfloat16):
        encoder(input_ids=ids, attention_mask=attention_mask)
    return sum(saved.values())


def test_the_memory_probe_runs_a_padded_batch_which_keeps_more_than_an_unpadded_one(tiny_model_dir):
    from mt_dnn.run_setup import with_padding

    lengths = [128, 40, 128, 128, 90, 128, 7]
    assert with_padding([(2, 0), (2, 2), (2, 3)], lengths) == [(2, 0), (2, 2), (2, 4)]  # 90: longest of the shorter
    assert with_padding([(2, 0), (2, 1)], lengths) == [(2, 0), (2, 1)]  # padded already
    assert with_padding([(2, 0)], lengths) == [(2, 0)]  # one example has no padding
    assert with_padding([(0, 0), (0, 1)], [5, 5]) == [(0, 0), (0, 1)]  # nothing shorter
    # Why: under bfloat16 autocast the same shape with padding keeps more for the backward (one float32
    # batch × heads × length² tensor per layer: the masked attention scores).
    encoder = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir), attn_implementation="eager")).train()
    full = torch.ones(4, 32, dtype=torch.long)
    padded = full.clone()
    padded[-1, -1] = 0
    assert saved_for_backward_bytes(encoder, padded) > saved_for_backward_bytes(encoder, full)


def test_a_batch_that_does_not_fit_fails_at_update_one_with_one_line(tiny_model_dir, features_dir, tmp_path,
                                                                     monkeypatch):
    import train as train_module

    def out_of_memory(model, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module.MTDNNModel, "probe_memory", out_of_memory)
    with pytest.raises(MTDNNInputError, match=r"out of memory on rte's largest batch \(4 rows of up to \d+ tokens\): "
                                              r"lower --batch_size") as caught:
        main(train_args(tiny_model_dir, features_dir, tmp_path / "run", "--epochs", "1"))
    assert Path(caught.value.file).name == "rte_train.json"
    assert not (tmp_path / "run" / "model_0.pt").exists()


def test_compiled_optimizer_kernel_trains_to_the_eager_weights(tiny_model_dir, features_dir, tmp_path):
    """``--optimizer_kernel compiled`` through train.py: recorded in config.json, logged, and the weights of two
    epochs agree with the eager passes' to rounding (the kernel fuses a multiply and an add)."""
    from test_train import load_checkpoint

    runs = {}
    for kernel in ("eager", "compiled"):
        out = tmp_path / kernel
        main(train_args(tiny_model_dir, features_dir, out, "--precision", "fp32", "--optimizer_kernel", kernel))
        assert json.loads((out / "config.json").read_text())["train"]["optimizer_kernel"] == kernel
        runs[kernel] = load_checkpoint(out / "model_1.pt")["state"]
    log = (tmp_path / "compiled" / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert "Adamax: compiled update kernel ready" in log
    assert "compiled update kernel" not in (tmp_path / "eager" / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert runs["eager"].keys() == runs["compiled"].keys()
    for key, value in runs["eager"].items():
        torch.testing.assert_close(runs["compiled"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    # Not a trivial agreement: the kernel took different roundings, so some weights differ in their last bits.
    assert any(not torch.equal(runs["compiled"][key], value) for key, value in runs["eager"].items())


def test_compiled_optimizer_kernel_is_refused_on_a_gpu_and_auto_is_the_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = build_parser().parse_args(["--optimizer_kernel", "compiled", "--cuda", "--precision", "fp32"])
    with pytest.raises(MTDNNInputError, match="--optimizer_kernel compiled runs on a CPU only"):
        options_from_args(args)
    assert build_parser().parse_args([]).optimizer_kernel == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--optimizer_kernel", "fused"])
