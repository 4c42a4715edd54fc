"""CoNLL-2003 end to end (SPEC §3.4, §3.3, §7): experiments/ner/prepro.py → prepro_std.py → train.py on
ner, pos and chunk together → score files (SeqEval F1 for ner/chunk, SeqAcc token accuracy for pos) and
predict.py on the labelled test split. A tiny random BERT with the real MiniLM tokenizer, a few epochs on
tests/data/conll_e2e (40/12/12 hand-tagged Reuters-style sentences)."""
from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data_utils.errors import MTDNNInputError
from data_utils.metrics import calc_metrics
from data_utils.task_def import Metric, load_task_defs
from predict import main as predict_main
from prepro_std import main as prepro_std_main
from train import main as train_main

REPO = Path(__file__).resolve().parents[1]
CONLL = REPO / "tests" / "data" / "conll_e2e"
NER_YAML = REPO / "experiments" / "ner" / "ner_task_def.yml"
TASKS = ("ner", "pos", "chunk")
SPLITS = ("train", "dev", "test")
EPOCHS = 8
TASK_METRIC = {"ner": "SeqEval", "pos": "SeqAcc", "chunk": "SeqEval"}
PSEUDO = ("X", "CLS", "SEP")
# The tag inventories of the real CoNLL-2003 English files (the Hugging Face `conll2003` card).
CONLL_POS = ('" \'\' # $ ( ) , . : `` CC CD DT EX FW IN JJ JJR JJS LS MD NN NNP NNPS NNS NN|SYM PDT POS PRP PRP$ '
             "RB RBR RBS RP SYM TO UH VB VBD VBG VBN VBP VBZ WDT WP WP$ WRB").split()
CONLL_CHUNK = ("O B-ADJP I-ADJP B-ADVP I-ADVP B-CONJP I-CONJP B-INTJ I-INTJ B-LST I-LST B-NP I-NP B-PP I-PP "
               "B-PRT I-PRT B-SBAR I-SBAR B-UCP I-UCP B-VP I-VP").split()

_spec = importlib.util.spec_from_file_location("ner_prepro", REPO / "experiments" / "ner" / "prepro.py")
ner_prepro = importlib.util.module_from_spec(_spec)
sys.modules["ner_prepro"] = ner_prepro  # dataclasses look their module up here
_spec.loader.exec_module(ner_prepro)


def read_canonical(path: Path) -> list[tuple[str, list[str], list[str]]]:
    """``(uid, tags, words)`` per row of a canonical sequence TSV."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        uid, tags, words = line.split("\t")
        rows.append((uid, json.loads(tags), json.loads(words)))
    return rows


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The whole pipeline, once: canonical TSV, MiniLM-tokenized features and a 3-task training run."""
    root = tmp_path_factory.mktemp("conll_e2e")
    canonical, out = root / "canonical", root / "run"
    ner_prepro.main(["--data_dir", str(CONLL), "--output_dir", str(canonical)])
    # The tiny model folder carries the MiniLM tokenizer; the features folder is named after the model folder.
    prepro_std_main(["--model", str(tiny_model_dir), "--root_dir", str(canonical), "--task_def", str(NER_YAML),
                     "--transformer_cache", str(root / ".cache")])
    features = canonical / tiny_model_dir.name
    train_main([
        "--init_checkpoint", str(tiny_model_dir), "--data_dir", str(features), "--task_def", str(NER_YAML),
        "--train_datasets", "ner,pos,chunk", "--test_datasets", "ner,pos,chunk", "--epochs", str(EPOCHS),
        "--batch_size", "8", "--learning_rate", "2e-2", "--max_seq_len", "128", "--dataloader_num_workers", "0",
        "--transformer_cache", str(root / ".cache"), "--output_dir", str(out), "--log_file", "train.log",
    ])
    return {"canonical": canonical, "features": features, "out": out, "model": tiny_model_dir, "root": root}


def test_yaml_tag_lists_hold_the_real_conll_inventory():
    defs = load_task_defs(NER_YAML)
    assert set(defs["pos"].labels) == set(CONLL_POS) | {"\\", *PSEUDO}  # upstream's "\" kept: ids stay upstream's
    assert set(defs["chunk"].labels) == set(CONLL_CHUNK) | set(PSEUDO)
    assert defs["ner"].labels == tuple("O B-MISC I-MISC B-PER I-PER B-ORG I-ORG B-LOC I-LOC X CLS SEP".split())
    # Upstream's ids are a prefix of the lists (new tags come after SEP).
    assert defs["pos"].labels[:3] == (",", "\\", ":") and defs["pos"].labels[46:49] == PSEUDO
    assert defs["chunk"].labels[19:23] == ("O", *PSEUDO)
    assert {task: [m.name for m in defs[task].metric_meta] for task in TASKS} == {
        task: [metric] for task, metric in TASK_METRIC.items()
    }


def test_seq_acc_counts_words_only():
    labels = ("NN", "VB", "X", "CLS", "SEP")
    gold = [3, 0, 2, 1, 4, -100]  # CLS, NN, X, VB, SEP, padding
    pred = [0, 0, 1, 2, 1, 0]  # the X predicted at a word counts as wrong; X/CLS/SEP/padding positions are skipped
    assert calc_metrics([Metric.SeqAcc], [gold], [pred], None, labels) == {"SeqAcc": pytest.approx(50.0)}
    assert calc_metrics([Metric.SeqAcc], [["NN", "VB"], ["NN"]], [["NN", "NN"], ["NN"]], None) == {
        "SeqAcc": pytest.approx(200 / 3)
    }
    with pytest.raises(ValueError, match="no word positions"):
        calc_metrics([Metric.SeqAcc], [["X"]], [["NN"]], None)


def test_unknown_tag_in_canonical_file_is_one_line_with_file_and_line(run, tmp_path):
    bad = tmp_path / "pos_dev.tsv"
    lines = (run["canonical"] / "pos_dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace('"VBD"', '"VBX"', 1)
    bad.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(MTDNNInputError) as err:
        prepro_std_main(["--model", str(run["model"]), "--root_dir", str(tmp_path), "--task_def", str(NER_YAML),
                         "--transformer_cache", str(tmp_path / ".cache")])
    message = str(err.value)
    assert message.startswith(f"{bad}:3: ") and "label 'VBX' is not one of task pos's labels" in message
    assert "\n" not in message


def test_features_label_the_first_word_piece(run):
    tokenizer = AutoTokenizer.from_pretrained(run["model"])
    task_defs = load_task_defs(NER_YAML)
    for task in TASKS:
        labels = task_defs[task].labels
        for split in SPLITS:
            rows = read_canonical(run["canonical"] / f"{task}_{split}.tsv")
            features = read_json_lines(run["features"] / f"{task}_{split}.json")
            assert [f["uid"] for f in features] == [uid for uid, _, _ in rows]
            for feature, (_, tags, words) in zip(features, rows):
                expected_ids, expected_tags = [tokenizer.cls_token_id], ["CLS"]
                for word, tag in zip(words, tags):
                    pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
                    expected_ids += pieces
                    expected_tags += [tag] + ["X"] * (len(pieces) - 1)
                expected_ids.append(tokenizer.sep_token_id)
                expected_tags.append("SEP")
                assert feature["token_id"] == expected_ids
                assert [labels[i] for i in feature["label"]] == expected_tags
    # Dates, scores and rare names split into several word pieces: the X tag is exercised.
    x_id = task_defs["ner"].label_index["X"]
    assert sum(f["label"].count(x_id) for f in read_json_lines(run["features"] / "ner_train.json")) > 20


def test_score_files_hold_one_tag_per_word_and_the_task_metric(run):
    for task in TASKS:
        for split in ("dev", "test"):
            rows = read_canonical(run["canonical"] / f"{task}_{split}.tsv")
            known = set(load_task_defs(NER_YAML)[task].labels) | {"O"}
            for epoch in range(EPOCHS):
                scores = json.loads((run["out"] / f"{task}_{split}_scores_epoch_{epoch}.json").read_text())
                assert list(scores) == ["metrics", "predictions", "uids", "scores"]
                assert scores["uids"] == [uid for uid, _, _ in rows]
                assert [len(p) for p in scores["predictions"]] == [len(words) for _, _, words in rows]
                assert all(tag in known and tag not in PSEUDO for p in scores["predictions"] for tag in p)
                if split == "dev":
                    assert list(scores["metrics"]) == [TASK_METRIC[task]]
                    assert 0.0 <= scores["metrics"][TASK_METRIC[task]] <= 100.0
                else:  # train.py scores test splits without labels, as upstream; predict.py --with_label does
                    assert scores["metrics"] == {}
    log = (run["out"] / "train.log").read_text(encoding="utf-8")
    assert "SeqEval per-type report" in log and "PER" in log and "NP" in log


def test_training_learns_pos(run):
    dev_tags = [tag for _, tags, _ in read_canonical(run["canonical"] / "pos_dev.tsv") for tag in tags]
    majority = 100.0 * Counter(dev_tags).most_common(1)[0][1] / len(dev_tags)  # NNP, about 22 %

    def dev_acc(epoch: int) -> float:
        return json.loads((run["out"] / f"pos_dev_scores_epoch_{epoch}.json").read_text())["metrics"]["SeqAcc"]

    assert dev_acc(EPOCHS - 1) > majority + 25
    assert dev_acc(EPOCHS - 1) > dev_acc(0) + 15
    # The chunker learns too: NP/PP/VP chunks are regular.
    chunk = json.loads((run["out"] / f"chunk_dev_scores_epoch_{EPOCHS - 1}.json").read_text())["metrics"]["SeqEval"]
    assert chunk > 25.0


def predict(run: dict[str, Path], task: str, split: str, score: Path) -> dict:
    """predict.py --with_label with the last epoch's checkpoint on ``{task}_{split}.json``; returns the metrics."""
    checkpoint, features = run["out"] / f"model_{EPOCHS - 1}.pt", run["features"] / f"{task}_{split}.json"
    return predict_main(["--task", task, "--checkpoint", str(checkpoint), "--with_label", "--no-cuda",
                         "--prep_input", str(features), "--score", str(score)])


def test_predict_scores_the_labelled_test_split(run, capsys):
    results = {}
    for task in TASKS:
        score = run["root"] / f"{task}_test_predict.json"
        results[task] = predict(run, task, "test", score)
        assert list(results[task]) == [TASK_METRIC[task]] and 0.0 <= results[task][TASK_METRIC[task]] <= 100.0
        # Same predictions as the last epoch's score file of train.py.
        written = json.loads(score.read_text())
        trained = json.loads((run["out"] / f"{task}_test_scores_epoch_{EPOCHS - 1}.json").read_text())
        assert written["predictions"] == trained["predictions"]
    test_tags = [tag for _, tags, _ in read_canonical(run["canonical"] / "pos_test.tsv") for tag in tags]
    assert results["pos"]["SeqAcc"] > 100.0 * Counter(test_tags).most_common(1)[0][1] / len(test_tags) + 15
    # On its own training file the tagger is far better still.
    train = predict(run, "pos", "train", run["root"] / "pos_train_predict.json")
    assert train["SeqAcc"] > results["pos"]["SeqAcc"] + 10
    assert "SeqAcc: " in capsys.readouterr().out
