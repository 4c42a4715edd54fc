"""Canonical rows → tokenized JSON-lines features with one tokenizer (SPEC §3.3), in-process or over workers.

The tokenizer is passed in (a ``transformers`` fast or slow tokenizer object); this module never
imports ``transformers`` itself. ``prepro_std.py`` is the command line around it.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import multiprocessing
import os
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from data_utils.canonical import CanonicalRow, iter_canonical
from data_utils.errors import MTDNNInputError
from data_utils.file_io import atomic_write
from data_utils.formats import get_data_format
from data_utils.task_def import DATASET_ALIASES, TaskDef, task_name_of

logger = logging.getLogger("mt_dnn")

CHUNK_ROWS = 2000
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class EncodeOptions:
    """How rows become features: length limit, padding, and whether we lowercase texts ourselves."""

    max_seq_len: int = 512
    do_padding: bool = False
    lowercase: bool = False


Encoded = tuple[list[list[int]], list[list[int]], list[list[int]]]


class FeatureEncoder:
    """Turns canonical rows into JSON lines with one tokenizer (picklable for worker processes)."""

    def __init__(self, tokenizer: Any, options: EncodeOptions):
        self.tokenizer = tokenizer
        self.options = options
        special = tokenizer.num_special_tokens_to_add(pair=True)
        if options.max_seq_len <= special:
            raise MTDNNInputError(
                f"--max_seq_len {options.max_seq_len} leaves no room for text: a pair already takes {special} special tokens"
            )
        if options.do_padding and tokenizer.pad_token_id is None:
            raise MTDNNInputError("--do_padding: the tokenizer has no pad token")
        self.has_type_ids = "token_type_ids" in tokenizer.model_input_names
        self._pair_backend: Any = None
        self._word_backend: Any = None
        self._use_rust_backend()

    # --- tokenization -------------------------------------------------------------------

    def _use_rust_backend(self) -> None:
        """Call the Rust tokenizer directly, set up as the wrapper's own call would set it.

        The wrapper's batch call also computes offsets and builds per-row dicts; skipping that
        makes the whole path 1.5-2x faster (bench/prepro_bench.py). A probe confirms that
        the shortcut gives exactly the wrapper's ids before it is trusted.
        """
        tok = self.tokenizer
        if not getattr(tok, "is_fast", False) or getattr(tok, "backend_tokenizer", None) is None:
            return
        length = self.options.max_seq_len
        pair = copy.deepcopy(tok.backend_tokenizer)
        pair.enable_truncation(max_length=length, stride=0, strategy="longest_first", direction=tok.truncation_side)
        if self.options.do_padding:
            pair.enable_padding(
                length=length,
                direction=tok.padding_side,
                pad_id=tok.pad_token_id,
                pad_token=tok.pad_token,
                pad_type_id=tok.pad_token_type_id,
            )
        else:
            pair.no_padding()
        word = copy.deepcopy(tok.backend_tokenizer)
        word.no_truncation()
        word.no_padding()
        for backend in (pair, word):
            backend.encode_special_tokens = bool(getattr(tok, "split_special_tokens", False))
        self._pair_backend, self._word_backend = pair, word
        if not self._probe_matches():
            logger.info("the tokenizer's Rust backend disagrees with its wrapper; using the slower wrapper call")
            self._pair_backend = self._word_backend = None

    def _probe_matches(self) -> bool:
        """Whether the Rust shortcut reproduces the wrapper on a few pairs, singles, long texts and words."""
        long_text = "probe " * (self.options.max_seq_len + 8)
        firsts = ["The quick brown fox, 2 dogs!", long_text, "Short premise."]
        seconds = ["Jumps over the lazy dog's tail.", "short hypothesis", long_text]
        words = ["Hello", "world's", "Ünïcode", "3.14", "naïve"]
        backend = (self._encode_rust(firsts, seconds), self._encode_rust(firsts, None), self._pieces_rust(words))
        wrapper = (self._encode_wrapper(firsts, seconds), self._encode_wrapper(firsts, None), self._pieces_wrapper(words))
        return backend == wrapper

    def _encode_rust(self, firsts: list[str], seconds: list[str] | None) -> Encoded:
        inputs: list[Any] = firsts if seconds is None else list(zip(firsts, seconds))
        encode = getattr(self._pair_backend, "encode_batch_fast", self._pair_backend.encode_batch)
        encodings = encode(inputs, add_special_tokens=True)
        ids = [e.ids for e in encodings]
        types = [e.type_ids for e in encodings] if self.has_type_ids else [[0] * len(i) for i in ids]
        # Unpadded, every token is attended: building the ones here is cheaper than Rust's list.
        masks = [e.attention_mask for e in encodings] if self.options.do_padding else [[1] * len(i) for i in ids]
        return ids, types, masks

    def _encode_wrapper(self, firsts: list[str], seconds: list[str] | None) -> Encoded:
        encoded = self.tokenizer(
            firsts,
            seconds,
            truncation="longest_first",
            max_length=self.options.max_seq_len,
            padding="max_length" if self.options.do_padding else False,
            return_attention_mask=True,
        )
        ids = encoded["input_ids"]
        types = encoded.get("token_type_ids") if self.has_type_ids else None
        if types is None:
            types = [[0] * len(i) for i in ids]
        return ids, types, encoded["attention_mask"]

    def _pieces_rust(self, words: list[str]) -> list[list[int]]:
        encode = getattr(self._word_backend, "encode_batch_fast", self._word_backend.encode_batch)
        return [e.ids for e in encode(words, add_special_tokens=False)]

    def _pieces_wrapper(self, words: list[str]) -> list[list[int]]:
        return self.tokenizer(words, add_special_tokens=False)["input_ids"]

    def encode_texts(self, firsts: list[str], seconds: list[str] | None) -> Encoded:
        """``(token ids, type ids, attention masks)`` of single texts or of (first, second) pairs."""
        if self.options.lowercase:
            firsts = [text.lower() for text in firsts]
            seconds = None if seconds is None else [text.lower() for text in seconds]
        if not firsts:
            return [], [], []
        if self._pair_backend is not None:
            return self._encode_rust(firsts, seconds)
        return self._encode_wrapper(firsts, seconds)

    def word_pieces(self, words: list[str]) -> list[list[int]]:
        """Sub-token ids of each word tokenized alone, without special tokens."""
        if self.options.lowercase:
            words = [word.lower() for word in words]
        if not words:
            return []
        if self._word_backend is not None:
            return self._pieces_rust(words)
        return self._pieces_wrapper(words)

    # --- features -----------------------------------------------------------------------

    def check_task(self, task_def: TaskDef) -> None:
        """Fail early when a task's data format cannot be encoded with these options."""
        get_data_format(task_def.data_format).check_encodable(self, task_def)

    def encode_rows(self, rows: list[CanonicalRow], task_def: TaskDef) -> str:
        """The JSON lines (``json.dumps`` defaults, ``\\n``-terminated) of a chunk of rows, in order."""
        features = get_data_format(task_def.data_format).features(self, rows, task_def)
        return "".join(json.dumps(feature) + "\n" for feature in features)


# --- worker processes ---------------------------------------------------------------------

_worker_encoder: FeatureEncoder | None = None


def _init_worker(encoder: FeatureEncoder) -> None:
    global _worker_encoder
    _worker_encoder = encoder
    # Park what the worker inherited from the parent (transformers, torch) where the collector
    # never scans it: scanning would touch, and so copy, every page the fork shares.
    gc.freeze()


def _encode_in_worker(job: tuple[TaskDef, list[CanonicalRow]]) -> str:
    task_def, rows = job
    assert _worker_encoder is not None, "worker started without an encoder"
    with _gc_paused():
        return _worker_encoder.encode_rows(rows, task_def)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: rows and features hold no cycles, and its scans cost ~10% here."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunked(rows: Iterable[CanonicalRow], size: int) -> Iterator[list[CanonicalRow]]:
    """Consecutive lists of ``size`` rows (the last one shorter)."""
    chunk: list[CanonicalRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class FeatureWriter:
    """Writes the features of canonical files, in this process or over a pool of workers.

    Use as a context manager so that the pool (``workers > 1``) is started once and closed. Rows
    are read, checked and sent out chunk by chunk, so reading overlaps the workers' tokenization;
    a few chunks per worker are in flight at a time, and results are written in file order.
    """

    def __init__(self, encoder: FeatureEncoder, workers: int = 1, chunk_rows: int = CHUNK_ROWS):
        if workers < 1:
            raise MTDNNInputError(f"--workers must be at least 1, got {workers}")
        self.encoder = encoder
        self.workers = workers
        self.chunk_rows = chunk_rows
        self._pool: Any = None

    def __enter__(self) -> FeatureWriter:
        if self.workers > 1:
            self._pool = _start_pool(self.encoder, self.workers)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            if exc_info[0] is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None

    def write(self, in_path: str | Path, out_path: str | Path, task_def: TaskDef) -> int:
        """Tokenize one canonical file into ``out_path`` (atomically); returns the number of rows."""
        self.encoder.check_task(task_def)
        count = 0
        with _gc_paused(), atomic_write(out_path) as handle:
            chunks = _chunked(iter_canonical(in_path, task_def), self.chunk_rows)
            for rows, text in self._encoded(chunks, task_def):
                handle.write(text)
                count += rows
        return count

    def _encoded(self, chunks: Iterable[list[CanonicalRow]], task_def: TaskDef) -> Iterator[tuple[int, str]]:
        """``(rows, JSON lines)`` of each chunk in order, encoded here or by the pool."""
        if self._pool is None:
            for chunk in chunks:
                yield len(chunk), self.encoder.encode_rows(chunk, task_def)
            return
        pending: deque[tuple[int, Any]] = deque()
        for chunk in chunks:
            pending.append((len(chunk), self._pool.apply_async(_encode_in_worker, ((task_def, chunk),))))
            while pending and (len(pending) > 2 * self.workers or pending[0][1].ready()):
                rows, result = pending.popleft()
                yield rows, result.get()
        for rows, result in pending:
            yield rows, result.get()


def _start_pool(encoder: FeatureEncoder, workers: int) -> Any:
    """A process pool whose workers hold ``encoder``; each runs the Rust tokenizer single-threaded."""
    # Fork skips re-importing transformers in every worker; elsewhere spawn is the safe choice.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    # The workers already split the work, so the Rust thread pool would only oversubscribe the
    # cores; setting the variable before forking also keeps tokenizers from warning about it.
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        return multiprocessing.get_context(method).Pool(workers, initializer=_init_worker, initargs=(encoder,))
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def tokenize_dataset(
    in_path: str | Path,
    out_path: str | Path,
    task_def: TaskDef,
    encoder: FeatureEncoder,
    workers: int = 1,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """Tokenize one canonical TSV into a JSON-lines file; returns the number of rows written."""
    with FeatureWriter(encoder, workers, chunk_rows) as writer:
        return writer.write(in_path, out_path, task_def)


# --- files and folders --------------------------------------------------------------------


class Dataset(NamedTuple):
    """A canonical file to process: its name (file stem), path and task."""

    name: str
    path: Path
    task_def: TaskDef


def task_of_dataset(name: str, task_defs: dict[str, TaskDef]) -> TaskDef | None:
    """The task of a dataset name (``scitail_001_train`` → scitail, ``ax_test`` → mnli), if defined."""
    task = task_name_of(name)
    if task not in task_defs:
        task = DATASET_ALIASES.get(task, task)
    return task_defs.get(task)


def find_datasets(
    root_dir: Path,
    task_defs: dict[str, TaskDef],
    task_def_path: str | Path,
    tasks: list[str] | None = None,
    datasets: list[str] | None = None,
) -> list[Dataset]:
    """The canonical files of ``root_dir`` to process, all of them or those picked by ``tasks``/``datasets``."""
    if datasets:
        found = []
        for name in datasets:
            name = name.removesuffix(".tsv")
            path = root_dir / f"{name}.tsv"
            if not path.is_file():
                raise MTDNNInputError(f"--datasets {name}: no canonical file {path}")
            task_def = task_of_dataset(name, task_defs)
            if task_def is None:
                raise MTDNNInputError(f"--datasets {name}: task {task_name_of(name)!r} is not defined", task_def_path)
            found.append(Dataset(name, path, task_def))
        return found
    paths = sorted(p for p in root_dir.glob("*.tsv") if p.is_file() and not p.name.startswith("."))
    if tasks:
        for task in tasks:
            if task_of_dataset(task, task_defs) is None:
                raise MTDNNInputError(f"--tasks {task}: task is not defined", task_def_path)
            if not any(task_name_of(p.stem) == task for p in paths):
                raise MTDNNInputError(f"--tasks {task}: no canonical file {task}_*.tsv in {root_dir}")
        paths = [p for p in paths if task_name_of(p.stem) in tasks]
    if not paths:
        raise MTDNNInputError(f"no canonical .tsv files in {root_dir}")
    found = []
    for path in paths:
        task_def = task_of_dataset(path.stem, task_defs)
        if task_def is None:
            raise MTDNNInputError(
                f"task {task_name_of(path.stem)!r} is not defined in {task_def_path}; "
                "pick the files to process with --tasks or --datasets",
                path,
            )
        found.append(Dataset(path.stem, path, task_def))
    return found


def model_dir_name(model: str) -> str:
    """The output folder of a tokenizer: an HF id as given, a local folder's last path component."""
    local = Path(model)
    if local.is_dir():
        return local.resolve().name
    if not _HF_ID.match(model) or any(part in (".", "..") for part in model.split("/")):
        raise MTDNNInputError(f"--model {model!r} is neither a local folder nor a Hugging Face model id")
    return model


def output_dir(root_dir: Path, model: str) -> Path:
    """``<root_dir>/<model dir>``, refusing anything that would land outside ``root_dir``."""
    out = root_dir / model_dir_name(model)
    if not out.resolve().is_relative_to(root_dir.resolve()) or out.resolve() == root_dir.resolve():
        raise MTDNNInputError(f"--model {model!r} would write outside {root_dir}")
    return out


def wants_own_lowercasing(tokenizer: Any, requested: bool) -> bool:
    """Whether to lowercase texts here: only when asked and the tokenizer has no setting of its own."""
    if not requested:
        return False
    own = tokenizer.init_kwargs.get("do_lower_case")
    if own is not None:
        logger.info("the tokenizer sets do_lower_case=%s itself; --do_lower_case is left to it", own)
        return False
    return True
