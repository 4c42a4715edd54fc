"""File helpers shared by every reader and writer: atomic writes, line iteration."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from data_utils.errors import MTDNNInputError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if "b" in mode:
        encoding = None
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline="" if encoding else None) as handle:
            yield handle
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def iter_lines(path: str | Path, strip: bool = True) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` from a UTF-8 text file (a byte-order mark is dropped).

    With ``strip`` the line loses whitespace at both ends, as upstream's ``line.strip()``;
    otherwise only the line break goes.
    """
    path = Path(path)
    if not path.is_file():
        raise MTDNNInputError("file not found", path)
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, (line.strip() if strip else line.rstrip("\r\n"))


def clean_text(text: str) -> str:
    """Replace tabs and line breaks inside a text field by spaces (canonical TSV cells)."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
