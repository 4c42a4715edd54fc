"""Plain Hugging Face fine-tune of one GLUE pair task: the accuracy reference for MT-DNN single-task runs.

Reads the raw GLUE TSVs (no canonical files, no mt_dnn code) and runs an explicit training loop:
AdamW (weight decay 0.01, none on biases and LayerNorm weights), linear schedule with 10 % warmup,
global gradient clipping at 1.0, dynamic padding, dev evaluation after every epoch.

    python bench/hf_reference.py --task rte --glue_dir ../shared/data/glue \
        --model ../shared/models/all-MiniLM-L6-v2 --max_seq_len 128 --batch_size 16 \
        --lr 3e-5 --epochs 3 --seed 2018 --output rte_hf.json

Smoke run: add ``--max_train_rows 64 --epochs 1``. The last stdout line is the result as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import atomic_write, iter_lines
from data_utils.log_utils import setup_logging

SHARED = Path(__file__).resolve().parents[1].parent / "shared"  # the offline GLUE copy and MiniLM, beside the repo
Example = tuple[str, str, int | float]
RTE_LABELS = {"not_entailment": 0, "entailment": 1}  # same ids as experiments/glue/glue_task_def.yml


def _rte_row(cols: list[str]) -> Example:
    """index, sentence1, sentence2, label."""
    if len(cols) != 4:
        raise ValueError(f"expected 4 columns, got {len(cols)}")
    if cols[3] not in RTE_LABELS:
        raise ValueError(f"label: {cols[3]!r} is not one of {sorted(RTE_LABELS)}")
    return cols[1], cols[2], RTE_LABELS[cols[3]]


def _mrpc_row(cols: list[str]) -> Example:
    """Quality, #1 ID, #2 ID, #1 String, #2 String."""
    if len(cols) != 5:
        raise ValueError(f"expected 5 columns, got {len(cols)}")
    if cols[0] not in ("0", "1"):
        raise ValueError(f"Quality: {cols[0]!r} is not 0 or 1")
    return cols[3], cols[4], int(cols[0])


def _stsb_row(cols: list[str]) -> Example:
    """sentence1, sentence2 and score are the last three columns."""
    if len(cols) < 3:
        raise ValueError(f"expected at least 3 columns, got {len(cols)}")
    try:
        return cols[-3], cols[-2], float(cols[-1])
    except ValueError:
        raise ValueError(f"score: {cols[-1]!r} is not a number") from None


def accuracy(preds: np.ndarray, golds: np.ndarray) -> dict[str, float]:
    """Accuracy ×100 (RTE)."""
    return {"accuracy": 100 * float(accuracy_score(golds, preds))}


def accuracy_f1(preds: np.ndarray, golds: np.ndarray) -> dict[str, float]:
    """Accuracy and positive-class F1, both ×100 (MRPC)."""
    return {**accuracy(preds, golds), "f1": 100 * float(f1_score(golds, preds))}


def pearson_spearman(preds: np.ndarray, golds: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation ×100 (STS-B)."""
    return {"pearson": 100 * float(pearsonr(preds, golds)[0]), "spearman": 100 * float(spearmanr(preds, golds)[0])}


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's files live, how to parse a row, its head size (1 = regression), its dev metrics."""

    folder: str
    parse: Callable[[list[str]], Example]
    num_labels: int
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]


TASKS = {"rte": TaskSpec("RTE", _rte_row, 2, accuracy), "mrpc": TaskSpec("MRPC", _mrpc_row, 2, accuracy_f1),
         "stsb": TaskSpec("STS-B", _stsb_row, 1, pearson_spearman)}


def read_split(path: Path, parse: Callable[[list[str]], Example], max_rows: int | None = None) -> list[Example]:
    """Read a raw GLUE TSV the upstream way (strip, split on tabs, no quoting, header skipped)."""
    rows: list[Example] = []
    for line_no, line in iter_lines(path):  # utf-8-sig: MRPC's byte-order mark goes
        if line_no == 1:
            continue
        if max_rows is not None and len(rows) >= max_rows:
            break
        try:
            rows.append(parse(line.split("\t")))
        except ValueError as err:
            raise MTDNNInputError(str(err), path, line_no) from None
    if not rows:
        raise MTDNNInputError("no data rows", path)
    return rows


def encode(tokenizer: PreTrainedTokenizerBase, rows: list[Example], max_seq_len: int) -> list[dict]:
    """Tokenize each pair (truncated, unpadded) and attach its label for the collator."""
    out = []
    for s1, s2, label in rows:
        features = dict(tokenizer(s1, s2, truncation=True, max_length=max_seq_len))
        features["labels"] = label
        out.append(features)
    return out


@torch.no_grad()
def evaluate(model: PreTrainedModel, loader: DataLoader, device: torch.device, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """Predict the whole loader; returns (predictions, gold labels)."""
    model.eval()
    preds, golds = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(**batch).logits
        preds.append((logits[:, 0] if regression else logits.argmax(-1)).cpu().numpy())
        golds.append(batch["labels"].cpu().numpy())
    return np.concatenate(preds), np.concatenate(golds)


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW with decay on every weight except biases and LayerNorm weights."""
    no_decay = ("bias", "LayerNorm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--glue_dir", type=Path, default=SHARED / "data" / "glue")
    parser.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--max_seq_len", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--max_train_rows", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--output", type=Path, default=None, help="also write the result JSON here")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    for name in ("max_seq_len", "batch_size", "epochs", "max_train_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Fine-tune, evaluate each epoch, print (and optionally write) the result JSON."""
    args = parse_args(argv)
    logger = setup_logging()
    spec = TASKS[args.task]
    if not Path(args.model).is_dir():
        raise MTDNNInputError("model folder not found", args.model)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # before from_pretrained: the new classifier's init depends on it
    device = torch.device(args.device)
    task_dir = args.glue_dir / spec.folder
    train_rows = read_split(task_dir / "train.tsv", spec.parse, args.max_train_rows)
    dev_rows = read_split(task_dir / "dev.tsv", spec.parse)
    logger.info("%s: %d train rows, %d dev rows", args.task, len(train_rows), len(dev_rows))

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=spec.num_labels).to(device)
    regression = spec.num_labels == 1
    collate = DataCollatorWithPadding(tokenizer)
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(encode(tokenizer, train_rows, args.max_seq_len), batch_size=args.batch_size,
                              shuffle=True, generator=generator, collate_fn=collate)
    dev_loader = DataLoader(encode(tokenizer, dev_rows, args.max_seq_len), batch_size=args.batch_size,
                            shuffle=False, collate_fn=collate)
    optimizer = build_optimizer(model, args.lr)
    total_steps = math.ceil(len(train_rows) / args.batch_size) * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total_steps), total_steps)

    epochs, train_seconds = [], 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        loss_sum, start = 0.0, time.perf_counter()
        for batch in train_loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss  # the model picks CE or, for num_labels=1, MSE
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.item() * batch["labels"].shape[0]  # .item() also syncs CUDA before the clock stops
        seconds = time.perf_counter() - start
        train_seconds += seconds
        metrics = spec.metrics(*evaluate(model, dev_loader, device, regression))
        record = {"epoch": epoch, "train_loss": loss_sum / len(train_rows),
                  "train_examples_per_s": len(train_rows) / seconds, **metrics}
        logger.info("epoch %d: %s", epoch, json.dumps(record))
        epochs.append(record)

    result = {"task": args.task, "model": args.model, "seed": args.seed, "lr": args.lr,
              "batch_size": args.batch_size, "max_seq_len": args.max_seq_len, "device": args.device,
              "train_rows": len(train_rows), "dev_rows": len(dev_rows), "epochs": epochs,
              "final": metrics,
              "train_examples_per_s": len(train_rows) * args.epochs / train_seconds}
    line = json.dumps(result)
    print(line)
    if args.output:
        with atomic_write(args.output) as handle:
            handle.write(line + "\n")
    return result


if __name__ == "__main__":
    run_cli(main)
