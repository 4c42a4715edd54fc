"""File helpers shared by every reader and writer: atomic writes, line iteration."""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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


def remove_stale_temp_files(folder: str | Path, name_glob: str) -> list[Path]:
    """Delete the temp files that ``atomic_write`` left for targets matching ``name_glob`` when a process was killed."""
    stale = sorted(Path(folder).glob(f".{name_glob}.*.tmp"))
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale


# Read with errors="surrogateescape", a byte that is not UTF-8 becomes one lone surrogate
# U+DC80..U+DCFF, which valid UTF-8 never decodes to: so the text layer keeps its speed and its
# line splitting (\n, \r\n and \r, as upstream's text-mode reads), and a bad byte is found on its
# own line. Only non-ASCII text is searched (``str.isascii`` is a flag check, not a scan).
_BAD_BYTE = re.compile("[\udc80-\udcff]")


def _bad_byte(text: str) -> re.Match | None:
    return None if text.isascii() else _BAD_BYTE.search(text)


def _not_utf8(bad: re.Match, column: int, path: Path, line: int) -> MTDNNInputError:
    byte = ord(bad.group()) - 0xDC00
    return MTDNNInputError(f"not valid UTF-8 (byte 0x{byte:02x} at column {column})", path, line)


def _open_text(path: Path) -> IO[str]:
    if not path.is_file():
        raise MTDNNInputError("file not found", path)
    return open(path, encoding="utf-8-sig", errors="surrogateescape")


def iter_lines(path: str | Path, strip: bool = True) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` from a UTF-8 text file (a byte-order mark is dropped).

    With ``strip`` the line loses whitespace at both ends, as upstream's ``line.strip()``;
    otherwise only the line break goes. A byte that is not UTF-8 raises ``MTDNNInputError``
    naming its line and column.
    """
    path = Path(path)
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            bad = _bad_byte(line)
            if bad is not None:
                raise _not_utf8(bad, bad.start() + 1, path, number)
            yield number, (line.strip() if strip else line.rstrip("\r\n"))


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` of each non-blank line of a JSON-lines file; bad JSON names its line."""
    for number, line in iter_lines(path):
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise MTDNNInputError(f"malformed JSON: {err.msg} (column {err.colno})", path, number) from None
        yield number, value


def read_text(path: str | Path) -> str:
    """The whole text of a UTF-8 file (byte-order mark dropped, line breaks as ``\\n``).

    A missing file or a byte that is not UTF-8 raises ``MTDNNInputError`` (with line and column).
    """
    path = Path(path)
    with _open_text(path) as handle:
        text = handle.read()
    bad = _bad_byte(text)
    if bad is not None:
        line_start = text.rfind("\n", 0, bad.start()) + 1
        raise _not_utf8(bad, bad.start() - line_start + 1, path, text.count("\n", 0, line_start) + 1)
    return text


def clean_text(text: str) -> str:
    """Replace tabs and line breaks inside a text field by spaces (canonical TSV cells)."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
