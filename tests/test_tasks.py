"""Every task type through ``SANBertNetwork`` and its handler: head shapes, loss values,
gradients, and decoding into predictions/scores (SPEC §4, §7)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TaskType
from mt_dnn.batcher import Batch
from mt_dnn.loss import build_criterion
from mt_dnn.tasks import SANOptions, get_task_handler
from mt_dnn.tasks.sentence_head import SANHead


def run_task(network, batch: Batch, task_id: int = 0):
    """Logits and loss of one batch through the network and its task's handler."""
    handler = get_task_handler(batch.task_def.task_type)
    logits = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, task_id)
    loss = handler.compute_loss(build_criterion(batch.task_def.loss), logits, batch)
    return handler, logits, loss


def grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.norm()) for p in module.parameters() if p.grad is not None)


def assert_trains_head_and_encoder(network, loss: torch.Tensor, task_id: int = 0) -> None:
    loss.backward()
    assert grad_norm(network.scoring_list[task_id]) > 0
    assert network.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert network.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


# ---- sentence-level task types -------------------------------------------------------------
@pytest.mark.parametrize("name", ["cola", "rte"])
def test_classification_loss_is_cross_entropy_and_trains_everything(name, task_defs, make_batch, build_network):
    network = build_network([task_defs[name]])
    batch = make_batch(name, 4)
    _, logits, loss = run_task(network, batch)
    assert logits.shape == (4, 2)
    assert batch.labels.dtype == torch.long
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.labels))
    assert_trains_head_and_encoder(network, loss)


def test_pair_classification_uses_token_types(task_defs, make_batch, build_network):
    network = build_network([task_defs["rte"]]).eval()
    batch = make_batch("rte", 3)
    with torch.no_grad():
        typed = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0)
        untyped = network(batch.input_ids, torch.zeros_like(batch.token_type_ids), batch.attention_mask, 0)
    assert not torch.allclose(typed, untyped)


def test_regression_loss_is_mse_on_flat_scores(task_defs, make_batch, build_network):
    network = build_network([task_defs["stsb"]])
    batch = make_batch("stsb", 4)
    _, logits, loss = run_task(network, batch)
    assert logits.shape == (4, 1)
    assert batch.labels.dtype == torch.float and batch.labels.tolist() == pytest.approx([5.0, 3.8, 3.8, 2.6])
    torch.testing.assert_close(loss, ((logits.view(-1) - batch.labels) ** 2).mean())
    assert_trains_head_and_encoder(network, loss)


def test_ranking_scores_every_hypothesis_and_softmaxes_per_sample(task_defs, make_batch, build_network):
    network = build_network([task_defs["qnnli"]])
    batch = make_batch("qnnli", 3)
    assert batch.pairwise_size == 2 and batch.input_ids.size(0) == 6 and batch.labels.shape == (3,)
    _, logits, loss = run_task(network, batch)
    assert logits.shape == (6, 1)
    torch.testing.assert_close(loss, F.cross_entropy(logits.view(3, 2), batch.labels))
    assert_trains_head_and_encoder(network, loss)


def test_ranking_rows_are_sample_major(task_defs, make_batch, build_network):
    # Row 2h+j of the batch is hypothesis j of sample h: its score must equal a one-sample batch's.
    network = build_network([task_defs["qnnli"]]).eval()
    batch, second = make_batch("qnnli", 2), make_batch("qnnli", 1, start=1)
    with torch.no_grad():
        both = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0)
        alone = network(second.input_ids, second.token_type_ids, second.attention_mask, 0)
    torch.testing.assert_close(both[2:4], alone, atol=1e-5, rtol=1e-5)


# ---- sequence labeling ----------------------------------------------------------------------
def test_sequence_labeling_ignores_pseudo_tags_and_padding(task_defs, make_batch, build_network):
    ner = task_defs["ner"]
    network = build_network([ner])
    batch = make_batch("ner", 4)
    handler, logits, loss = run_task(network, batch)
    assert logits.shape == (4, batch.input_ids.size(1), ner.n_class)
    pseudo = torch.tensor([ner.labels.index(t) for t in ("X", "CLS", "SEP")])
    labels = batch.labels
    ignored = torch.isin(labels, pseudo) | (labels == -1)
    assert int((labels == ner.labels.index("X")).sum()) > 0 and int((labels == -1).sum()) > 0
    kept = ~ignored
    torch.testing.assert_close(loss, F.cross_entropy(logits[kept], labels[kept]))

    noise = torch.randn_like(logits) * 10
    at_ignored = logits.detach() + noise * ignored.unsqueeze(-1)
    same = handler.compute_loss(build_criterion(ner.loss), at_ignored, batch)
    assert float(same) == pytest.approx(loss.item(), abs=1e-6)
    at_word = logits.detach() + noise * kept.unsqueeze(-1)
    changed = handler.compute_loss(build_criterion(ner.loss), at_word, batch)
    assert abs(changed.item() - loss.item()) > 1e-3
    assert_trains_head_and_encoder(network, loss)


def test_sequence_labeling_decode_drops_pseudo_tags(task_defs, make_batch):
    ner = task_defs["ner"]
    batch = make_batch("ner", 2, start=1)  # "Peter Blackburn" and "BRUSSELS 1996-08-22" (which has X tags)
    handler = get_task_handler(ner.task_type)
    n_rows, length = batch.labels.shape
    logits = torch.zeros(n_rows, length, ner.n_class)
    # Sample 0: predict B-PER, then X at the second word (a pseudo tag at a real word reads as O).
    logits[0, 1, ner.labels.index("B-PER")] = 1
    logits[0, 2, ner.labels.index("X")] = 1
    logits[1, :, ner.labels.index("B-LOC")] = 1
    decoded = handler.decode(logits, batch)
    assert decoded.uids == ["1", "2"]
    assert decoded.golds == [["B-PER", "I-PER"], ["B-LOC", "O"]]
    assert decoded.predictions == [["B-PER", "O"], ["B-LOC", "B-LOC"]]


# ---- spans ----------------------------------------------------------------------------------
def test_span_head_masks_padding_and_loss_is_half_sum(task_defs, make_batch, build_network):
    squad = task_defs["squad"]
    network = build_network([squad])
    batch = make_batch("squad", 1, pad_to=24)
    assert batch.labels.tolist() == [[12, 14, 0]]
    handler, logits, loss = run_task(network, batch)
    assert logits.shape == (1, 24, 2)
    n_real = int(batch.attention_mask.sum())
    assert n_real == 19 and bool((logits[0, n_real:] == -1e4).all())
    expected = 0.5 * (
        F.cross_entropy(logits[..., 0], batch.labels[:, 0]) + F.cross_entropy(logits[..., 1], batch.labels[:, 1])
    )
    torch.testing.assert_close(loss, expected)
    assert_trains_head_and_encoder(network, loss)


CONTEXT = "abc def ghi jkl"


def span_batch(task_def, windows: list[tuple[str, list, int]]) -> Batch:
    """A decoding batch of question windows ``(uid, offsets, null_index)`` over ``CONTEXT``."""
    n, length = len(windows), 5
    samples = [
        {"uid": uid, "offset_mapping": offsets, "null_ans_index": null, "context": CONTEXT, "answer": ["ghi jkl"]}
        for uid, offsets, null in windows
    ]
    zeros = torch.zeros(n, length, dtype=torch.long)
    return Batch("squad", task_def, zeros, zeros, torch.ones_like(zeros), torch.zeros(n, 3, dtype=torch.long),
                 [w[0] for w in windows], samples=samples)


@pytest.mark.parametrize("task", ["squad", "squad-v2"])
def test_span_decode_and_finalize_join_windows_by_uid(task, task_defs):
    task_def = task_defs[task]
    handler = get_task_handler(task_def.task_type)
    first = [None, None, [0, 3], [4, 7], None]  # window 1 holds "abc def"
    second = [None, None, [8, 11], [12, 15], None]  # window 2 holds "ghi jkl"
    batch = span_batch(task_def, [("q0", first, 0), ("q0", second, 0), ("q1", first, 0), ("q2", [None] * 5, 0)])
    start = torch.tensor([[5, 0, 1, 0, 0], [1, 0, 4, 0, 0], [6, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float)
    end = torch.tensor([[5, 0, 0, 2, 0], [1, 0, 0, 3, 0], [6, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float)
    decoded = handler.decode(torch.stack([start, end], dim=-1), batch)
    assert decoded.predictions == ["abc def", "ghi jkl", "abc", ""]
    assert decoded.scores[:3] == [[3.0, 10.0], [7.0, 2.0], [2.0, 12.0]]
    assert decoded.scores[3][0] == float("-inf")

    final = handler.finalize(decoded, task_def)
    assert final.uids == ["q0", "q1", "q2"]
    # q0: best span over both windows (7 in window 2), lowest no-answer score (2): margin 2 - 7.
    # q1: no-answer 12 beats the best span 2 (margin 10); q2 has no span at all.
    assert final.scores[:2] == [-5.0, 10.0]
    assert final.scores[2] > 1e8
    assert final.predictions == ["ghi jkl", "abc", ""]  # the best non-null answers
    assert final.golds == [["ghi jkl"]] * 3
    # v2 answers "" above the no-answer threshold (0 when no dev split chose one); v1 keeps every answer.
    shown, used = handler.apply_decoding(final, {}, task_def)
    if task_def.task_type == TaskType.SpanClassificationYN:
        assert shown.predictions == ["ghi jkl", "", ""] and used["null_threshold"] == 0.0
    else:
        assert shown.predictions == ["ghi jkl", "abc", ""] and used == {}


def test_span_decode_respects_max_answer_length(task_defs):
    task_def = task_defs["squad"]
    handler = get_task_handler(task_def.task_type)
    offsets = [None] + [[i, i + 1] for i in range(40)]
    batch = span_batch(task_def, [("q0", offsets, 0)])
    batch.samples[0]["context"] = "x" * 40
    start, end = torch.zeros(1, 41), torch.zeros(1, 41)
    start[0, 1], end[0, 40] = 10, 10  # the best pair, but 40 tokens long
    end[0, 3], start[0, 38] = 2, 1
    decoded = handler.decode(torch.stack([start, end], dim=-1), batch)
    assert decoded.scores[0][0] == 12.0 and decoded.predictions == ["xxx"]


# ---- SAN heads ------------------------------------------------------------------------------
def test_san_head_on_pair_classification(task_defs, make_batch, build_network):
    rte = dataclasses.replace(task_defs["rte"], enable_san=True)
    network = build_network([rte], san=SANOptions(num_turn=3))
    assert isinstance(network.scoring_list[0], SANHead)
    batch = make_batch("rte", 4, task_def=rte)
    _, logits, loss = run_task(network, batch)
    assert logits.shape == (4, 2)
    torch.testing.assert_close(loss, F.nll_loss(logits, batch.labels))
    assert_trains_head_and_encoder(network, loss)
    network.eval()
    with torch.no_grad():
        log_probs = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(4))


def test_san_head_on_ranking(task_defs, make_batch, build_network):
    qnnli = dataclasses.replace(task_defs["qnnli"], enable_san=True)
    network = build_network([qnnli])
    assert isinstance(network.scoring_list[0], SANHead)
    batch = make_batch("qnnli", 3, task_def=qnnli)
    handler, logits, loss = run_task(network, batch)
    assert logits.shape == (6, 1)
    torch.testing.assert_close(loss, F.cross_entropy(logits.view(3, 2), batch.labels))
    assert_trains_head_and_encoder(network, loss)
    network.eval()
    with torch.no_grad():
        scores = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0)
    # One output per hypothesis: the scores must still tell hypotheses apart.
    assert float(scores.std()) > 0
    decoded = handler.decode(scores, batch)
    assert decoded.predictions == scores.view(3, 2).argmax(-1).tolist()


@pytest.mark.parametrize("name", ["cola", "stsb"])
def test_san_is_refused_where_it_cannot_work(name, task_defs, build_network):
    with pytest.raises(MTDNNInputError, match="enable_san"):
        build_network([dataclasses.replace(task_defs[name], enable_san=True)])


# ---- decoding of sentence-level tasks -------------------------------------------------------
def test_classification_decode_gives_probabilities_per_sample_and_argmax(task_defs, make_batch):
    batch = make_batch("rte", 3)
    logits = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
    decoded = get_task_handler(TaskType.Classification).decode(logits, batch)
    p = torch.softmax(logits, -1)
    assert [score for sample in decoded.scores for score in sample] == pytest.approx(p.reshape(-1).tolist())
    assert len(decoded.scores) == 3 and all(len(sample) == 2 for sample in decoded.scores)
    assert decoded.predictions == [1, 0, 0]
    assert decoded.golds == batch.labels.tolist() and decoded.uids == ["0", "1", "2"]


def test_regression_prediction_is_the_score(task_defs, make_batch):
    batch = make_batch("stsb", 2)
    decoded = get_task_handler(TaskType.Regression).decode(torch.tensor([[0.5], [-1.25]]), batch)
    assert decoded.predictions == decoded.scores == [0.5, -1.25]
    assert decoded.golds == pytest.approx([5.0, 3.8])


def test_ranking_decode_argmax_over_k(task_defs, make_batch):
    batch = make_batch("qnnli", 3)
    logits = torch.tensor([[0.1], [2.0], [3.0], [-1.0], [0.0], [0.0]])
    decoded = get_task_handler(TaskType.Ranking).decode(logits, batch)
    assert decoded.predictions == [1, 0, 0]
    flat = [score for sample in decoded.scores for score in sample]
    assert flat == pytest.approx(torch.softmax(logits.view(3, 2), -1).reshape(-1).tolist())
    assert decoded.golds == batch.labels.tolist()


def test_unsupported_task_type_is_a_clear_error():
    with pytest.raises(MTDNNInputError, match="not supported"):
        get_task_handler(TaskType.MaskLM)
