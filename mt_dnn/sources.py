"""Where encoders and tokenizers come from: a Hugging Face hub id, a local folder or an MT-DNN ``.pt``.

Checked before anything is loaded, so a typo in a path is one line naming the flag, not a hub
error about repository ids, and a ``train.py`` output folder passed as a model says what to pass instead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_utils.errors import MTDNNInputError

_WEIGHT_SUFFIXES = (".pt", ".bin", ".safetensors", ".pth")


def _looks_like_path(source: str) -> bool:
    """True when ``source`` can only be meant as a local path (a hub id is ``name`` or ``org/name``)."""
    if source.startswith(("/", ".", "~")) or source.endswith(_WEIGHT_SUFFIXES) or source.count("/") > 1:
        return True
    return "/" in source and Path(source.split("/")[0]).is_dir()


def _is_run_folder(folder: Path) -> bool:
    """A ``train.py`` output folder: its ``config.json`` is a run config, not a model config."""
    config = folder / "config.json"
    if not config.is_file():
        return any(folder.glob("model_*.pt"))
    try:
        return "task_defs" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def check_model_source(source: str, flag: str, lead: str) -> None:
    """``MTDNNInputError`` (``lead: why``) when ``source`` of ``flag`` is a missing path or a ``train.py`` run folder."""
    path = Path(source).expanduser()
    if path.is_dir() and _is_run_folder(path):
        checkpoints = sorted(path.glob("model_*.pt"))
        example = checkpoints[-1] if checkpoints else path / "model_0.pt"
        if flag == "--init_checkpoint":
            raise MTDNNInputError(
                f"{lead}: {source} is a train.py output folder, not a model: pass one of its checkpoints "
                f"(e.g. {example}) to {flag} and name the tokenizer with --tokenizer"
            )
        raise MTDNNInputError(f"{lead}: {source} is a train.py output folder; {flag} needs a tokenizer id or folder")
    if not path.exists() and _looks_like_path(source):
        raise MTDNNInputError(f"{lead}: no such file or folder ({flag})")


def load_tokenizer(source: str, cache_dir: str | None, flag: str) -> Any:
    """``AutoTokenizer.from_pretrained(source)`` with a one-line error naming ``flag`` when it fails."""
    from transformers import AutoTokenizer

    lead = f"cannot load the tokenizer {source!r}"
    check_model_source(source, flag, lead)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, cache_dir=cache_dir)
    except (OSError, ValueError) as err:  # missing files, offline hub, bad repo id, unknown tokenizer class
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MTDNNInputError(f"{lead} ({flag}): {first_line}") from None
    check_vocabulary(tokenizer, source, flag)
    return tokenizer


def check_vocabulary(tokenizer: Any, source: str, flag: str) -> None:
    """Refuse a tokenizer that knows only its special tokens: a folder with a config but no vocabulary
    file yields one, and it turns every word into [UNK] without a word."""
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)) + 1:
        raise MTDNNInputError(
            f"{flag} {source}: the tokenizer has no vocabulary beyond its {len(tokenizer)} special tokens "
            "(no vocab.txt / tokenizer.json in the folder?)"
        )


def run_tokenizer(tokenizer_flag: str | None, init_checkpoint: str, cache_dir: str | None) -> tuple[str, Any]:
    """``(source, tokenizer)`` of a training run: ``--tokenizer``, else ``--init_checkpoint`` unless that is a ``.pt``."""
    if tokenizer_flag:
        return tokenizer_flag, load_tokenizer(tokenizer_flag, cache_dir, "--tokenizer")
    if init_checkpoint.endswith(".pt"):
        if not Path(init_checkpoint).is_file():
            raise MTDNNInputError(f"--init_checkpoint {init_checkpoint}: no such file")
        raise MTDNNInputError("--init_checkpoint is an MT-DNN .pt file: name its tokenizer with --tokenizer")
    return init_checkpoint, load_tokenizer(init_checkpoint, cache_dir, "--init_checkpoint")
