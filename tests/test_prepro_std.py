"""prepro_std: features equal the tokenizer's own calls, exact JSON lines, workers, and errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

import prepro_std
from data_utils.errors import MTDNNInputError, run_cli
from data_utils.features import (
    EncodeOptions,
    FeatureEncoder,
    find_datasets,
    model_dir_name,
    output_dir,
    tokenize_dataset,
    wants_own_lowercasing,
)
from data_utils.task_def import load_task_defs

# CI clones the repository with the shared folder beside it.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "canonical"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
ROBERTA_TINY = ROOT / "tests" / "data" / "tokenizers" / "roberta_tiny"
GLUE_YAML = ROOT / "experiments" / "glue" / "glue_task_def.yml"
NER_YAML = ROOT / "experiments" / "ner" / "ner_task_def.yml"
GLUE = load_task_defs(GLUE_YAML)
NER = load_task_defs(NER_YAML)
PAIR_KEYS = ["uid", "label", "token_id", "type_id", "attention_mask"]

needs_minilm = pytest.mark.skipif(not MINILM.is_dir(), reason="the shared MiniLM model is not on this machine")


@pytest.fixture(scope="module")
def minilm():
    return AutoTokenizer.from_pretrained(str(MINILM))


@pytest.fixture(scope="module")
def roberta():
    return AutoTokenizer.from_pretrained(str(ROBERTA_TINY))


def make_root(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "canonical_data"
    root.mkdir()
    for name in names:
        shutil.copy(DATA / f"{name}.tsv", root / f"{name}.tsv")
    return root


def canonical_cells(name: str) -> list[list[str]]:
    """The fixture's cells as upstream read them: ``line.strip().split("\\t")``."""
    return [line.strip().split("\t") for line in (DATA / f"{name}.tsv").read_text(encoding="utf-8").splitlines()]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI as ``python prepro_std.py`` would; returns (exit code, stderr)."""
    try:
        run_cli(lambda: prepro_std.main(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def output_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text.splitlines(keepends=True)


def expected_pair_line(tok, uid, label, first, second, max_len=512, padding=False) -> str:
    encoded = tok(first, second, truncation="longest_first", max_length=max_len, padding="max_length" if padding else False)
    types = encoded.get("token_type_ids") or [0] * len(encoded["input_ids"])
    feature = {
        "uid": uid,
        "label": label,
        "token_id": encoded["input_ids"],
        "type_id": types,
        "attention_mask": encoded["attention_mask"],
    }
    return json.dumps(feature) + "\n"


@needs_minilm
def test_glue_slices_equal_direct_tokenizer_calls(tmp_path, capsys, minilm):
    root = make_root(tmp_path, "rte_dev", "sst_dev", "stsb_dev", "cola_dev", "qnli_dev")
    code, err = run_main(["--model", str(MINILM), "--root_dir", str(root), "--task_def", str(GLUE_YAML)], capsys)
    assert code == 0, err
    out = root / "all-MiniLM-L6-v2"
    assert sorted(p.name for p in out.iterdir()) == [
        "cola_dev.json", "qnli_dev.json", "rte_dev.json", "sst_dev.json", "stsb_dev.json"
    ]
    label_of = {
        "rte": {"not_entailment": 0, "entailment": 1}.__getitem__,
        "qnli": {"not_entailment": 0, "entailment": 1}.__getitem__,
        "sst": int,
        "cola": int,
        "stsb": float,
    }
    for task in label_of:
        cells = canonical_cells(f"{task}_dev")
        lines = output_lines(out / f"{task}_dev.json")
        assert len(lines) == len(cells) == 200
        for line, row in zip(lines, cells):
            second = row[3] if len(row) == 4 else None
            assert line == expected_pair_line(minilm, row[0], label_of[task](row[1]), row[2], second)
            feature = json.loads(line)
            assert list(feature) == PAIR_KEYS
            assert set(feature["attention_mask"]) == {1}
            assert isinstance(feature["uid"], str)
    first = output_lines(out / "stsb_dev.json")[0]
    assert first.startswith('{"uid": "0", "label": 5.0, "token_id": [101, 1037, 2158, ')
    assert '"type_id": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,' in first


@needs_minilm
def test_truncation_and_padding(tmp_path, capsys, minilm):
    root = make_root(tmp_path, "rte_dev")
    argv = ["--model", str(MINILM), "--root_dir", str(root), "--task_def", str(GLUE_YAML), "--max_seq_len", "48"]
    assert run_main(argv, capsys)[0] == 0
    truncated = output_lines(root / "all-MiniLM-L6-v2" / "rte_dev.json")
    assert run_main(argv + ["--do_padding"], capsys)[0] == 0
    padded = output_lines(root / "all-MiniLM-L6-v2" / "rte_dev.json")
    lengths = []
    for line, pad_line, row in zip(truncated, padded, canonical_cells("rte_dev")):
        label = {"not_entailment": 0, "entailment": 1}[row[1]]
        assert line == expected_pair_line(minilm, row[0], label, row[2], row[3], max_len=48)
        assert pad_line == expected_pair_line(minilm, row[0], label, row[2], row[3], max_len=48, padding=True)
        feature, padded_feature = json.loads(line), json.loads(pad_line)
        n = len(feature["token_id"])
        lengths.append(n)
        assert padded_feature["token_id"] == feature["token_id"] + [0] * (48 - n)
        assert padded_feature["type_id"] == feature["type_id"] + [0] * (48 - n)
        assert padded_feature["attention_mask"] == [1] * n + [0] * (48 - n)
    assert max(lengths) == 48 and min(lengths) < 48


def test_roberta_style_tokenizer_has_zero_type_ids(tmp_path, capsys, roberta):
    root = make_root(tmp_path, "rte_dev")
    argv = ["--model", str(ROBERTA_TINY), "--root_dir", str(root), "--task_def", str(GLUE_YAML), "--max_seq_len", "128"]
    assert run_main(argv, capsys)[0] == 0
    lines = output_lines(root / "roberta_tiny" / "rte_dev.json")
    for line, row in zip(lines, canonical_cells("rte_dev")):
        feature = json.loads(line)
        direct = roberta(row[2], row[3], truncation="longest_first", max_length=128)
        assert "token_type_ids" not in direct
        assert feature["token_id"] == direct["input_ids"]
        assert feature["type_id"] == [0] * len(direct["input_ids"])
    tokens = roberta.convert_ids_to_tokens(json.loads(lines[1])["token_id"])
    premise = roberta.tokenize(canonical_cells("rte_dev")[1][2])
    hypothesis = roberta.tokenize(canonical_cells("rte_dev")[1][3])
    assert tokens == ["<s>", *premise, "</s>", "</s>", *hypothesis, "</s>"]


def test_do_lower_case_only_without_the_tokenizers_own_setting(tmp_path, capsys, roberta):
    root = make_root(tmp_path, "rte_dev")
    argv = ["--model", str(ROBERTA_TINY), "--root_dir", str(root), "--task_def", str(GLUE_YAML), "--do_lower"]
    assert run_main(argv, capsys)[0] == 0
    lines = output_lines(root / "roberta_tiny" / "rte_dev.json")
    for line, row in zip(lines, canonical_cells("rte_dev")):
        label = {"not_entailment": 0, "entailment": 1}[row[1]]
        assert line == expected_pair_line(roberta, row[0], label, row[2].lower(), row[3].lower())
    first = canonical_cells("rte_dev")[0]
    assert lines[0] != expected_pair_line(roberta, first[0], 0, first[2], first[3])  # "Dana Reeve" has capitals


@needs_minilm
def test_do_lower_case_left_to_a_lowercasing_tokenizer(minilm):
    assert wants_own_lowercasing(minilm, True) is False


def test_own_lowercasing_applies_to_roberta(roberta):
    assert wants_own_lowercasing(roberta, True) is True
    assert wants_own_lowercasing(roberta, False) is False


@needs_minilm
def test_multi_hypothesis_rows(tmp_path, minilm):
    out = tmp_path / "qnnli_dev.json"
    encoder = FeatureEncoder(minilm, EncodeOptions(max_seq_len=64))
    assert tokenize_dataset(DATA / "qnnli_dev.tsv", out, GLUE["qnnli"], encoder) == 30
    lines = output_lines(out)
    index = {"not_entailment": 0, "entailment": 1}
    for line, row in zip(lines, canonical_cells("qnnli_dev")):
        feature = json.loads(line)
        assert list(feature) == ["uid", "label", "token_id", "type_id", "ruid", "olabel", "attention_mask"]
        olabel = [index[label] for label in row[2].split(",")]
        direct = [minilm(row[3], hyp, truncation="longest_first", max_length=64) for hyp in row[4:]]
        assert feature["uid"] == row[0] and feature["ruid"] == row[1].split(",")
        assert feature["olabel"] == olabel and feature["label"] == olabel.index(max(olabel))
        assert feature["token_id"] == [d["input_ids"] for d in direct]
        assert feature["type_id"] == [d["token_type_ids"] for d in direct]
        assert feature["attention_mask"] == [d["attention_mask"] for d in direct]
        assert line == json.dumps(feature) + "\n"
    assert {json.loads(line)["label"] for line in lines} == {0, 1}


@needs_minilm
def test_soft_labels_pass_through(tmp_path, minilm):
    path = tmp_path / "sst_train.tsv"
    path.write_text("0\t1\t[0.25, 0.75]\ta fine film\n1\t0\t[0.9, 0.1]\tdull\n", encoding="utf-8")
    encoder = FeatureEncoder(minilm, EncodeOptions())
    tokenize_dataset(path, tmp_path / "sst_train.json", GLUE["sst"], encoder)
    first = json.loads(output_lines(tmp_path / "sst_train.json")[0])
    assert list(first) == PAIR_KEYS + ["softlabel"]
    assert first["softlabel"] == [0.25, 0.75] and first["label"] == 1
    assert first["token_id"] == minilm("a fine film")["input_ids"]


@needs_minilm
def test_sequence_labelling(tmp_path, minilm):
    encoder = FeatureEncoder(minilm, EncodeOptions(max_seq_len=16))
    task = NER["ner"]
    tokenize_dataset(DATA / "ner_dev.tsv", tmp_path / "ner_dev.json", task, encoder)
    tokenize_dataset(DATA / "ner_test.tsv", tmp_path / "ner_test.json", task, encoder)
    json_bytes = (tmp_path / "ner_dev.json").read_bytes()
    assert json_bytes == (tmp_path / "ner_test.json").read_bytes()
    features = [json.loads(line) for line in json_bytes.decode().splitlines()]
    tag = task.label_index
    x, cls, sep = tag["X"], tag["CLS"], tag["SEP"]
    for feature in features:
        assert list(feature) == ["uid", "label", "token_id", "type_id"]
        assert feature["token_id"][0] == minilm.cls_token_id and feature["token_id"][-1] == minilm.sep_token_id
        assert feature["label"][0] == cls and feature["label"][-1] == sep
        assert len(feature["label"]) == len(feature["token_id"]) == len(feature["type_id"]) <= 16
        assert set(feature["type_id"]) == {0}
    # "1996-08-22" is 5 word pieces: its tag, then X; the soft hyphen has none and goes with its tag.
    pieces = minilm("1996-08-22", add_special_tokens=False)["input_ids"]
    assert len(pieces) == 5 and minilm("\u00ad", add_special_tokens=False)["input_ids"] == []
    assert features[2]["token_id"] == [101, *minilm("BRUSSELS", add_special_tokens=False)["input_ids"], *pieces, 102]
    assert features[2]["label"] == [cls, tag["B-LOC"], tag["O"], x, x, x, x, sep]
    # "it's" is 3 pieces, "\\" one.
    assert features[4]["label"] == [cls, 0, 0, 0, 0, x, x, 0, 0, 0, sep]
    # Truncation counts sub-tokens: 14 pieces of the long sentence survive, not 14 words.
    long_words = canonical_cells("ner_dev")[3][2]
    all_pieces = [p for w in json.loads(long_words) for p in minilm(w, add_special_tokens=False)["input_ids"]]
    assert features[3]["token_id"] == [101, *all_pieces[:14], 102]
    assert features[3]["label"][1:4] == [tag["B-LOC"], 0, x]  # Germany, ' (of 's), s


@needs_minilm
def test_sequence_labelling_refuses_padding(tmp_path, minilm):
    encoder = FeatureEncoder(minilm, EncodeOptions(do_padding=True))
    with pytest.raises(MTDNNInputError, match="--do_padding does not apply to sequence labelling"):
        tokenize_dataset(DATA / "ner_dev.tsv", tmp_path / "ner_dev.json", NER["ner"], encoder)
    assert not (tmp_path / "ner_dev.json").exists()


@needs_minilm
def test_rust_shortcut_equals_the_wrapper_call(minilm, roberta):
    from data_utils.canonical import read_canonical

    for tok in (minilm, roberta):
        for name, task in (("rte_dev", GLUE["rte"]), ("sst_dev", GLUE["sst"]), ("qnnli_dev", GLUE["qnnli"])):
            rows = read_canonical(DATA / f"{name}.tsv", task)
            options = EncodeOptions(max_seq_len=40, do_padding=True)
            fast = FeatureEncoder(tok, options)
            slow = FeatureEncoder(tok, options)
            assert fast._pair_backend is not None
            slow._pair_backend = slow._word_backend = None  # force the wrapper's own batch call
            assert fast.encode_rows(rows, task) == slow.encode_rows(rows, task)


@needs_minilm
def test_workers_output_is_byte_identical(tmp_path, capsys, minilm):
    encoder = FeatureEncoder(minilm, EncodeOptions(max_seq_len=64))
    one = tmp_path / "one.json"
    two = tmp_path / "two.json"
    tokenize_dataset(DATA / "rte_dev.tsv", one, GLUE["rte"], encoder, workers=1)
    tokenize_dataset(DATA / "rte_dev.tsv", two, GLUE["rte"], encoder, workers=2, chunk_rows=37)
    assert one.read_bytes() == two.read_bytes() and len(output_lines(one)) == 200
    root = make_root(tmp_path, "qnnli_dev", "sst_dev")
    base = ["--model", str(MINILM), "--root_dir", str(root), "--task_def", str(GLUE_YAML)]
    assert run_main(base, capsys)[0] == 0
    single = {p.name: p.read_bytes() for p in (root / "all-MiniLM-L6-v2").iterdir()}
    shutil.rmtree(root / "all-MiniLM-L6-v2")
    assert run_main(base + ["--workers", "2"], capsys)[0] == 0
    assert {p.name: p.read_bytes() for p in (root / "all-MiniLM-L6-v2").iterdir()} == single


@needs_minilm
def test_an_error_mid_file_leaves_no_output(tmp_path, minilm, monkeypatch):
    encoder = FeatureEncoder(minilm, EncodeOptions())
    calls = []
    real = encoder.encode_rows

    def fail_on_second_chunk(rows, task_def):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(rows, task_def)

    monkeypatch.setattr(encoder, "encode_rows", fail_on_second_chunk)
    with pytest.raises(RuntimeError):
        tokenize_dataset(DATA / "rte_dev.tsv", tmp_path / "out" / "rte_dev.json", GLUE["rte"], encoder, chunk_rows=50)
    assert calls == [50, 50] and list((tmp_path / "out").iterdir()) == []


@needs_minilm
@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_label_late_in_the_file_names_its_line(tmp_path, minilm, workers):
    lines = (DATA / "sst_dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    uid, _, text = lines[149].split("\t")
    lines[149] = f"{uid}\t7\t{text}"  # line 150: the fifth chunk of 37 rows, read while workers tokenize
    path = tmp_path / "sst_dev.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "out" / "sst_dev.json"
    out.parent.mkdir()
    out.write_text("previous run\n", encoding="utf-8")
    encoder = FeatureEncoder(minilm, EncodeOptions(max_seq_len=64))
    with pytest.raises(MTDNNInputError) as caught:
        tokenize_dataset(path, out, GLUE["sst"], encoder, workers=workers, chunk_rows=37)
    assert str(caught.value).startswith(f"{path}:150: label column: label '7' ")
    assert "\n" not in str(caught.value)
    assert [p.name for p in out.parent.iterdir()] == ["sst_dev.json"] and out.read_text() == "previous run\n"


def test_dataset_discovery(tmp_path):
    root = tmp_path / "canonical_data"
    root.mkdir()
    for name in ("mnli_matched_dev", "mnli_train", "ax_test", "rte_dev"):
        (root / f"{name}.tsv").write_text("x\n", encoding="utf-8")
    found = find_datasets(root, GLUE, GLUE_YAML)
    assert [(d.name, d.task_def.name) for d in found] == [
        ("ax_test", "mnli"), ("mnli_matched_dev", "mnli"), ("mnli_train", "mnli"), ("rte_dev", "rte")
    ]
    assert [d.name for d in find_datasets(root, GLUE, GLUE_YAML, tasks=["rte", "ax"])] == ["ax_test", "rte_dev"]
    picked = find_datasets(root, GLUE, GLUE_YAML, datasets=["rte_dev", "mnli_matched_dev.tsv"])
    assert [d.name for d in picked] == ["rte_dev", "mnli_matched_dev"]
    domain_yaml = ROOT / "experiments" / "domain_adaptation" / "domain_adaptation_def.yml"
    (root / "scitail_001_train.tsv").write_text("x\n", encoding="utf-8")
    domain = load_task_defs(domain_yaml)
    found = find_datasets(root, domain, domain_yaml, tasks=["scitail"])
    assert [(d.name, d.task_def.name) for d in found] == [("scitail_001_train", "scitail")]


def test_output_folder_naming(tmp_path):
    assert model_dir_name("microsoft/deberta-base") == "microsoft/deberta-base"
    assert model_dir_name("bert-base-uncased") == "bert-base-uncased"
    assert model_dir_name(str(ROBERTA_TINY) + "/") == "roberta_tiny"
    root = tmp_path / "canonical_data"
    root.mkdir()
    assert output_dir(root, "microsoft/deberta-base") == root / "microsoft" / "deberta-base"
    assert output_dir(root, str(ROBERTA_TINY)) == root / "roberta_tiny"
    for bad in ("../escape", "/abs/olute", "a/../../b", "org/name/extra"):
        with pytest.raises(MTDNNInputError, match="neither a local folder nor a Hugging Face model id"):
            output_dir(root, bad)


def _bad_run(tmp_path: Path, capsys, files: dict[str, str], extra: list[str], yaml: Path = GLUE_YAML):
    root = tmp_path / "canonical_data"
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    argv = ["--model", str(ROBERTA_TINY), "--root_dir", str(root), "--task_def", str(yaml), *extra]
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not (root / "roberta_tiny").exists() or list((root / "roberta_tiny").iterdir()) == []
    return root, err.strip()


@pytest.mark.parametrize(
    ("files", "where", "what"),
    [
        ({"rte_dev.tsv": "0\tentailment\tp\th\n1\tentailment\tp\n"}, "rte_dev.tsv:2: ", "expected 4 columns"),
        ({"rte_dev.tsv": "0\tentailment\tp\th\n1\tyes\tp\th\n"}, "rte_dev.tsv:2: ", "label 'yes' is not one of"),
        ({"stsb_dev.tsv": "0\t4.5\tp\th\n1\tn/a\tp\th\n"}, "stsb_dev.tsv:2: ", "regression score 'n/a'"),
        ({"rte_test.tsv": ""}, "rte_test.tsv: ", "no rows: the file is empty"),
        ({"rte_dev.tsv": "0\tentailment\tp\th\n", "foo_dev.tsv": "0\t1\tp\n"}, "foo_dev.tsv: ", "task 'foo' is not defined"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, files, where, what):
    root, err = _bad_run(tmp_path, capsys, files, [])
    assert f"{root}/{where}" in err and what in err


def test_bad_command_lines(tmp_path, capsys):
    _, err = _bad_run(tmp_path, capsys, {"rte_dev.tsv": "0\tentailment\tp\th\n"}, ["--tasks", "mrpc"])
    assert "--tasks mrpc: no canonical file mrpc_*.tsv" in err
    shutil.rmtree(tmp_path / "canonical_data")
    _, err = _bad_run(tmp_path, capsys, {"rte_dev.tsv": "0\tentailment\tp\th\n"}, ["--tasks", "snli"])
    assert "--tasks snli: task is not defined" in err
    shutil.rmtree(tmp_path / "canonical_data")
    _, err = _bad_run(tmp_path, capsys, {"rte_dev.tsv": "0\tentailment\tp\th\n"}, ["--datasets", "rte_test"])
    assert "--datasets rte_test: no canonical file" in err
    shutil.rmtree(tmp_path / "canonical_data")
    missing_yaml = tmp_path / "nope.yml"
    _, err = _bad_run(tmp_path, capsys, {"rte_dev.tsv": "0\tentailment\tp\th\n"}, [], yaml=missing_yaml)
    assert err == f"error: {missing_yaml}: task definition file not found"
    shutil.rmtree(tmp_path / "canonical_data")
    _, err = _bad_run(tmp_path, capsys, {"rte_dev.tsv": "0\tentailment\tp\th\n"}, ["--max_seq_len", "3"])
    assert "--max_seq_len 3 leaves no room" in err
