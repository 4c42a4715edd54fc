"""The Python API (``mt_dnn.api``) on a tiny 1-epoch run over five heads (SAN classification, single-sentence
classification, regression, ranking, sequence labelling): raw text is tokenized exactly as ``prepro_std.py``
tokenizes the same rows, and predictions equal the probabilities ``train.py`` wrote in its score files."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from data_utils.canonical import read_canonical
from data_utils.errors import MTDNNInputError
from data_utils.formats import get_data_format
from data_utils.task_def import TaskDef
from mt_dnn import MTDNNPredictor, Prediction
from mt_dnn.export import task_defs_yaml
from prepro_std import main as prepro_main
from train import main as train_main

REPO = Path(__file__).resolve().parents[1]
CANONICAL = REPO / "tests" / "data" / "canonical"
# dataset → rows of tests/data/canonical/<dataset>_dev.tsv used for both training and dev.
ROWS = {"rte": 8, "cola": 8, "stsb": 6, "qnnli": 6, "ner": 5}
MAX_SEQ_LEN = 48  # short enough that some RTE pairs are cut: the API must cut them the same way
EVAL_BATCH = 3  # the run's --batch_size_eval: the API's batches then pad exactly as the run's evaluation did


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, task_defs: dict[str, TaskDef], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Canonical rows → prepro_std.py features → a 1-epoch train.py run; rte's head is SAN."""
    root = tmp_path_factory.mktemp("api_run")
    defs = {name: task_defs[name] for name in ROWS}
    defs["rte"] = dataclasses.replace(defs["rte"], enable_san=True)
    yaml_path = root / "tasks.yml"
    yaml_path.write_text(task_defs_yaml(list(defs.values())), encoding="utf-8")
    canonical = root / "canonical"
    canonical.mkdir()
    for name, count in ROWS.items():
        lines = (CANONICAL / f"{name}_dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:count]
        for split in ("train", "dev"):
            (canonical / f"{name}_{split}.tsv").write_text("".join(lines), encoding="utf-8")
    prepro_main(["--model", str(tiny_model_dir), "--root_dir", str(canonical), "--task_def", str(yaml_path),
                 "--max_seq_len", str(MAX_SEQ_LEN), "--transformer_cache", str(root / ".cache")])
    features = canonical / tiny_model_dir.name
    out = root / "out"
    datasets = ",".join(ROWS)
    train_main([
        "--init_checkpoint", str(tiny_model_dir), "--data_dir", str(features), "--task_def", str(yaml_path),
        "--train_datasets", datasets, "--test_datasets", datasets, "--epochs", "1", "--batch_size", "4",
        "--batch_size_eval", str(EVAL_BATCH), "--max_seq_len", str(MAX_SEQ_LEN), "--learning_rate", "1e-3",
        "--dataloader_num_workers", "0", "--transformer_cache", str(root / ".cache"), "--output_dir", str(out),
    ])
    return {"out": out, "canonical": canonical, "features": features, "defs": defs}


@pytest.fixture(scope="module")
def predictor(run: dict) -> MTDNNPredictor:
    return MTDNNPredictor.from_checkpoint(run["out"] / "model_0.pt")


def raw_inputs(run: dict, name: str) -> tuple[list[str], list | None]:
    """Premises and hypotheses of a dataset's canonical rows, as a user would pass them."""
    rows = read_canonical(run["canonical"] / f"{name}_dev.tsv", run["defs"][name])
    if name == "ner":
        return [" ".join(row.texts) for row in rows], None
    if name == "cola":
        return [row.texts[0] for row in rows], None
    if name == "qnnli":
        return [row.texts[0] for row in rows], [row.texts[1:] for row in rows]
    return [row.texts[0] for row in rows], [row.texts[1] for row in rows]


def test_tasks_and_prediction_export(predictor):
    assert predictor.tasks == list(ROWS)
    assert predictor.max_seq_len == MAX_SEQ_LEN  # the run's --max_seq_len, read from the checkpoint
    assert MTDNNPredictor.__module__ == "mt_dnn.api" and Prediction.__name__ == "Prediction"


@pytest.mark.parametrize("name", list(ROWS))
def test_encode_is_prepro_std(name, run, predictor):
    premises, hypotheses = raw_inputs(run, name)
    encoded = predictor.encode(name, premises, hypotheses)
    lines = (run["features"] / f"{name}_dev.json").read_text(encoding="utf-8").splitlines()
    written = [json.loads(line) for line in lines]
    keys = ("token_id", "type_id", "attention_mask")
    assert [{k: s.get(k) for k in keys} for s in encoded] == [{k: s.get(k) for k in keys} for s in written]
    if name == "rte":
        assert max(len(s["token_id"]) for s in encoded) == MAX_SEQ_LEN  # some pairs were cut


def score_file(run: dict, name: str) -> dict:
    return json.loads((run["out"] / f"{name}_dev_scores_epoch_0.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["rte", "cola"])
def test_classification_equals_the_score_file(name, run, predictor):
    premises, hypotheses = raw_inputs(run, name)
    predictions = predictor.predict(name, premises, hypotheses, batch_size=EVAL_BATCH)
    expected = score_file(run, name)
    task_def = run["defs"][name]
    labels = [task_def.decode_label(i) for i in range(task_def.n_class)]  # names (rte) or class ids (cola)
    n = len(labels)
    assert [p.label for p in predictions] == [labels[i] for i in expected["predictions"]]
    for i, prediction in enumerate(predictions):
        assert list(prediction.probabilities) == list(labels)
        assert list(prediction.probabilities.values()) == expected["scores"][i * n:(i + 1) * n]  # bit for bit
        assert prediction.score == max(prediction.probabilities.values())


def test_regression_equals_the_score_file(run, predictor):
    premises, hypotheses = raw_inputs(run, "stsb")
    predictions = predictor.predict("stsb", premises, hypotheses, batch_size=EVAL_BATCH)
    expected = score_file(run, "stsb")["scores"]
    assert [p.score for p in predictions] == expected
    assert all(p.label == p.score and p.probabilities is None for p in predictions)


def test_ranking_equals_the_score_file(run, predictor):
    premises, hypotheses = raw_inputs(run, "qnnli")
    predictions = predictor.predict("qnnli", premises, hypotheses, batch_size=EVAL_BATCH)
    expected = score_file(run, "qnnli")
    k = len(hypotheses[0])
    assert [p.label for p in predictions] == expected["predictions"]  # index of the best candidate
    for i, prediction in enumerate(predictions):
        assert prediction.probabilities == expected["scores"][i * k:(i + 1) * k]
        assert sum(prediction.probabilities) == pytest.approx(1.0)


def test_ranking_with_different_numbers_of_candidates(predictor):
    premise = "Which river flows through Paris?"
    candidates = ["The Seine flows through Paris.", "Berlin lies on the Spree.", "Rome has seven hills."]
    mixed = predictor.predict("qnnli", [premise, premise], [candidates[:2], candidates])
    alone = [predictor.predict("qnnli", [premise], [c])[0] for c in (candidates[:2], candidates)]
    assert [len(p.probabilities) for p in mixed] == [2, 3]
    for together, single in zip(mixed, alone):
        assert together.label == single.label
        assert together.probabilities == pytest.approx(single.probabilities, abs=1e-6)


def test_sequence_labelling_gives_one_tag_per_word(run, predictor):
    premises, _ = raw_inputs(run, "ner")
    predictions = predictor.predict("ner", premises, batch_size=EVAL_BATCH)
    expected = score_file(run, "ner")["predictions"]
    assert [p.label for p in predictions] == expected
    # One tag per word; row 2's middle word is a lone soft hyphen, which tokenizes to nothing and gets no tag,
    # as prepro_std.py drops it.
    assert premises[2].split()[1] == "\u00ad"
    assert [len(p.label) for p in predictions] == [9, 2, 2, 31, 7] == [len(t.split()) - (i == 2) for i, t in enumerate(premises)]
    tags = set(run["defs"]["ner"].labels) - {"X", "CLS", "SEP"}
    assert all(set(p.label) <= tags and p.score is None for p in predictions)


def test_dataset_names_pick_their_task_and_empty_input(predictor):
    assert predictor.task_def("rte_extra").name == "rte"
    assert predictor.predict("rte", [], []) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: p.predict("mnli", ["a"], ["b"]), r"task 'mnli' has no head in this model \(its tasks: rte, cola, stsb, qnnli, ner\)"),
        (lambda p: p.predict("rte", ["a", "b"], ["c"]), r"2 premises but 1 hypotheses: give one entry per premise"),
        (lambda p: p.predict("rte", ["a"]), r"task rte \(PremiseAndOneHypothesis\) takes one hypothesis per premise, got 0"),
        (lambda p: p.predict("cola", ["a"], ["b"]), r"task cola \(PremiseOnly\) takes no hypothesis per premise, got 1"),
        (lambda p: p.predict("qnnli", ["a"], [[]]), r"task qnnli \(PremiseAndMultiHypothesis\) takes one or more hypotheses"),
        (lambda p: p.predict("ner", ["  "]), r"task ner: a sentence to tag has no words"),
        (lambda p: p.predict("rte", "a", "b"), r"premises must be a list of strings"),
        (lambda p: p.predict("rte", ["a"], ["b"], batch_size=0), r"batch_size must be at least 1"),
    ],
)
def test_bad_inputs_are_one_line_errors(call, message, predictor):
    with pytest.raises(MTDNNInputError, match=message) as caught:
        call(predictor)
    assert "\n" not in str(caught.value)


def test_span_extraction_is_refused_clearly(task_defs):
    with pytest.raises(MTDNNInputError, match=r"task squad: span extraction is not predicted from raw text here"):
        get_data_format(task_defs["squad"].data_format).unlabelled_row("0", "question", ["context"], task_defs["squad"])


def test_missing_checkpoint_and_tokenizer(run, tmp_path):
    with pytest.raises(MTDNNInputError, match=r"nowhere\.pt: checkpoint not found"):
        MTDNNPredictor.from_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(MTDNNInputError, match=r"not an MT-DNN export folder \(no mtdnn\.json"):
        MTDNNPredictor.from_checkpoint(tmp_path)
    # A checkpoint whose recorded tokenizer is gone: one line naming it, and tokenizer= repairs it.
    moved = tmp_path / "model_0.pt"
    shutil.copy(run["out"] / "model_0.pt", moved)
    predictor = MTDNNPredictor.from_checkpoint(moved, tokenizer=str(tmp_path / "gone"))
    with pytest.raises(MTDNNInputError, match=r"cannot load the tokenizer .*gone.*: no such file or folder \(tokenizer\)"):
        predictor.predict("rte", ["a"], ["b"])
