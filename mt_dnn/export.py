"""The export folder of a trained network (``scripts/export_hf.py``): a Hugging Face encoder plus the MT-DNN heads.

Layout of ``DIR``::

    config.json, model.safetensors   the encoder (``AutoModel.from_pretrained(DIR)`` loads it anywhere)
    tokenizer files                  the run's tokenizer (``AutoTokenizer.from_pretrained(DIR)``)
    mtdnn_heads.safetensors          every weight outside the encoder: the task heads (and a shared pooler)
    task_defs.yml                    the checkpoint's tasks, a YAML ``load_task_defs`` reads
    mtdnn.json                       head order, the run's model/train options, --max_seq_len, tokenizer ids
    README.md                        model card: tasks, label sets, dev metrics

``load_export`` rebuilds the same network ``load_run_checkpoint`` rebuilds from the ``.pt``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModel, PreTrainedModel

from data_utils.errors import MTDNNInputError
from data_utils.score_files import read_score_file
from data_utils.task_def import TaskDef, load_task_defs, task_def_to_dict
from mt_dnn.checkpoint import RunCheckpoint
from mt_dnn.matcher import SANBertNetwork
from mt_dnn.options import TrainOptions, model_options_from_dict, options_to_dict, rebuild_attention
from mt_dnn.state_keys import ENCODER_PREFIX, check_state_keys

MANIFEST = "mtdnn.json"
HEADS_FILE = "mtdnn_heads.safetensors"
TASK_DEFS_FILE = "task_defs.yml"
EXPORT_VERSION = 1
_CHECKPOINT_NAME = re.compile(r"^model_(\d+)(?:_(\d+))?\.pt$")


def is_export_dir(path: str | Path) -> bool:
    """True for a folder holding an export's ``mtdnn.json``."""
    return (Path(path) / MANIFEST).is_file()


def recorded_max_seq_len(source: str | Path) -> int | None:
    """The training run's ``--max_seq_len`` as a ``.pt`` checkpoint or an export folder records it, if it does."""
    path = Path(source)
    if is_export_dir(path):
        value = _read_manifest(path).get("max_seq_len")
    else:
        # mmap: only the small config is read; the tensors stay on disk.
        config = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("config") or {}
        value = (config.get("data") or {}).get("max_seq_len")
    return value if isinstance(value, int) and value > 0 else None


def head_weights(network: SANBertNetwork) -> dict[str, torch.Tensor]:
    """Every weight of ``network`` outside the shared encoder (heads, a shared pooler), contiguous on CPU."""
    return {
        key: value.detach().cpu().contiguous()
        for key, value in network.state_dict().items()
        if not key.startswith(ENCODER_PREFIX)
    }


def task_defs_yaml(task_defs: list[TaskDef]) -> str:
    """The YAML definitions of ``task_defs`` (keys left unset omitted), readable by ``load_task_defs``."""
    body = {}
    for task_def in task_defs:
        entry = task_def_to_dict(task_def)
        name = entry.pop("name")
        body[name] = {key: value for key, value in entry.items() if value is not None}
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def dev_scores(checkpoint: str | Path, task_names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Dev metrics per task and dataset from the score files beside ``checkpoint`` (same epoch or update)."""
    path = Path(checkpoint)
    match = _CHECKPOINT_NAME.match(path.name)
    if match is None:
        return {}
    suffix = f"updates_{match.group(2)}" if match.group(2) else f"epoch_{match.group(1)}"
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for score_file in sorted(path.parent.glob(f"*_dev_scores_{suffix}.json")):
        dataset = score_file.name[: -len(f"_dev_scores_{suffix}.json")]
        task = dataset if dataset in task_names else dataset.split("_", 1)[0]
        if task in task_names:
            found.setdefault(task, {})[dataset] = read_score_file(score_file).metrics
    return found


def model_card(run: RunCheckpoint, checkpoint: str | Path, metrics: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The export's README.md: what the model is, how to load it, its tasks, label sets and dev metrics."""
    encoder = run.encoder_config
    lines = [
        "---",
        "library_name: transformers",
        "tags: [mt-dnn, multi-task]",
        "---",
        f"# MT-DNN model exported from `{Path(checkpoint).name}`",
        "",
        f"Shared encoder: {encoder.get('model_type', '?')}, {encoder.get('num_hidden_layers', '?')} layers, "
        f"hidden size {encoder.get('hidden_size', '?')}; one head per task below.",
        "",
        "```python",
        "from transformers import AutoModel, AutoTokenizer  # the encoder alone",
        'encoder = AutoModel.from_pretrained("THIS_FOLDER")',
        "from mt_dnn import MTDNNPredictor  # encoder and task heads",
        'predictor = MTDNNPredictor.from_checkpoint("THIS_FOLDER")',
        'predictor.predict("TASK", ["premise"], ["hypothesis"])',
        "```",
        "",
        "| head | task | task type | data format | labels | dev metrics |",
        "|---|---|---|---|---|---|",
    ]
    for index, task_def in enumerate(run.task_defs):
        labels = ", ".join(task_def.labels) if task_def.labels else ("(a real-valued score)" if task_def.spec.real_valued else "(class ids)")
        found = metrics.get(task_def.name)
        reported = "; ".join(
            f"{dataset}: " + ", ".join(f"{name} {_number(value)}" for name, value in values.items())
            for dataset, values in (found or {}).items()
        )
        lines.append(
            f"| {index} | {task_def.name} | {task_def.task_type.name} | {task_def.data_format.name} | {labels} | "
            f"{reported or 'not found'} |"
        )
    lines += [
        "",
        "Dev metrics come from the score files `<dataset>_dev_scores_<epoch or updates>.json` beside the "
        "checkpoint; `not found` means there were none.",
        "",
    ]
    return "\n".join(lines)


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else json.dumps(value)


def write_export(run: RunCheckpoint, tokenizer: Any, checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Write the export folder of ``run`` (see the module docstring); the folder appears whole or not at all."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise MTDNNInputError("--output_dir exists and is not an empty folder: choose another or remove it", output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        run.network.bert.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        save_file(head_weights(run.network), str(staging / HEADS_FILE), metadata={"format": "pt"})
        (staging / TASK_DEFS_FILE).write_text(task_defs_yaml(run.task_defs), encoding="utf-8")
        manifest = {
            "mtdnn_export": EXPORT_VERSION,
            "tasks": run.task_names,
            "model": options_to_dict(run.model_opts),
            "train": options_to_dict(run.train_opts),
            "tokenizer": {key: value for key, value in run.tokenizer.items() if key != "name"},
            "max_seq_len": recorded_max_seq_len(checkpoint),
            "source_checkpoint": str(checkpoint),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        (staging / "README.md").write_text(model_card(run, checkpoint, dev_scores(checkpoint, run.task_names)), encoding="utf-8")
        if output_dir.exists():
            output_dir.rmdir()  # empty, checked above
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise MTDNNInputError(f"not an MT-DNN export folder (no {MANIFEST}; write one with scripts/export_hf.py)", folder)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise MTDNNInputError(f"invalid JSON: {err}", path) from None
    if manifest.get("mtdnn_export") != EXPORT_VERSION:
        raise MTDNNInputError(f"export version {manifest.get('mtdnn_export')!r}, this version reads {EXPORT_VERSION}", path)
    return manifest


def _load_encoder(folder: Path, kernel: str) -> PreTrainedModel:
    try:
        try:
            return AutoModel.from_pretrained(folder, attn_implementation=kernel)  # the kernel training used
        except (ValueError, ImportError):
            return AutoModel.from_pretrained(folder)
    except OSError as err:
        raise MTDNNInputError(f"cannot load the exported encoder: {str(err).splitlines()[0]}", folder) from None


def load_export(folder: str | Path, device: torch.device | str = "cpu") -> RunCheckpoint:
    """The network of an export folder (encoder, every head, strict weights) in eval mode on ``device``."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    defined = load_task_defs(folder / TASK_DEFS_FILE)
    absent = [name for name in manifest["tasks"] if name not in defined]
    if absent:
        raise MTDNNInputError(f"task {absent[0]!r} of {MANIFEST} is not defined here", folder / TASK_DEFS_FILE)
    task_defs = [defined[name] for name in manifest["tasks"]]
    model_opts = model_options_from_dict(manifest["model"])
    train_opts = TrainOptions(**manifest["train"])
    tokenizer = {"name": str(folder), **manifest.get("tokenizer", {})}
    encoder = _load_encoder(folder, rebuild_attention(model_opts.attn_implementation))
    network = SANBertNetwork(encoder, task_defs, model_opts, sep_token_id=tokenizer.get("sep_token_id"))
    heads_path = folder / HEADS_FILE
    if not heads_path.is_file():
        raise MTDNNInputError("head weights not found", heads_path)
    result = network.load_state_dict(load_file(str(heads_path)), strict=False)
    missing = [key for key in result.missing_keys if not key.startswith(ENCODER_PREFIX)]
    check_state_keys(missing, result.unexpected_keys, heads_path, prefix="head weights do not fit the exported tasks")
    network.to(device).eval()
    return RunCheckpoint(network, task_defs, model_opts, train_opts, encoder.config.to_dict(), tokenizer)
