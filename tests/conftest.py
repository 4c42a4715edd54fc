"""Shared fixtures for the training-core tests: a tiny random BERT saved with the real MiniLM
tokenizer, JSON-lines features with dev copies, task definitions, and a batch builder."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from data_utils.task_def import TaskDef, load_task_defs
from mt_dnn.batcher import Batch, Collater, TaskDataset
from mt_dnn.encoder import load_encoder
from mt_dnn.matcher import SANBertNetwork
from mt_dnn.options import ModelOptions

REPO = Path(__file__).resolve().parents[1]
FEATURES = REPO / "tests" / "data" / "features"
# CI clones the repository with the shared folder beside it.
MINILM = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "all-MiniLM-L6-v2"
FEATURE_DATASETS = ("rte", "stsb", "cola", "qnnli", "ner", "squad")
TINY_BERT = {
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}

# The machine is shared: with more threads than free cores, OpenMP spin-waits make tiny models ~100x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny random ``BertModel`` and the MiniLM tokenizer (loadable by ``from_pretrained``)."""
    if not MINILM.is_dir():
        pytest.skip(f"the shared MiniLM tokenizer is not at {MINILM}")
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(BertConfig(**TINY_BERT)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with ``{name}_train.json`` fixtures and ``{name}_dev.json`` copies of them."""
    folder = tmp_path_factory.mktemp("features")
    for name in FEATURE_DATASETS:
        shutil.copy(FEATURES / f"{name}_train.json", folder / f"{name}_train.json")
        if name != "squad":  # span dev rows need offsets and contexts the train fixture lacks
            shutil.copy(FEATURES / f"{name}_train.json", folder / f"{name}_dev.json")
    return folder


@pytest.fixture(scope="session")
def task_defs() -> dict[str, TaskDef]:
    """Every task of the GLUE, NER and SQuAD YAMLs by name."""
    defs: dict[str, TaskDef] = {}
    for yml in ("glue/glue_task_def.yml", "ner/ner_task_def.yml", "squad/squad_task_def.yml"):
        defs.update(load_task_defs(REPO / "experiments" / yml))
    return defs


@pytest.fixture(scope="session")
def make_batch(task_defs: dict[str, TaskDef]) -> Callable[..., Batch]:
    """``make_batch(name, n=4, task_def=None, start=0, pad_to=None)``: a collated batch of a fixture's rows."""

    def build(name: str, n: int = 4, task_def: TaskDef | None = None, start: int = 0, pad_to: int | None = None) -> Batch:
        task_def = task_def or task_defs[name]
        dataset = TaskDataset(FEATURES / f"{name}_train.json", task_def, name)
        items = [dataset[i] for i in range(start, min(start + n, len(dataset)))]
        collater = Collater(pad_token_id=0, max_seq_len=pad_to or 512, do_padding=pad_to is not None, keep_samples=True)
        return collater(items)

    return build


@pytest.fixture(scope="session")
def build_network(tiny_model_dir: Path) -> Callable[..., SANBertNetwork]:
    """``build_network(task_defs, seed=0, **model_options)``: the tiny encoder with one head per task."""

    def build(defs: list[TaskDef], seed: int = 0, **options) -> SANBertNetwork:
        opts = ModelOptions(init_checkpoint=str(tiny_model_dir), **options)
        torch.manual_seed(seed)
        return SANBertNetwork(load_encoder(opts), list(defs), opts, sep_token_id=102)

    return build
