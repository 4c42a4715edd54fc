"""``SANBertNetwork`` (poolers, freezing, encoder loading incl. original ``.pt`` files), the
``MTDNNModel`` update step (accumulation, non-finite losses, clipping, mixed precision, SMART,
distillation) and the LR schedules (SPEC §4, §6)."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from data_utils.errors import MTDNNInputError
from module.optimizers import Adamax
from mt_dnn.batcher import Collater, TaskDataset
from mt_dnn.encoder import load_encoder
from mt_dnn.matcher import BERT_CONFIG_KEYS, SANBertNetwork
from mt_dnn.model import MTDNNModel, NonFiniteLossError, total_updates
from mt_dnn.optim import (
    build_optimizer,
    build_scheduler,
    parameter_groups,
    schedule_factor,
)
from mt_dnn.options import AdvOptions, ModelOptions, TrainOptions
from mt_dnn.perturbation import SmartPerturbation, normalize_delta
from mt_dnn.tasks import get_task_handler

CPU = torch.device("cpu")
FEATURES = Path(__file__).resolve().parent / "data" / "features"


def no_dropout(task_def):
    return dataclasses.replace(task_def, dropout_p=0.0)


def make_model(network, defs, total: int = 10, adv: AdvOptions | None = None, **train) -> MTDNNModel:
    options = {"learning_rate": 1e-3, "warmup": 0.0, **train}
    return MTDNNModel(network, list(defs), TrainOptions(**options), adv or AdvOptions(), total, CPU)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if not torch.equal(before[name], p.detach())}


def record_step_grads(model: MTDNNModel) -> list[dict[str, torch.Tensor]]:
    """Wrap the optimizer step so each update's (clipped) gradients are kept for inspection."""
    seen: list[dict[str, torch.Tensor]] = []

    def record(optimizer, args, kwargs) -> None:
        seen.append({n: p.grad.detach().clone() for n, p in model.network.named_parameters() if p.grad is not None})

    model.optimizer.register_step_pre_hook(record)
    return seen


# ---- network ---------------------------------------------------------------------------------
def test_task_actf_builds_an_own_pooler_with_that_activation(task_defs, make_batch, build_network):
    outputs = {}
    for actf in ("tanh", "relu"):
        cola = dataclasses.replace(task_defs["cola"], actf=actf)
        network = build_network([cola]).eval()
        head = network.scoring_list[0]
        batch = make_batch("cola", 3)
        with torch.no_grad():
            outputs[actf] = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0)
            cls = network.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state[:, 0]
        act = torch.tanh if actf == "tanh" else torch.relu
        expected = head.proj(act(head.own_pooler.dense(cls)))
        torch.testing.assert_close(outputs[actf], expected)
    assert not torch.allclose(outputs["tanh"], outputs["relu"])


def test_without_actf_the_head_reads_the_encoders_pooler(task_defs, make_batch, build_network):
    network = build_network([task_defs["cola"]]).eval()
    head = network.scoring_list[0]
    assert head.own_pooler is None and network.pooler is None
    batch = make_batch("cola", 2)
    with torch.no_grad():
        pooled = network.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask).pooler_output
        torch.testing.assert_close(network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0), head.proj(pooled))


def test_encoder_without_pooler_gets_a_shared_new_one(task_defs, make_batch, tiny_model_dir):
    torch.manual_seed(0)
    encoder = BertModel(BertConfig.from_pretrained(tiny_model_dir), add_pooling_layer=False)
    opts = ModelOptions(init_checkpoint=str(tiny_model_dir), pooler_actf="relu")
    network = SANBertNetwork(encoder, [task_defs["cola"]], opts).eval()
    assert network.pooler is not None
    batch = make_batch("cola", 2)
    with torch.no_grad():
        features = network.encode(batch.input_ids, batch.token_type_ids, batch.attention_mask)
        expected = torch.relu(network.pooler.dense(features.sequence_output[:, 0]))
    torch.testing.assert_close(features.pooled_output, expected)


@pytest.mark.parametrize("vb_dropout", [True, False])
def test_vb_dropout_reaches_the_san_head(vb_dropout, task_defs, build_network):
    rte = dataclasses.replace(task_defs["rte"], enable_san=True)
    network = build_network([rte], vb_dropout=vb_dropout).train()
    dropout = network.scoring_list[0].san.dropout
    assert dropout.enable_vbp is vb_dropout
    # Variational dropout drops the same features at every token of a sequence.
    torch.manual_seed(0)
    dropped = dropout(torch.ones(2, 6, 32)) == 0
    assert bool((dropped == dropped[:, :1]).all()) is vb_dropout


def test_encoder_options_dropout_and_depth(tiny_model_dir):
    encoder = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir), bert_dropout_p=0.25, num_hidden_layers=1))
    assert encoder.config.hidden_dropout_prob == 0.25 and encoder.config.attention_probs_dropout_prob == 0.25
    assert len(encoder.encoder.layer) == 1


def test_unknown_encoder_is_an_input_error(tmp_path):
    with pytest.raises(MTDNNInputError, match="cannot load encoder"):
        load_encoder(ModelOptions(init_checkpoint=str(tmp_path / "nowhere")))


def test_update_bert_opt_freezes_the_encoder(task_defs, make_batch, build_network):
    network = build_network([task_defs["cola"]], update_bert_opt=1)
    assert not any(p.requires_grad for p in network.bert.parameters())
    model = make_model(network, [task_defs["cola"]])
    optimized = {id(p) for group in model.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in network.scoring_list.parameters()}
    before = snapshot(network)
    assert model.update(make_batch("cola", 4)) is not None
    moved = changed(before, network)
    assert moved == {"scoring_list.0.proj.weight", "scoring_list.0.proj.bias"}


def test_parameter_groups_exempt_biases_and_layer_norms(task_defs, build_network):
    network = build_network([task_defs["cola"]])
    names = {id(p): n for n, p in network.named_parameters()}
    decay, no_decay = parameter_groups(network.named_parameters(), 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "bert.embeddings.LayerNorm.weight" in no_decay_names and "scoring_list.0.proj.bias" in no_decay_names
    assert "bert.encoder.layer.0.attention.self.query.weight" in decay_names
    assert "scoring_list.0.proj.weight" in decay_names
    assert len(decay_names) + len(no_decay_names) == len(names)


@pytest.mark.parametrize(
    "name, cls",
    [("adamax", Adamax), ("adam", torch.optim.AdamW), ("adamw", torch.optim.AdamW),
     ("radam", torch.optim.RAdam), ("sgd", torch.optim.SGD)],
)
def test_optimizer_names(name, cls):
    layer = torch.nn.Linear(2, 2)
    assert type(build_optimizer(layer, TrainOptions(optimizer=name))) is cls


def test_unknown_optimizer_and_schedule_are_input_errors():
    layer = torch.nn.Linear(2, 2)
    with pytest.raises(MTDNNInputError, match="--optimizer"):
        build_optimizer(layer, TrainOptions(optimizer="lamb"))
    with pytest.raises(MTDNNInputError, match="--scheduler_type"):
        build_scheduler(build_optimizer(layer, TrainOptions()), TrainOptions(scheduler_type=7), 10)


# ---- original-format .pt checkpoints ---------------------------------------------------------
def original_checkpoint(encoder) -> dict:
    return {
        "state": {"bert." + k: v.clone() for k, v in encoder.state_dict().items()},
        "config": {key: getattr(encoder.config, key) for key in BERT_CONFIG_KEYS},
    }


def encoder_output(encoder, batch) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        out = encoder(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids, attention_mask=batch.attention_mask)
    return torch.cat([out.last_hidden_state.flatten(), out.pooler_output.flatten()])


def test_original_pt_round_trip_gives_identical_outputs(tiny_model_dir, tmp_path, make_batch):
    encoder = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir)))
    checkpoint = original_checkpoint(encoder)
    assert len(checkpoint["config"]) == 11
    checkpoint["state"]["scoring_list.0.proj.weight"] = torch.zeros(2, 32)  # head keys are not encoder keys
    path = tmp_path / "mt_dnn_tiny.pt"
    torch.save(checkpoint, path)
    loaded = load_encoder(ModelOptions(init_checkpoint=str(path)))
    batch = make_batch("rte", 3)
    assert torch.equal(encoder_output(loaded, batch), encoder_output(encoder, batch))


def test_original_pt_with_old_layer_norm_names(tiny_model_dir, tmp_path, make_batch):
    encoder = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir)))
    checkpoint = original_checkpoint(encoder)
    renamed = {}
    for key, value in checkpoint["state"].items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed[key] = value
    checkpoint["state"] = renamed
    path = tmp_path / "old_names.pt"
    torch.save(checkpoint, path)
    batch = make_batch("rte", 2)
    loaded = load_encoder(ModelOptions(init_checkpoint=str(path)))
    assert torch.equal(encoder_output(loaded, batch), encoder_output(encoder, batch))


def test_original_pt_cut_to_fewer_layers(tiny_model_dir, tmp_path, make_batch):
    encoder = load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir), num_hidden_layers=1))
    path = tmp_path / "two_layers.pt"
    torch.save(original_checkpoint(load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir)))), path)
    loaded = load_encoder(ModelOptions(init_checkpoint=str(path), num_hidden_layers=1))
    assert len(loaded.encoder.layer) == 1
    batch = make_batch("rte", 2)
    assert torch.equal(encoder_output(loaded, batch), encoder_output(encoder, batch))


@pytest.mark.parametrize(
    "problem, key",
    [
        ("missing", "encoder.layer.1.output.dense.weight"),
        ("unexpected", "encoder.layer.1.output.extra_scale"),
        ("unexpected", "encoder.layer.7.output.dense.weight"),  # a layer the config does not have
    ],
)
@pytest.mark.parametrize("num_hidden_layers", [-1, 1])
def test_original_pt_with_a_wrong_encoder_key_names_it(problem, key, num_hidden_layers, tiny_model_dir, tmp_path):
    if num_hidden_layers == 1 and ".1." in key:
        key = key.replace(".1.", ".0.")  # keep the wrong key inside the layers that remain
    checkpoint = original_checkpoint(load_encoder(ModelOptions(init_checkpoint=str(tiny_model_dir))))
    if problem == "missing":
        del checkpoint["state"]["bert." + key]
    else:
        checkpoint["state"]["bert." + key] = torch.ones(3)
    path = tmp_path / f"{problem}.pt"
    torch.save(checkpoint, path)
    with pytest.raises(MTDNNInputError) as err:
        load_encoder(ModelOptions(init_checkpoint=str(path), num_hidden_layers=num_hidden_layers))
    message = str(err.value)
    assert f"{problem} encoder key '{key}'" in message and str(path) in message and "\n" not in message


def test_a_pt_file_that_is_not_a_checkpoint_is_an_input_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a zip file")
    with pytest.raises(MTDNNInputError, match="cannot read checkpoint"):
        load_encoder(ModelOptions(init_checkpoint=str(path)))
    torch.save({"weights": {}}, path)
    with pytest.raises(MTDNNInputError, match="'state'"):
        load_encoder(ModelOptions(init_checkpoint=str(path)))


# ---- the update step -------------------------------------------------------------------------
def test_one_adamax_update_changes_every_parameter_that_got_a_gradient(task_defs, make_batch, build_network):
    rte = task_defs["rte"]
    network = build_network([rte])
    model = make_model(network, [rte])
    assert isinstance(model.optimizer, Adamax)
    before = snapshot(network)
    loss = model.update(make_batch("rte", 4))
    assert loss is not None and math.isfinite(loss) and loss > 0
    assert model.updates == 1 and model.micro_steps == 0
    moved = changed(before, network)
    assert "scoring_list.0.proj.weight" in moved and "bert.encoder.layer.1.output.dense.weight" in moved
    assert "bert.embeddings.word_embeddings.weight" in moved
    # Adamax's first step moves each weight by about lr·(1 − β1) (plus weight decay).
    delta = (network.scoring_list[0].proj.weight.detach() - before["scoring_list.0.proj.weight"]).abs().max()
    assert float(delta) == pytest.approx(1e-3 * 0.1, rel=0.05)


def test_grad_accumulation_makes_one_update_per_two_micro_batches(task_defs, make_batch, build_network):
    rte = no_dropout(task_defs["rte"])
    batch = make_batch("rte", 4, task_def=rte)
    single = make_model(build_network([rte], bert_dropout_p=0.0), [rte], global_grad_clipping=0.0)
    single_grads = record_step_grads(single)
    single.update(batch)

    network = build_network([rte], bert_dropout_p=0.0)
    model = make_model(network, [rte], grad_accumulation_step=2, global_grad_clipping=0.0)
    grads = record_step_grads(model)
    before = snapshot(network)
    model.update(batch)
    assert model.updates == 0 and model.micro_steps == 1 and not changed(before, network)
    model.update(batch)
    assert model.updates == 1 and model.micro_steps == 0 and changed(before, network)
    # Two identical micro-batches of loss/2 accumulate to the gradient of one full batch.
    assert len(grads) == 1 and grads[0].keys() == single_grads[0].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, single_grads[0][name], rtol=1e-5, atol=1e-7)
    model.update(batch)
    model.update(batch)
    assert model.updates == 2 and len(grads) == 2


def nan_criterion(logits, *args, **kwargs):
    return logits.float().sum() * float("nan")


def test_non_finite_loss_skips_the_update_and_ten_in_a_row_stop(task_defs, make_batch, build_network, caplog):
    cola = task_defs["cola"]
    network = build_network([cola])
    model = make_model(network, [cola])
    batch = make_batch("cola", 4)
    good = model.criteria[0]
    model.criteria[0] = nan_criterion
    before = snapshot(network)
    with caplog.at_level(logging.WARNING, logger="mt_dnn.model"):
        assert model.update(batch) is None
    assert "non-finite loss on cola" in caplog.text and "update skipped" in caplog.text
    assert model.bad_steps == 1 and model.updates == 0 and not changed(before, network)
    assert all(p.grad is None for p in network.parameters())

    model.criteria[0] = good  # a finite loss resets the count
    assert model.update(batch) is not None and model.bad_steps == 0 and model.updates == 1
    model.criteria[0] = nan_criterion
    for _ in range(9):
        assert model.update(batch) is None
    assert model.bad_steps == 9
    with pytest.raises(NonFiniteLossError, match="10 non-finite losses in a row"):
        model.update(batch)
    assert model.updates == 1


def test_nan_regression_label_skips_the_update(task_defs, make_batch, build_network):
    stsb = task_defs["stsb"]
    network = build_network([stsb])
    model = make_model(network, [stsb])
    batch = make_batch("stsb", 4)
    batch.labels[1] = float("nan")
    before = snapshot(network)
    assert model.update(batch) is None
    assert model.bad_steps == 1 and not changed(before, network)


def test_non_finite_micro_batch_drops_the_accumulated_gradients(task_defs, make_batch, build_network):
    rte = no_dropout(task_defs["rte"])
    batch, other = make_batch("rte", 4, task_def=rte), make_batch("rte", 4, task_def=rte, start=4)
    reference = make_model(build_network([rte], bert_dropout_p=0.0), [rte], grad_accumulation_step=2, global_grad_clipping=0.0)
    expected = record_step_grads(reference)
    reference.update(batch)
    reference.update(batch)

    model = make_model(build_network([rte], bert_dropout_p=0.0), [rte], grad_accumulation_step=2, global_grad_clipping=0.0)
    grads = record_step_grads(model)
    model.update(other)
    good = model.criteria[0]
    model.criteria[0] = nan_criterion
    model.update(batch)  # the half-accumulated gradient of `other` must not leak into the next update
    model.criteria[0] = good
    model.update(batch)
    model.update(batch)
    assert model.updates == 1
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, expected[0][name], rtol=1e-5, atol=1e-7)


def test_per_parameter_grad_clipping(task_defs, make_batch, build_network):
    rte = no_dropout(task_defs["rte"])
    batch = make_batch("rte", 4, task_def=rte)
    plain = make_model(build_network([rte], bert_dropout_p=0.0), [rte], global_grad_clipping=0.0)
    raw = record_step_grads(plain)
    plain.update(batch)
    clipped_model = make_model(build_network([rte], bert_dropout_p=0.0), [rte], grad_clipping=1e-3, global_grad_clipping=0.0)
    clipped = record_step_grads(clipped_model)
    clipped_model.update(batch)
    big = [name for name, grad in raw[0].items() if float(grad.norm()) > 1e-3]
    assert big, "the test needs gradients above the clipping threshold"
    for name, grad in clipped[0].items():
        norm = float(grad.norm())
        if name in big:
            assert norm == pytest.approx(1e-3, rel=1e-3)
            torch.testing.assert_close(grad / norm, raw[0][name] / raw[0][name].norm(), rtol=1e-4, atol=1e-6)
        else:
            torch.testing.assert_close(grad, raw[0][name])


def test_global_grad_clipping(task_defs, make_batch, build_network):
    rte = no_dropout(task_defs["rte"])
    model = make_model(build_network([rte], bert_dropout_p=0.0), [rte], global_grad_clipping=1e-2)
    grads = record_step_grads(model)
    model.update(make_batch("rte", 4, task_def=rte))
    total = math.sqrt(sum(float(g.norm()) ** 2 for g in grads[0].values()))
    assert total == pytest.approx(1e-2, rel=1e-3)


def capture_linear_dtype(network) -> list[torch.dtype]:
    dtypes: list[torch.dtype] = []
    network.scoring_list[0].proj.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    return dtypes


def test_bf16_autocast_runs_on_cpu(task_defs, make_batch, build_network):
    rte = task_defs["rte"]
    network = build_network([rte])
    model = make_model(network, [rte], bf16=True)
    dtypes = capture_linear_dtype(network)
    before = snapshot(network)
    loss = model.update(make_batch("rte", 4))
    assert loss is not None and math.isfinite(loss)
    assert dtypes == [torch.bfloat16] and changed(before, network)
    assert all(p.dtype == torch.float32 for p in network.parameters())
    logits = model.predict(make_batch("rte", 2))
    assert logits.dtype == torch.float32 and dtypes[-1] == torch.bfloat16


def cpu_fp16_autocast_supported() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            return torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float16
    except (RuntimeError, ValueError):
        return False


@pytest.mark.skipif(not cpu_fp16_autocast_supported(), reason="this torch build has no float16 autocast on CPU")
def test_fp16_autocast_with_grad_scaler_runs_on_cpu(task_defs, make_batch, build_network):
    rte = task_defs["rte"]
    network = build_network([rte])
    model = make_model(network, [rte], fp16=True)
    assert model.scaler.is_enabled()
    dtypes = capture_linear_dtype(network)
    before = snapshot(network)
    batch = make_batch("rte", 4)
    losses = [model.update(batch) for _ in range(3)]
    assert all(loss is not None and math.isfinite(loss) for loss in losses)
    assert dtypes[0] == torch.float16 and model.updates == 3
    # The scaler may skip an overflowing first step, but not every one.
    assert changed(before, network)


# ---- SMART -----------------------------------------------------------------------------------
def test_normalize_delta_per_token_and_per_sentence():
    delta = torch.tensor([[[3.0, -4.0], [0.5, 0.0]], [[-1.0, 2.0], [0.0, 0.0]]])
    eps = 1e-6
    torch.testing.assert_close(normalize_delta(delta, "inf", False, eps)[0, 0], torch.tensor([3.0, -4.0]) / (4 + eps))
    torch.testing.assert_close(normalize_delta(delta, "l2", False, eps)[0, 0], torch.tensor([3.0, -4.0]) / (5 + eps))
    torch.testing.assert_close(normalize_delta(delta, "l2", False, eps)[0, 1], torch.tensor([0.5, 0.0]) / (0.5 + eps))
    assert torch.equal(normalize_delta(delta, "l1", False, eps), delta.sign())
    sentence = normalize_delta(delta, "l2", True, eps)
    torch.testing.assert_close(sentence[0], delta[0] / (math.sqrt(9 + 16 + 0.25) + eps))
    torch.testing.assert_close(normalize_delta(delta, "inf", True, eps)[1], delta[1] / (2 + eps))


SMART_TASKS = ["cola", "rte", "stsb", "qnnli", "ner", "squad"]


@pytest.mark.parametrize("name", SMART_TASKS)
def test_smart_adds_a_finite_positive_term(name, task_defs, make_batch, build_network):
    task_def = no_dropout(task_defs[name])
    batch = make_batch(name, 4, task_def=task_def)
    losses = {}
    for adv_train in (False, True):
        network = build_network([task_def], bert_dropout_p=0.0)
        adv = AdvOptions(adv_train=adv_train, adv_step_size=1e-3, adv_noise_var=1e-3)
        model = make_model(network, [task_def], adv=adv)
        torch.manual_seed(1)
        losses[adv_train] = model.update(batch)
    term = losses[True] - losses[False]
    assert math.isfinite(term) and term > 1e-7


@pytest.mark.parametrize("p_norm", ["inf", "l2", "l1"])
@pytest.mark.parametrize("norm_level", [0, 1])
def test_smart_norms_all_run_and_differ(p_norm, norm_level, task_defs, make_batch, build_network):
    cola = no_dropout(task_defs["cola"])
    network = build_network([cola], bert_dropout_p=0.0)
    model = make_model(network, [cola], adv=AdvOptions(adv_train=True, adv_p_norm=p_norm, adv_norm_level=norm_level, adv_k=2))
    batch = make_batch("cola", 4, task_def=cola)
    logits, embedding = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0, return_embedding=True)
    torch.manual_seed(3)
    term = model.smart.adversarial_loss(network, batch, 0, logits, embedding, get_task_handler(cola.task_type), model.adv_criteria[0])
    assert term is not None and torch.isfinite(term) and term.item() > 0
    term.backward()
    assert network.bert.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0


def test_smart_perturbation_sizes_follow_the_norm(task_defs, make_batch, build_network):
    # l1 (sign) moves every embedding coordinate by 1, inf at most 1 per token: sign perturbs more.
    cola = no_dropout(task_defs["cola"])
    network = build_network([cola], bert_dropout_p=0.0)
    batch = make_batch("cola", 4, task_def=cola)
    logits, embedding = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0, return_embedding=True)
    terms = {}
    for p_norm in ("inf", "l1"):
        model = make_model(network, [cola], adv=AdvOptions(adv_train=True, adv_p_norm=p_norm))
        torch.manual_seed(3)
        term = model.smart.adversarial_loss(network, batch, 0, logits, embedding, get_task_handler(cola.task_type), model.adv_criteria[0])
        terms[p_norm] = term.item()
    assert terms["l1"] > terms["inf"] > 0


def test_smart_rejects_an_unknown_norm():
    with pytest.raises(MTDNNInputError, match="adv_p_norm"):
        SmartPerturbation(AdvOptions(adv_train=True, adv_p_norm="l3"))


# ---- knowledge distillation ------------------------------------------------------------------
def test_kd_with_soft_labels_adds_the_distillation_loss(task_defs, build_network, tmp_path):
    cola = no_dropout(task_defs["cola"])
    soft = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7]]
    source = [json.loads(line) for line in (FEATURES / "cola_train.json").read_text().splitlines()][:4]
    path = tmp_path / "cola_train.json"
    path.write_text("".join(json.dumps({**row, "softlabel": s}) + "\n" for row, s in zip(source, soft)))
    dataset = TaskDataset(path, cola, "cola")
    batch = Collater(0, 512)([dataset[i] for i in range(4)])
    torch.testing.assert_close(batch.soft_labels, torch.tensor(soft))

    losses, logits = {}, {}
    for mkd_opt in (0, 1):
        network = build_network([cola], bert_dropout_p=0.0)
        model = make_model(network, [cola], mkd_opt=mkd_opt)
        network.scoring_list[0].proj.register_forward_hook(lambda m, i, o, k=mkd_opt: logits.__setitem__(k, o.detach()))
        losses[mkd_opt] = model.update(batch)
    torch.testing.assert_close(logits[0], logits[1])
    kd = F.mse_loss(torch.softmax(logits[1], -1), torch.tensor(soft))
    assert losses[1] - losses[0] == pytest.approx(float(kd), rel=1e-4)
    assert float(kd) > 1e-3


# ---- schedules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, step, expected",
    [
        (0, 0, 0.0), (0, 5, 0.5), (0, 10, 1.0), (0, 55, 0.5), (0, 100, 0.0), (0, 120, 0.0),
        (1, 5, 0.5), (1, 10, 1.0), (1, 32.5, 0.5 * (1 + math.cos(math.pi / 4))), (1, 55, 0.5), (1, 100, 0.0),
        (2, 5, 0.5), (2, 10, 1.0), (2, 55, 1.0), (2, 100, 1.0),
        (3, 5, 0.5), (3, 10, 1.0), (3, 55, 0.5 * (1 - 2e-3) + 2e-3), (3, 100, 2e-3),
    ],
)
def test_schedule_factor_warmup_then_decay(kind, step, expected):
    # 100 updates, 10 % warmup, base lr 5e-5 (polynomial ends at 1e-7 = 0.002 × base).
    assert schedule_factor(step, 100, 0.1, kind, 5e-5) == pytest.approx(expected, abs=1e-12)


def test_scheduler_steps_the_optimizer_learning_rate(task_defs, make_batch, build_network):
    cola = task_defs["cola"]
    model = make_model(build_network([cola]), [cola], total=20, warmup=0.1, learning_rate=1e-3)
    batch = make_batch("cola", 2)
    seen = [model.learning_rate]
    for _ in range(4):
        model.update(batch)
        seen.append(model.learning_rate)
    # Warmup over 2 updates, then linear decay over the remaining 18.
    assert seen == pytest.approx([0.0, 5e-4, 1e-3, 1e-3 * 17 / 18, 1e-3 * 16 / 18])


def test_total_updates_counts_real_optimizer_steps():
    assert total_updates(30, 1) == 30
    assert total_updates(15, 2) == 7  # micro-steps carry across epochs: 3 epochs of 5 batches
    assert total_updates(0, 1) == 1


def test_training_state_round_trip_continues_identically(task_defs, make_batch, build_network):
    rte = no_dropout(task_defs["rte"])
    batch = make_batch("rte", 4, task_def=rte)
    first = make_model(build_network([rte], bert_dropout_p=0.0), [rte], total=6, warmup=0.5)
    for _ in range(2):
        first.update(batch)
    buffer = io.BytesIO()  # through bytes, as train.py saves it: the live state shares tensors
    torch.save(first.training_state(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    second = make_model(build_network([rte], seed=5, bert_dropout_p=0.0), [rte], total=6, warmup=0.5)
    second.load_training_state(state)
    assert second.updates == 2 and second.learning_rate == first.learning_rate
    first.update(batch)
    second.update(batch)
    for (name, a), b in zip(first.network.state_dict().items(), second.network.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("init_ratio", [1.0, 5.0])
def test_new_head_weights_follow_init_ratio(task_defs, build_network, init_ratio):
    network = build_network([task_defs["mnli"]], init_ratio=init_ratio)
    proj = network.scoring_list[0].proj
    assert torch.count_nonzero(proj.bias) == 0
    # 32 × 3 weights drawn from N(0, 0.02·r): the sample std lands near 0.02·r.
    assert proj.weight.std().item() == pytest.approx(0.02 * init_ratio, rel=0.3)
    pretrained = network.bert.encoder.layer[0].output.dense.weight
    assert pretrained.std().item() != pytest.approx(0.02 * 5.0, rel=0.3)  # the encoder keeps its own weights
