"""Span extraction end to end: SQuAD v1.1 / v2.0 JSON → windows (squad_prepro.py) → train.py →
n-best decoding with --max_answer_len → official EM/F1, v2's null-answer threshold chosen on dev
and applied to test; plus the decoding and the official metrics on hand-built examples.

The encoder is a tiny random BERT with the real MiniLM tokenizer; windows are 96 tokens with a
32-token stride (384 / 128 scaled down), so the paragraphs of tests/data/squad_e2e need 2-3 windows.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from data_utils.metrics import calc_metrics
from data_utils.score_files import read_score_file
from data_utils.squad_eval import find_best_threshold, squad_v1_scores, squad_v2_scores
from data_utils.task_def import Metric, TaskDef, load_task_defs
from mt_dnn.batcher import Collater, TaskDataset, build_eval_loader
from mt_dnn.checkpoint import load_run_checkpoint
from mt_dnn.encoder import load_encoder
from mt_dnn.inference import EvalSettings, evaluate
from mt_dnn.matcher import SANBertNetwork
from mt_dnn.options import ModelOptions
from mt_dnn.tasks import Decoded, DecodeOptions, get_task_handler
from mt_dnn.tasks.span import best_span
from train import build_parser, main, options_from_args

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "experiments" / "squad" / "squad_task_def.yml"
FIXTURES = REPO / "tests" / "data" / "squad_e2e"
MINILM = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2"
WINDOWS = ["--max_seq_length", "96", "--doc_stride", "32", "--max_query_length", "32"]
TASKS = load_task_defs(YAML)

if "squad_prepro" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("squad_prepro", REPO / "experiments" / "squad" / "squad_prepro.py")
    sys.modules["squad_prepro"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up here
    _spec.loader.exec_module(sys.modules["squad_prepro"])
squad_prepro = sys.modules["squad_prepro"]


# ---- decoding and metrics on hand-built examples ---------------------------------------------
def test_best_span_hand_built_logits_and_max_answer_len():
    # [CLS] q q [SEP] c0 .. c5 [SEP]: only positions 4..9 are context.
    offsets = [None, None, None, None, [0, 3], [4, 9], [10, 12], [13, 18], [19, 24], [25, 30], None]
    start = [9.0, 8.0, 0, 0, 0.5, 3.0, 0, 0.5, 0, 0, 0]
    end = [9.0, 0, 8.0, 0, 0, 0.2, 2.0, 0, 0, 4.0, 0]
    # Question tokens (1, 2) and [CLS] score higher but are no answers; 5..9 = 3 + 4 is the best pair.
    assert best_span(start, end, offsets, max_answer_len=10) == (7.0, 5, 9)
    # Five tokens do not fit in 4: the best pair within 4 tokens is 5..6 (3 + 2), ahead of 7..9 (0.5 + 4).
    assert best_span(start, end, offsets, max_answer_len=4) == (5.0, 5, 6)
    # One token: 9..9 (0 + 4) beats 5..5 (3 + 0.2).
    assert best_span(start, end, offsets, max_answer_len=1) == (4.0, 9, 9)
    # An end before its start is never a span.
    assert best_span([0, 0, 5.0], [0, 5.0, 0], [None, [0, 1], [2, 3]], 10) == (5.0, 2, 2)
    assert best_span(start, end, [None] * 11, 10) == (float("-inf"), 0, 0)


def test_official_em_and_f1_on_known_strings():
    # EM after normalisation (lower case, punctuation and a/an/the dropped, spaces collapsed).
    golds = [["the Black Sea"], ["the Black Forest"], ["1992", "in 1992"], ["Hans Meyer"]]
    predictions = ["Black  sea.", "in the Black Forest of Germany", "completed in 1992", "Ludwig Purtscheller"]
    # F1 by hand: q1 1; q2 pred {in black forest of germany} vs {black forest}: P 2/5, R 1 → 4/7;
    # q3 best gold "in 1992": pred {completed in 1992}: P 2/3, R 1 → 4/5; q4 0.
    scores = squad_v1_scores(predictions, golds)
    assert scores["exact_match"] == pytest.approx(25.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 4 / 7 + 4 / 5 + 0) / 4)
    # v2: "" is right only for an unanswerable question; a wrong answer there scores 0.
    golds_v2 = [["Warsaw"], [], [], ["polonium and radium"]]
    predictions_v2 = ["Warsaw", "", "Paris", ""]
    v2 = squad_v2_scores(predictions_v2, golds_v2)
    assert (v2["exact"], v2["f1"], v2["total"]) == (50.0, 50.0, 4)
    assert (v2["HasAns_exact"], v2["NoAns_exact"], v2["HasAns_total"], v2["NoAns_total"]) == (50.0, 50.0, 2, 2)
    # The metric registry reports the same numbers under EmF1 / EmF12.
    assert calc_metrics([Metric.EmF1], golds, predictions, None)["EmF1"] == scores


def test_null_threshold_is_chosen_on_dev_and_applied_to_test():
    handler = get_task_handler(TASKS["squad-v2"].task_type)
    # Best non-null answers and no-answer margins (no-answer score minus best span score).
    dev = Decoded(
        uids=["a", "b", "c", "d", "e"],
        predictions=["Warsaw", "1891", "Paris", "radium", "Mainz"],
        scores=[-3.0, 0.5, 1.0, 2.0, 4.0],
        golds=[["Warsaw"], ["1891"], [], ["polonium"], []],
    )
    # Threshold t answers "" where margin > t. t = 0.5 keeps a, b (right) and blanks c, d, e: 4 of 5 right;
    # t = 2 would also answer d wrongly (d's gold differs) and c wrongly; t < 0.5 loses b.
    settings = handler.fit_decoding(dev)
    assert settings["null_threshold"] == 0.5
    applied, used = handler.apply_decoding(dev, settings, TASKS["squad-v2"])
    assert applied.predictions == ["Warsaw", "1891", "", "", ""] and used == settings
    assert squad_v2_scores(applied.predictions, dev.golds)["f1"] == pytest.approx(80.0)
    assert find_best_threshold(dev.predictions, dev.scores, dev.golds)["best_f1"] == pytest.approx(80.0)
    test = Decoded(["x", "y"], ["Kibo", "1889"], [0.4, 0.6], [[], []])
    assert handler.apply_decoding(test, settings, TASKS["squad-v2"])[0].predictions == ["Kibo", ""]
    # Without a dev choice the threshold is 0; SQuAD v1.1 never blanks an answer.
    fallback, used = handler.apply_decoding(test, {}, TASKS["squad-v2"])
    assert fallback.predictions == ["", ""] and used["null_threshold"] == 0.0
    v1 = get_task_handler(TASKS["squad"].task_type)
    assert v1.fit_decoding(dev) == {} and v1.apply_decoding(test, {}, TASKS["squad"])[0].predictions == ["Kibo", "1889"]


def test_max_answer_len_flag_reaches_the_decoder():
    args = build_parser("").parse_args(["--max_answer_len", "3"])
    _, _, model_opts, train_opts, _ = options_from_args(args)
    assert EvalSettings.of_run(model_opts, train_opts, torch.device("cpu")).decode == DecodeOptions(max_answer_len=3)


# ---- the real preprocessing under oracle logits ----------------------------------------------
def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def questions_of(path: Path) -> dict[str, dict]:
    """Question id → the question, its context and its gold answer texts, in file order."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        qa["id"]: {"question": qa["question"], "context": p["context"], "answers": [a["text"] for a in qa["answers"]]}
        for article in data["data"] for p in article["paragraphs"] for qa in p["qas"]
    }


@pytest.fixture(scope="module")
def qa_model(tmp_path_factory) -> Path:
    """A tiny random BERT (hidden 64, 2 layers) with the MiniLM tokenizer."""
    if not MINILM.is_dir():
        pytest.skip(f"the shared MiniLM tokenizer is not at {MINILM}")
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("qa_bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data_dir(qa_model, tmp_path_factory) -> Path:
    """squad_prepro.py output for v1.1 and v2.0 (train, dev, test), plus the training questions in the dev
    layout as ``<task>_seen_dev.json`` (v2 also as ``_seen_test``) and v2's test as a dataset without dev."""
    root = tmp_path_factory.mktemp("squad_e2e")
    shutil.copytree(FIXTURES / "squad", root / "squad")
    shutil.copytree(FIXTURES / "squad_v2", root / "squad_v2")
    squad_prepro.main(["--model", str(qa_model), "--root_dir", str(root), *WINDOWS])
    squad_prepro.main(["--model", str(qa_model), "--root_dir", str(root), *WINDOWS, "--version_2_with_negative"])
    out = root / qa_model.name
    tokenizer = squad_prepro.load_fast_tokenizer(str(qa_model), None)
    for folder, task, version_2 in (("squad", "squad", False), ("squad_v2", "squad-v2", True)):
        questions = squad_prepro.load_squad(root / folder / "train.json", version_2)
        rows = squad_prepro.build_features(tokenizer, questions, 96, 32, 32, False, squad_prepro.Stats())
        (out / f"{task}_seen_dev.json").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    shutil.copy(out / "squad-v2_seen_dev.json", out / "squad-v2_seen_test.json")
    shutil.copy(out / "squad-v2_test.json", out / "squad-v2_nodev_test.json")
    return out


def oracle_logits(rows: list[dict]) -> torch.Tensor:
    """Start/end logits that point at each window's label (the [CLS] where the answer is not in it)."""
    logits = torch.zeros(len(rows), max(len(row["token_id"]) for row in rows), 2)
    for i, row in enumerate(rows):
        start, end, _ = row["label"]
        logits[i, start, 0] = logits[i, end, 1] = 10.0
    return logits


@pytest.mark.parametrize("task", ["squad", "squad-v2"])
def test_oracle_logits_recover_every_answer_through_the_windows(task, data_dir):
    folder = "squad_v2" if task == "squad-v2" else "squad"
    task_def = TASKS[task]
    handler = get_task_handler(task_def.task_type)
    crossing, cut = [], 0
    for split, source in (("dev", "dev"), ("seen_dev", "train")):
        dataset = TaskDataset(data_dir / f"{task}_{split}.json", task_def, task)
        batch = Collater(0, 512, keep_samples=True)([dataset[i] for i in range(len(dataset))])
        decoded = handler.finalize(handler.decode(oracle_logits(dataset.samples), batch, DecodeOptions(10)), task_def)
        decoded, used = handler.apply_decoding(decoded, handler.fit_decoding(decoded), task_def)
        questions = questions_of(FIXTURES / folder / f"{source}.json")
        assert decoded.uids == list(questions)  # windows joined by uid, in question order
        # Every prediction is the first gold answer's text, taken from the context through the offsets.
        assert decoded.predictions == [(q["answers"] or [""])[0] for q in questions.values()]
        metrics = calc_metrics(task_def.metric_meta, decoded.golds, decoded.predictions, decoded.scores)
        result = metrics["EmF1"] if task == "squad" else metrics["EmF12"]
        assert result.get("exact_match", result.get("exact")) == 100.0 and result["f1"] == 100.0
        if task == "squad-v2":
            # Oracle margins are -20 (answerable) and +20 (unanswerable): the chosen threshold separates them.
            assert -20.0 <= used["null_threshold"] < 20.0 and result["NoAns_total"] >= 7
        by_uid: dict[str, list[dict]] = {}
        for sample in dataset.samples:
            by_uid.setdefault(sample["uid"], []).append(sample)
        crossing += [uid for uid, windows in by_uid.items() if any(w["label"][0] > 0 for w in windows)
                     and any(cuts_answer(w, questions[uid]["answers"]) for w in windows)]
        cut += sum(windows[0]["type_id"].index(1) == 32 + 2 for windows in by_uid.values())  # [CLS] + 32 + [SEP]
    # The fixture exercises what matters: answers that cross a window boundary (cut off in one window,
    # whole in the next one), questions cut to --max_query_length.
    assert len(crossing) >= 2 and cut >= 2, (crossing, cut)


def cuts_answer(window: dict, answers: list[str]) -> bool:
    """The window holds part of the first gold answer's characters, not all of them."""
    if not answers:
        return False
    context = window["context"]
    start = context.index(answers[0])
    end = start + len(answers[0])
    spans = [o for o in window["offset_mapping"] if o is not None]
    first, last = spans[0][0], spans[-1][1]
    return first < end and start < last and not (first <= start and end <= last)


# ---- train.py end to end ----------------------------------------------------------------------
def run_training(model: Path, data: Path, out: Path, task: str, tests: str, epochs: int, *extra: str) -> None:
    main([
        "--init_checkpoint", str(model), "--data_dir", str(data), "--task_def", str(YAML),
        "--train_datasets", task, "--test_datasets", tests, "--epochs", str(epochs), "--batch_size", "8",
        "--batch_size_eval", "64", "--max_seq_len", "96", "--learning_rate", "1e-2", "--dataloader_num_workers", "0",
        "--log_per_updates", "100", "--output_dir", str(out), "--log_file", str(out / "train.log"),
        "--transformer_cache", str(out / ".cache"), *extra,
    ])


def untrained_scores(model: Path, data: Path, dataset: str, task_def: TaskDef) -> dict:
    """EM/F1 of the same encoder with a fresh span head, before any update."""
    opts = ModelOptions(init_checkpoint=str(model))
    torch.manual_seed(2018)
    network = SANBertNetwork(load_encoder(opts), [task_def], opts, sep_token_id=102)
    samples = TaskDataset(data / f"{dataset}_dev.json", task_def, dataset)
    loader = build_eval_loader(samples, 64, Collater(0, 512, keep_samples=True))
    return evaluate(network, loader, task_def, with_labels=True).metrics


def assert_one_answer_per_question(score_file: Path, questions: dict[str, dict], allow_empty: bool) -> None:
    scores = read_score_file(score_file)
    assert scores.uids == list(questions) and len(scores.predictions) == len(scores.scores) == len(questions)
    for uid, prediction in zip(scores.uids, scores.predictions):
        assert prediction in questions[uid]["context"] and (prediction or allow_empty), (uid, prediction)


def test_squad_v1_trains_and_scores_dev_and_test(qa_model, data_dir, tmp_path):
    epochs = 6
    run_training(qa_model, data_dir, tmp_path, "squad", "squad,squad_seen", epochs, "--max_answer_len", "6")
    dev_q, test_q = questions_of(FIXTURES / "squad" / "dev.json"), questions_of(FIXTURES / "squad" / "test.json")
    seen_q = questions_of(FIXTURES / "squad" / "train.json")
    for epoch in range(epochs):
        dev = read_score_file(tmp_path / f"squad_dev_scores_epoch_{epoch}.json").metrics["EmF1"]
        assert 0 <= dev["exact_match"] <= dev["f1"] <= 100
        assert read_score_file(tmp_path / f"squad_test_scores_epoch_{epoch}.json").metrics == {}  # no labels: no metrics
    last = epochs - 1
    assert_one_answer_per_question(tmp_path / f"squad_dev_scores_epoch_{last}.json", dev_q, allow_empty=False)
    assert_one_answer_per_question(tmp_path / f"squad_test_scores_epoch_{last}.json", test_q, allow_empty=False)
    assert_one_answer_per_question(tmp_path / f"squad_seen_dev_scores_epoch_{last}.json", seen_q, allow_empty=False)
    # Training learns: the 33 training questions are mostly answered exactly; a random head (and chance:
    # one span among hundreds per question) scores near 0.
    trained = read_score_file(tmp_path / f"squad_seen_dev_scores_epoch_{last}.json").metrics["EmF1"]
    before = untrained_scores(qa_model, data_dir, "squad_seen", TASKS["squad"])["EmF1"]
    assert trained["exact_match"] >= 40 and trained["exact_match"] >= before["exact_match"] + 35, (trained, before)
    assert trained["f1"] >= before["f1"] + 30
    # --max_answer_len travels with the run into the checkpoint that predict.py rebuilds.
    assert load_run_checkpoint(tmp_path / f"model_{last}.pt", torch.device("cpu")).model_opts.san.max_answer_len == 6


def test_squad_v2_threshold_chosen_on_dev_is_applied_to_test(qa_model, data_dir, tmp_path):
    epochs = 4
    run_training(qa_model, data_dir, tmp_path, "squad-v2", "squad-v2,squad-v2_seen,squad-v2_nodev", epochs)
    dev_q, test_q = questions_of(FIXTURES / "squad_v2" / "dev.json"), questions_of(FIXTURES / "squad_v2" / "test.json")
    seen_q = questions_of(FIXTURES / "squad_v2" / "train.json")
    for epoch in range(epochs):
        for name, questions in (("squad-v2", test_q), ("squad-v2_seen", seen_q)):
            dev = read_score_file(tmp_path / f"{name}_dev_scores_epoch_{epoch}.json")
            test = read_score_file(tmp_path / f"{name}_test_scores_epoch_{epoch}.json")
            threshold = dev.metrics["decoding"]["null_threshold"]
            result = dev.metrics["EmF12"]
            assert 0 <= result["exact"] <= result["f1"] <= 100 and 0 <= result["best_f1"] <= 100
            # Dev is scored with the threshold it chose ("" exactly where the no-answer margin exceeds it) ...
            assert [p == "" for p in dev.predictions] == [margin > threshold for margin in dev.scores]
            # ... and the test split of the same epoch uses it too.
            assert test.metrics == {"decoding": dev.metrics["decoding"]}
            assert_one_answer_per_question(tmp_path / f"{name}_test_scores_epoch_{epoch}.json", questions, allow_empty=True)
            assert [p == "" for p in test.predictions] == [margin > threshold for margin in test.scores]
        assert_one_answer_per_question(tmp_path / f"squad-v2_dev_scores_epoch_{epoch}.json", dev_q, allow_empty=True)
        nodev = read_score_file(tmp_path / f"squad-v2_nodev_test_scores_epoch_{epoch}.json")
        assert nodev.metrics["decoding"]["null_threshold"] == 0.0
        assert [p == "" for p in nodev.predictions] == [margin > 0 for margin in nodev.scores]
    log = (tmp_path / "train.log").read_text(encoding="utf-8")
    assert "squad-v2: no dev split chose a null-answer threshold for these predictions; using 0" in log
    # On the (identical) seen dev and test files the same threshold gives the same answers, some of them "".
    last = epochs - 1
    seen_dev = read_score_file(tmp_path / f"squad-v2_seen_dev_scores_epoch_{last}.json")
    seen_test = read_score_file(tmp_path / f"squad-v2_seen_test_scores_epoch_{last}.json")
    assert seen_test.predictions == seen_dev.predictions
    assert "" in seen_dev.predictions and any(seen_dev.predictions)
    trained = seen_dev.metrics["EmF12"]
    before = untrained_scores(qa_model, data_dir, "squad-v2_seen", TASKS["squad-v2"])["EmF12"]
    assert trained["HasAns_f1"] >= before["HasAns_f1"] + 20, (trained, before)
