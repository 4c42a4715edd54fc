"""SQuAD v1.1 / v2.0 JSON → span features, with the MiniLM (BERT WordPiece) fast tokenizer."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_utils.errors import MTDNNInputError
from data_utils.features import model_dir_name

# CI clones the repository with the shared folder beside it.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "squad" / "squad_prepro.py"
FIXTURES = Path(__file__).resolve().parent / "data" / "squad"
MODEL = SHARED / "models" / "all-MiniLM-L6-v2"

_spec = importlib.util.spec_from_file_location("squad_prepro", SCRIPT)
squad_prepro = importlib.util.module_from_spec(_spec)
sys.modules["squad_prepro"] = squad_prepro  # dataclasses look their module up here
_spec.loader.exec_module(squad_prepro)

needs_model = pytest.mark.skipif(not MODEL.is_dir(), reason="MiniLM tokenizer not available offline")
SMALL = ["--max_seq_length", "64", "--doc_stride", "16", "--max_query_length", "24"]
TRAIN_KEYS = ["uid", "token_id", "mask", "type_id", "label"]
DEV_KEYS = TRAIN_KEYS + ["offset_mapping", "null_ans_index", "context", "answer"]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _questions(path: Path) -> dict[str, dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        qa["id"]: {**qa, "context": paragraph["context"]}
        for article in data["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Features of the v1.1 fixture with small windows and of the v2.0 fixture with the defaults."""
    if not MODEL.is_dir():
        pytest.skip("MiniLM tokenizer not available offline")
    root = tmp_path_factory.mktemp("squad") / "data"
    shutil.copytree(FIXTURES, root)
    squad_prepro.main(["--model", str(MODEL), "--root_dir", str(root), *SMALL])
    squad_prepro.main(["--model", str(MODEL), "--root_dir", str(root), "--version_2_with_negative"])
    return root


def test_answer_token_span_unit():
    # [CLS] q q [SEP] c0 c1 c2 [SEP]; context "ab cd ef" tokens at 0-2, 3-5, 6-8
    offsets = [(0, 0), (0, 1), (2, 3), (0, 0), (0, 2), (3, 5), (6, 8), (0, 0)]
    sequence_ids = [None, 0, 0, None, 1, 1, 1, None]
    assert squad_prepro.answer_token_span(offsets, sequence_ids, 3, 8) == (5, 6)
    assert squad_prepro.answer_token_span(offsets, sequence_ids, 0, 2) == (4, 4)
    assert squad_prepro.answer_token_span(offsets, sequence_ids, 4, 5) == (5, 5)  # inside one token
    assert squad_prepro.answer_token_span(offsets, sequence_ids, 6, 9) is None  # runs past the window
    assert squad_prepro.answer_char_span("x  answer  y", "  answer ", 1) == (3, 9)


def test_output_layout_and_keys(built):
    out = built / "all-MiniLM-L6-v2"
    assert sorted(p.name for p in out.iterdir()) == ["squad-v2_dev.json", "squad-v2_train.json", "squad_dev.json", "squad_train.json"]
    for name, keys in (("squad_train", TRAIN_KEYS), ("squad-v2_train", TRAIN_KEYS), ("squad_dev", DEV_KEYS), ("squad-v2_dev", DEV_KEYS)):
        for row in _read(out / f"{name}.json"):
            assert list(row) == keys
    first = (out / "squad_train.json").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith('{"uid": "56ddde6b9a695914005b9628", "token_id": [101, ')


def test_windows_and_labels_v1(built):
    rows = _read(built / "all-MiniLM-L6-v2" / "squad_train.json")
    questions = _questions(built / "squad" / "train.json")
    assert len(rows) == 20 and len({r["uid"] for r in rows}) == len(questions) == 9
    # Train rows carry no offsets: rebuild them with the module's own dev path and check they agree.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    loaded = squad_prepro.load_squad(built / "squad" / "train.json", version_2=False)
    full = list(squad_prepro.build_features(tokenizer, loaded, 64, 16, 24, False, squad_prepro.Stats()))
    assert [{k: f[k] for k in TRAIN_KEYS} for f in full] == rows

    found = set()
    for feature in full:
        question = questions[feature["uid"]]
        answer = question["answers"][0]
        start, end, impossible = feature["label"]
        assert impossible == 0 and len(feature["token_id"]) <= 64
        assert feature["token_id"][0] == tokenizer.cls_token_id and set(feature["mask"]) == {1}
        offsets = feature["offset_mapping"]
        context_positions = [i for i, o in enumerate(offsets) if o is not None]
        # question tokens are segment 0, context tokens segment 1
        assert all(feature["type_id"][i] == 1 for i in context_positions)
        assert feature["type_id"][: context_positions[0]] == [0] * context_positions[0]
        if start == 0:
            assert end == 0
            window = (offsets[context_positions[0]][0], offsets[context_positions[-1]][1])
            a_start, a_end = answer["answer_start"], answer["answer_start"] + len(answer["text"])
            assert not (window[0] <= a_start and a_end <= window[1])
        else:
            assert question["context"][offsets[start][0] : offsets[end][1]] == answer["text"]
            found.add(feature["uid"])
    assert found == set(questions)  # every question has a window holding its answer


def test_windows_overlap_by_doc_stride(built):
    rows = _read(built / "all-MiniLM-L6-v2" / "squad_dev.json")
    by_uid: dict[str, list[dict]] = {}
    for row in rows:
        by_uid.setdefault(row["uid"], []).append(row)
    long_question = by_uid["56ddde6b9a695914005b9630"]
    assert len(long_question) == 4
    for left, right in zip(long_question, long_question[1:]):
        left_ctx = [o for o in left["offset_mapping"] if o is not None]
        right_ctx = [o for o in right["offset_mapping"] if o is not None]
        assert left_ctx[-16:] == right_ctx[:16]
    # the windows together cover the whole context
    assert [o for o in long_question[0]["offset_mapping"] if o is not None][0] == [0, 3]
    last = [o for o in long_question[-1]["offset_mapping"] if o is not None][-1]
    assert last[1] == len(long_question[0]["context"])


def test_dev_rows_v1(built):
    rows = _read(built / "all-MiniLM-L6-v2" / "squad_dev.json")
    questions = _questions(built / "squad" / "dev.json")
    assert len({r["uid"] for r in rows}) == 4 and len(rows) == 9
    for row in rows:
        question = questions[row["uid"]]
        assert row["answer"] == [a["text"] for a in question["answers"]]
        assert row["context"] == question["context"] and row["null_ans_index"] == 0
        n_question = row["type_id"].index(1)
        assert row["offset_mapping"][:n_question] == [None] * n_question and row["offset_mapping"][-1] is None
        start, end, _ = row["label"]
        if start:
            assert row["context"][row["offset_mapping"][start][0] : row["offset_mapping"][end][1]] == row["answer"][0]
    oxygen = next(r for r in rows if r["uid"] == "571c96095efbb31900334dbb")
    assert oxygen["context"][slice(*oxygen["offset_mapping"][oxygen["label"][0]])] == "8"


def test_v2_unanswerable_and_accents(built):
    train = _read(built / "all-MiniLM-L6-v2" / "squad-v2_train.json")
    labels = {r["uid"]: r["label"] for r in train}
    assert len(train) == 6  # 384 tokens: one window each
    assert labels["5ad39d53604f3c001a3fe8d1"] == [0, 0, 1]
    assert labels["5ad2503bd7d075001a429a31"] == [0, 0, 1]
    assert labels["571c96095efbb31900334dbb"][2] == 0 and labels["571c96095efbb31900334dbb"][0] > 0
    dev = _read(built / "all-MiniLM-L6-v2" / "squad-v2_dev.json")
    impossible = next(r for r in dev if r["uid"] == "5a8d7bf7df8bba001a0f9aa1")
    assert impossible["answer"] == [] and impossible["label"] == [0, 0, 1]
    born = next(r for r in dev if r["uid"] == "56be85543aeaaa14008c9063")
    assert born["context"][born["offset_mapping"][born["label"][0]][0] : born["offset_mapping"][born["label"][1]][1]] == "September 4, 1981"
    # An accented answer (uncased tokenizer strips accents) still maps back to the original characters.
    v1 = _read(built / "all-MiniLM-L6-v2" / "squad_train.json")
    sao = next(r for r in v1 if r["uid"] == "5a8d7bf7df8bba001a0f9ab1")
    assert sao["label"][0] > 0


@needs_model
def test_long_question_is_cut(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    path = root / "squad" / "train.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["data"][1]["paragraphs"][0]["qas"][0]["question"] = "When " + "really " * 40 + "did Beyonce start becoming popular?"
    path.write_text(json.dumps(data), encoding="utf-8")
    squad_prepro.main(["--model", str(MODEL), "--root_dir", str(root), *SMALL])
    rows = _read(root / "all-MiniLM-L6-v2" / "squad_train.json")
    cut = next(r for r in rows if r["uid"] == "56be85543aeaaa14008c9063")
    assert cut["type_id"].index(1) == 24 + 2  # [CLS] + 24 question tokens + [SEP]
    assert cut["label"][0] > 0
    assert not [p for p in (root / "all-MiniLM-L6-v2").iterdir() if p.name.startswith(".")]


def test_bad_inputs(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    path = root / "squad" / "train.json"
    original = path.read_text(encoding="utf-8")

    def broken(change) -> None:
        data = json.loads(original)
        change(data["data"][0]["paragraphs"][0]["qas"][0])
        path.write_text(json.dumps(data), encoding="utf-8")
        squad_prepro.load_squad(path, version_2=False)

    with pytest.raises(MTDNNInputError, match="question 56ddde6b9a695914005b9628, answer 0: answer_start 5000 is outside"):
        broken(lambda qa: qa["answers"][0].update(answer_start=5000))
    with pytest.raises(MTDNNInputError, match="question 56ddde6b9a695914005b9628: answerable question without answers"):
        broken(lambda qa: qa.update(answers=[]))
    with pytest.raises(MTDNNInputError, match="unanswerable question in SQuAD v1.1 data"):
        broken(lambda qa: qa.update(is_impossible=True))
    with pytest.raises(MTDNNInputError, match="field 'question' missing"):
        broken(lambda qa: qa.pop("question"))
    path.write_text(original[:200], encoding="utf-8")
    with pytest.raises(MTDNNInputError, match=rf"^{path}:\d+: invalid JSON"):
        squad_prepro.load_squad(path, version_2=False)
    path.unlink()
    with pytest.raises(MTDNNInputError, match="no SQuAD v1.1 train file"):
        squad_prepro.main(["--model", str(MODEL), "--root_dir", str(root)])


def test_model_folder_name(tmp_path):
    assert model_dir_name("bert-base-uncased") == "bert-base-uncased"
    assert model_dir_name("microsoft/deberta-base") == "microsoft/deberta-base"
    assert model_dir_name(str(tmp_path) + "/") == tmp_path.name
    for bad in ("../escape", "a/../../b", "/no/such/folder/x"):
        with pytest.raises(MTDNNInputError, match="neither a local folder nor a Hugging Face model id"):
            model_dir_name(bad)


@needs_model
def test_stride_check_and_cli_error(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    with pytest.raises(MTDNNInputError, match=r"--doc_stride 128 must be in \[0, 61\)"):
        squad_prepro.main(["--model", str(MODEL), "--root_dir", str(root), "--max_seq_length", "128"])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(MODEL), "--root_dir", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: no SQuAD v1.1 train file") and "Traceback" not in result.stderr
