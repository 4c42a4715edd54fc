"""``scripts/export_hf.py`` and ``scripts/strip_model.py`` on tiny 1-epoch runs: the exported encoder loads with
``AutoModel.from_pretrained`` and gives the checkpoint's outputs, the API and predict.py give the same predictions
from the folder as from the ``.pt``, the model card reports the run's dev metrics, and a stripped checkpoint holds
exactly the encoder and pooler and starts a new run as ``--init_checkpoint``. One test repeats the round trip with
the real MiniLM encoder."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TaskDef, load_task_defs
from mt_dnn import MTDNNPredictor
from mt_dnn.batcher import Collater, TaskDataset
from mt_dnn.checkpoint import load_run_checkpoint
from mt_dnn.encoder import load_encoder
from mt_dnn.export import task_defs_yaml
from mt_dnn.options import ModelOptions
from mt_dnn.state_keys import BERT_CONFIG_KEYS
from predict import main as predict_main
from scripts.export_hf import main as export_main
from scripts.strip_model import main as strip_main
from train import main as train_main

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # CI clones the repository with the shared folder beside it (conftest.py)
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
GLUE = SHARED / "data" / "glue"


def train_run(init: Path, features: Path, yaml_path: Path, out: Path, datasets: str, *extra: str) -> Path:
    train_main([
        "--init_checkpoint", str(init), "--data_dir", str(features), "--task_def", str(yaml_path),
        "--train_datasets", datasets, "--test_datasets", datasets, "--epochs", "1", "--batch_size", "4",
        "--batch_size_eval", "8", "--max_seq_len", "64", "--learning_rate", "1e-3", "--dataloader_num_workers", "0",
        "--transformer_cache", str(out / ".cache"), "--output_dir", str(out), *extra,
    ])
    return out


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir: Path, features_dir: Path, task_defs: dict[str, TaskDef], tmp_path_factory) -> Path:
    """A 1-epoch run on rte (SAN head) and stsb."""
    out = tmp_path_factory.mktemp("export_run")
    yaml_path = out / "tasks.yml"
    yaml_path.write_text(task_defs_yaml([dataclasses.replace(task_defs["rte"], enable_san=True), task_defs["stsb"]]))
    return train_run(tiny_model_dir, features_dir, yaml_path, out, "rte,stsb")


@pytest.fixture(scope="module")
def export_dir(run_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "rte_stsb"
    assert export_main(["--checkpoint", str(run_dir / "model_0.pt"), "--output_dir", str(out)]) == out
    return out


def encoder_batch(features: Path, task_def: TaskDef):
    dataset = TaskDataset(features / "rte_dev.json", task_def, "rte")
    return Collater(0, 512)([dataset[i] for i in range(len(dataset))])


def max_encoder_diff(run_checkpoint, exported: torch.nn.Module, batch) -> float:
    inputs = {"input_ids": batch.input_ids, "token_type_ids": batch.token_type_ids, "attention_mask": batch.attention_mask}
    with torch.no_grad():
        ours = run_checkpoint.network.bert(**inputs)
        theirs = exported.eval()(**inputs)
    real = batch.attention_mask.bool()
    return max(
        (ours.last_hidden_state - theirs.last_hidden_state)[real].abs().max().item(),
        (ours.pooler_output - theirs.pooler_output).abs().max().item(),
    )


def test_encoder_loads_with_auto_model(run_dir, export_dir, features_dir, tiny_model_dir):
    names = {p.name for p in export_dir.iterdir()}
    assert {"config.json", "model.safetensors", "mtdnn_heads.safetensors", "task_defs.yml", "mtdnn.json", "README.md"} <= names
    run = load_run_checkpoint(run_dir / "model_0.pt")
    diff = max_encoder_diff(run, AutoModel.from_pretrained(export_dir), encoder_batch(features_dir, run.task_defs[0]))
    print(f"max |AutoModel(export) - checkpoint encoder| = {diff:.3g}")
    assert diff <= 1e-6
    text = ["A tokenizer round trip.", "Second sentence."]
    assert AutoTokenizer.from_pretrained(export_dir)(*text)["input_ids"] == AutoTokenizer.from_pretrained(tiny_model_dir)(*text)["input_ids"]


def test_api_on_the_export_equals_the_checkpoint(run_dir, export_dir):
    from_pt = MTDNNPredictor.from_checkpoint(run_dir / "model_0.pt")
    from_export = MTDNNPredictor.from_checkpoint(export_dir)
    assert from_export.tasks == from_pt.tasks == ["rte", "stsb"]
    assert from_export.max_seq_len == from_pt.max_seq_len == 64
    premises = ["A man is playing a guitar on stage.", "The cat sat on the mat.", "Stocks fell sharply on Monday."]
    hypotheses = ["Someone plays music.", "A dog is running.", "Markets went down."]
    for task in ("rte", "stsb"):
        assert from_export.predict(task, premises, hypotheses) == from_pt.predict(task, premises, hypotheses)


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_predict_cli_reads_the_export(task, run_dir, export_dir, features_dir, tmp_path):
    score = tmp_path / "scores.json"
    predict_main(["--task", task, "--checkpoint", str(export_dir), "--prep_input", str(features_dir / f"{task}_dev.json"),
                  "--score", str(score), "--max_seq_len", "64", "--with_label"])
    expected = json.loads((run_dir / f"{task}_dev_scores_epoch_0.json").read_text())
    assert json.loads(score.read_text()) == expected


def test_task_definitions_and_model_card(run_dir, export_dir, tmp_path):
    run = load_run_checkpoint(run_dir / "model_0.pt")
    assert list(load_task_defs(export_dir / "task_defs.yml").values()) == run.task_defs
    card = (export_dir / "README.md").read_text()
    acc = json.loads((run_dir / "rte_dev_scores_epoch_0.json").read_text())["metrics"]["ACC"]
    pearson = json.loads((run_dir / "stsb_dev_scores_epoch_0.json").read_text())["metrics"]["Pearson"]
    assert f"| 0 | rte | Classification | PremiseAndOneHypothesis | not_entailment, entailment | rte: ACC {acc:.2f} |" in card
    assert f"| 1 | stsb | Regression | PremiseAndOneHypothesis | (a real-valued score) | stsb: Pearson {pearson:.2f}, " in card
    # A checkpoint without score files beside it: the card says so.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run_dir / "model_0.pt", alone / "model_0.pt")
    export_main(["--checkpoint", str(alone / "model_0.pt"), "--output_dir", str(tmp_path / "out")])
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| 0 | rte | Classification | PremiseAndOneHypothesis | not_entailment, entailment | not found |" in card


def test_export_errors(run_dir, export_dir, tmp_path):
    with pytest.raises(MTDNNInputError, match=r"--output_dir exists and is not an empty folder"):
        export_main(["--checkpoint", str(run_dir / "model_0.pt"), "--output_dir", str(export_dir)])
    (export_dir.parent / "broken").mkdir()
    with pytest.raises(MTDNNInputError, match=r"broken: not an MT-DNN export folder \(no mtdnn\.json"):
        MTDNNPredictor.from_checkpoint(export_dir.parent / "broken")
    heads = tmp_path / "heads"
    shutil.copytree(export_dir, heads)
    (heads / "mtdnn_heads.safetensors").unlink()
    with pytest.raises(MTDNNInputError, match=r"mtdnn_heads\.safetensors: head weights not found"):
        MTDNNPredictor.from_checkpoint(heads)
    # The command line: one line on stderr, exit code 2, no traceback.
    done = subprocess.run(
        [sys.executable, "scripts/export_hf.py", "--checkpoint", str(tmp_path / "none.pt"), "--output_dir", str(tmp_path / "x")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [f"error: {tmp_path / 'none.pt'}: checkpoint not found"]
    assert not (tmp_path / "x").exists()


def test_strip_model_keeps_encoder_and_pooler(run_dir, tmp_path):
    out = tmp_path / "stripped.pt"
    strip_main(["--checkpoint", str(run_dir / "model_0.pt"), "--fout", str(out)])
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"state", "config"}
    assert tuple(saved["config"]) == BERT_CONFIG_KEYS
    expected = {f"bert.{k}" for k in BertModel(BertConfig(**saved["config"])).state_dict() if not k.endswith("position_ids")}
    assert set(saved["state"]) == expected  # encoder and its pooler, nothing of the heads
    assert any(k.startswith("bert.pooler.") for k in saved["state"])
    source = torch.load(run_dir / "model_0.pt", weights_only=True)["state"]
    assert all(torch.equal(value, source[key]) for key, value in saved["state"].items())


def test_strip_model_prefers_ema_weights(run_dir, tmp_path):
    checkpoint = torch.load(run_dir / "model_0.pt", weights_only=True)
    checkpoint["ema"] = {key: value + 1 for key, value in checkpoint["state"].items() if value.is_floating_point()}
    with_ema = tmp_path / "model_0.pt"
    torch.save(checkpoint, with_ema)
    strip_main(["--checkpoint", str(with_ema), "--fout", str(tmp_path / "stripped.pt")])
    state = torch.load(tmp_path / "stripped.pt", weights_only=True)["state"]
    key = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(state[key], checkpoint["state"][key] + 1)


def test_stripped_model_starts_a_new_run(run_dir, features_dir, tiny_model_dir, tmp_path):
    stripped = tmp_path / "stripped.pt"
    strip_main(["--checkpoint", str(run_dir / "model_0.pt"), "--fout", str(stripped)])
    encoder = load_encoder(ModelOptions(init_checkpoint=str(stripped)))
    reference = load_run_checkpoint(run_dir / "model_0.pt").network.bert.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in encoder.state_dict().items())
    out = train_run(stripped, features_dir, REPO / "experiments" / "glue" / "glue_task_def.yml", tmp_path / "run", "rte",
                    "--tokenizer", str(tiny_model_dir))
    assert (out / "model_0.pt").is_file() and (out / "rte_dev_scores_epoch_0.json").is_file()


def test_strip_model_refuses_a_file_without_encoder(tmp_path):
    torch.save({"state": {"scoring_list.0.proj.weight": torch.zeros(2, 2)}, "config": {}}, tmp_path / "heads.pt")
    with pytest.raises(MTDNNInputError, match=r"heads\.pt: no encoder weights \(bert\.\*\) in the checkpoint"):
        strip_main(["--checkpoint", str(tmp_path / "heads.pt"), "--fout", str(tmp_path / "out.pt")])


@pytest.mark.skipif(not (MINILM / "config.json").is_file() or not (GLUE / "RTE" / "dev.tsv").is_file(),
                    reason="the shared MiniLM model and GLUE RTE are not here")
def test_real_minilm_round_trip(features_dir, task_defs, tmp_path):
    """MiniLM fine-tuned 1 epoch on 12 RTE rows: the export's encoder and predictions equal the checkpoint's."""
    out = train_run(MINILM, features_dir, REPO / "experiments" / "glue" / "glue_task_def.yml", tmp_path / "run", "rte",
                    "--learning_rate", "3e-5", "--optimizer", "adamw")
    export_main(["--checkpoint", str(out / "model_0.pt"), "--output_dir", str(tmp_path / "export")])
    run = load_run_checkpoint(out / "model_0.pt")
    diff = max_encoder_diff(run, AutoModel.from_pretrained(tmp_path / "export"), encoder_batch(features_dir, task_defs["rte"]))
    print(f"MiniLM: max |AutoModel(export) - checkpoint encoder| = {diff:.3g}")
    # AutoModel picks SDPA; a CPU run trains and rebuilds with eager attention: same maths, other rounding.
    assert diff <= 1e-5
    # Raw RTE text (the fixture's rows are the first 12 of train.tsv) → the run's dev probabilities.
    lines = (GLUE / "RTE" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:13]
    rows = [line.split("\t") for line in lines]
    expected = json.loads((out / "rte_dev_scores_epoch_0.json").read_text())
    for source in (out / "model_0.pt", tmp_path / "export"):
        # The fixture was tokenized with prepro_std.py's default --max_seq_len 512, not the run's 64.
        # Batches of the run's --batch_size_eval 8 pad as its evaluation did: equal bit for bit. (Other batch sizes
        # pad differently and move the last digits, ~1e-5 here: SDPA kernels differ with and without padding.)
        predictor = MTDNNPredictor.from_checkpoint(source, max_seq_len=512)
        predictions = predictor.predict("rte", [r[1] for r in rows], [r[2] for r in rows], batch_size=8)
        assert [p for prediction in predictions for p in prediction.probabilities.values()] == expected["scores"]
