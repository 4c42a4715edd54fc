"""``extractor.py`` with the tiny BERT: output layout, single and pair lines in one file, vectors
equal to the encoder's own hidden states (padding does not leak), ``--checkpoint`` weights,
truncation, ``--do_lower_case`` and one-line errors (SPEC §8)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertModel

from data_utils.errors import MTDNNInputError
from extractor import main
from mt_dnn.checkpoint import load_run_checkpoint
from train import main as train_main

REPO = Path(__file__).resolve().parents[1]
GLUE_YAML = REPO / "experiments" / "glue" / "glue_task_def.yml"
HIDDEN = 32  # conftest's TINY_BERT
LINES = [
    "The cat sat on the mat.",
    "A man is playing a guitar.|||Someone plays an instrument on a stage tonight.",
    "Short.",
    "Is it raining?|||No.",
]


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir: Path, features_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model_0.pt`` of a 1-epoch tiny run on rte (its encoder has moved away from the initial weights)."""
    out = tmp_path_factory.mktemp("run")
    train_main([
        "--init_checkpoint", str(tiny_model_dir), "--data_dir", str(features_dir), "--task_def", str(GLUE_YAML),
        "--train_datasets", "rte", "--test_datasets", "rte", "--epochs", "1", "--batch_size", "4",
        "--max_seq_len", "64", "--learning_rate", "1e-2", "--dataloader_num_workers", "0",
        "--transformer_cache", str(out / ".cache"), "--output_dir", str(out),
    ])
    return out / "model_0.pt"


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def extract(model_dir: Path, tmp_path: Path, *extra: str, lines: list[str] = LINES, layers: str = "0,1,2,-1") -> list[dict]:
    """Run extractor.main on ``lines`` and return the parsed output objects."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out.json"
    main([
        "--finput", str(write_lines(tmp_path / "in.txt", lines)), "--foutput", str(out), "--bert_model", str(model_dir),
        "--layers", layers, "--max_seq_length", "64", "--batch_size", "3", "--transformer_cache", str(tmp_path / ".cache"),
        *extra,
    ])
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def reference_states(encoder: torch.nn.Module, tokenizer, line: str) -> tuple[torch.Tensor, ...]:
    """The encoder's hidden states of one line on its own (no padding)."""
    parts = line.split("|||")
    encoded = tokenizer(*parts, return_tensors="pt")
    with torch.no_grad():
        output = encoder(**encoded, output_hidden_states=True)
    assert torch.equal(output.hidden_states[-1], output.last_hidden_state)
    return tuple(state[0] for state in output.hidden_states)


def test_layout_with_single_and_pair_lines(tiny_model_dir, tmp_path):
    outputs = extract(tiny_model_dir, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert [o["uid"] for o in outputs] == ["0", "1", "2", "3"]
    for output, line in zip(outputs, LINES):
        assert list(output) == ["uid", "tokens", "0", "1", "2", "-1"]
        ids = tokenizer(*line.split("|||"))["input_ids"]
        assert output["tokens"] == tokenizer.convert_ids_to_tokens(ids)
        assert output["tokens"].count("[SEP]") == (2 if "|||" in line else 1)
        for layer in ("0", "1", "2", "-1"):
            vectors = output[layer]
            assert len(vectors) == len(ids)  # cut to the real length, whatever the batch's padding
            assert all(len(v) == HIDDEN and all(isinstance(x, float) for x in v) for v in vectors)


def test_vectors_are_the_encoders_hidden_states(tiny_model_dir, tmp_path):
    # Batches of 3 mix lengths, so the shorter rows are padded: their vectors must not change.
    outputs = extract(tiny_model_dir, tmp_path)
    encoder = BertModel.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for output, line in zip(outputs, LINES):
        states = reference_states(encoder, tokenizer, line)
        for layer in (0, 1, 2, -1):
            torch.testing.assert_close(torch.tensor(output[str(layer)]), states[layer], atol=1e-5, rtol=1e-5)
    assert outputs[0]["-1"] == outputs[0]["2"]  # -1 is the top of the 2-layer encoder


def test_checkpoint_replaces_the_encoder_weights(tiny_model_dir, checkpoint, tmp_path):
    plain = extract(tiny_model_dir, tmp_path / "plain", layers="-1")
    tuned = extract(tiny_model_dir, tmp_path / "tuned", "--checkpoint", str(checkpoint), layers="-1")
    assert [o["tokens"] for o in plain] == [o["tokens"] for o in tuned]
    difference = max((torch.tensor(a["-1"]) - torch.tensor(b["-1"])).abs().max().item() for a, b in zip(plain, tuned))
    assert difference > 1e-2
    encoder = load_run_checkpoint(checkpoint).network.bert
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for output, line in zip(tuned, LINES):
        torch.testing.assert_close(torch.tensor(output["-1"]), reference_states(encoder, tokenizer, line)[-1], atol=1e-5, rtol=1e-5)


def test_long_lines_are_truncated_longest_part_first(tiny_model_dir, tmp_path):
    lines = ["one two three four five six seven eight nine ten", "a b c d e f g h i j k l|||x y"]
    outputs = extract(tiny_model_dir, tmp_path, "--max_seq_length", "8", lines=lines, layers="1")
    assert outputs[0]["tokens"] == ["[CLS]", "one", "two", "three", "four", "five", "six", "[SEP]"]
    assert outputs[1]["tokens"] == ["[CLS]", "a", "b", "c", "[SEP]", "x", "y", "[SEP]"]
    assert [len(o["1"]) for o in outputs] == [8, 8]


def test_do_lower_case_forces_lower_casing(tiny_model_dir, tmp_path):
    cased = tmp_path / "cased"
    shutil.copytree(tiny_model_dir, cased)
    AutoTokenizer.from_pretrained(tiny_model_dir, do_lower_case=False).save_pretrained(cased)
    lines = ["Hello World"]
    assert extract(cased, tmp_path / "a", lines=lines, layers="0")[0]["tokens"] == ["[CLS]", "[UNK]", "[UNK]", "[SEP]"]
    lowered = extract(cased, tmp_path / "b", "--do_lower_case", lines=lines, layers="0")
    assert lowered[0]["tokens"] == ["[CLS]", "hello", "world", "[SEP]"]


@pytest.mark.parametrize(
    "lines, flags, message",
    [
        ([], (), r"in\.txt: no examples: the file is empty"),
        (["fine", "a|||b|||c"], (), r"in\.txt:2: 2 '\|\|\|' separators; a line is text or text_a\|\|\|text_b"),
        (["fine", "", "fine"], (), r"in\.txt:2: empty line"),
        (["a|||"], (), r"in\.txt:1: empty text_b"),
        (["fine"], ("--layers", "3"), r"--layers: layer 3 is out of range: the encoder has 3 hidden states"),
        (["fine"], ("--layers", "-4"), r"--layers: layer -4 is out of range"),
        (["fine"], ("--layers", "1,1"), r"--layers: layer 1 is requested twice"),
        (["fine"], ("--layers", "top"), r"--layers: 'top' is not an integer"),
        (["fine"], ("--max_seq_length", "600"), r"--max_seq_length must be between 5 and the encoder's 512 positions"),
        (["fine"], ("--checkpoint", "missing.pt"), r"missing\.pt: --checkpoint must be an existing MT-DNN \.pt file"),
    ],
)
def test_bad_input(lines, flags, message, tiny_model_dir, tmp_path):
    out = tmp_path / "out.json"
    args = ["--finput", str(write_lines(tmp_path / "in.txt", lines)), "--foutput", str(out),
            "--bert_model", str(tiny_model_dir), "--layers", "0", *flags]
    with pytest.raises(MTDNNInputError, match=message):
        main(args)
    assert not out.exists()


def test_cli_error_is_one_line(tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = ["--finput", str(write_lines(tmp_path / "in.txt", ["ok", "x|||y|||z"])), "--foutput", str(tmp_path / "o.json"),
            "--bert_model", str(tiny_model_dir)]
    process = subprocess.run([sys.executable, str(REPO / "extractor.py"), *args], check=False, cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    assert process.stderr.rstrip().splitlines() == [f"error: {tmp_path / 'in.txt'}:2: 2 '|||' separators; a line is text or text_a|||text_b"]


EXAMPLES = REPO / "input_examples"


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_shipped_examples_are_reproduced(kind, tmp_path):
    """README's commands on input_examples/ give the shipped outputs: uids, tokens, 384-d vectors within 1e-4."""
    from conftest import MINILM

    if not MINILM.is_dir():
        pytest.skip(f"the shared MiniLM is not at {MINILM}")
    out = tmp_path / f"{kind}-output.json"
    main(["--do_lower_case", "--finput", str(EXAMPLES / f"{kind}-input.txt"), "--foutput", str(out),
          "--bert_model", str(MINILM), "--layers", "-1", "--max_seq_length", "128", "--batch_size", "4", "--no-cuda",
          "--transformer_cache", str(tmp_path / ".cache")])
    produced = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    shipped = [json.loads(line) for line in (EXAMPLES / f"{kind}-output.json").read_text(encoding="utf-8").splitlines()]
    lines = (EXAMPLES / f"{kind}-input.txt").read_text(encoding="utf-8").splitlines()
    assert [o["uid"] for o in shipped] == [str(i) for i in range(len(lines))] == [o["uid"] for o in produced]
    for new, old, line in zip(produced, shipped, lines):
        assert list(new) == list(old) == ["uid", "tokens", "-1"]
        assert new["tokens"] == old["tokens"]
        assert old["tokens"].count("[SEP]") == (2 if "|||" in line else 1)
        assert len(old["-1"]) == len(old["tokens"]) and {len(v) for v in old["-1"]} == {384}
        torch.testing.assert_close(torch.tensor(new["-1"]), torch.tensor(old["-1"]), atol=1e-4, rtol=0)
