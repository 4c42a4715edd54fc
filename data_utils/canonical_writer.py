"""Writer of canonical TSV files (SPEC §3.1): one row a line, cells tab-joined, written atomically."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from data_utils.file_io import atomic_write, clean_text


def write_canonical(path: str | Path, rows: Iterable[Sequence[str]]) -> int:
    """Write ``rows`` as a canonical TSV at ``path`` (temp file + rename); return the row count."""
    count = 0
    with atomic_write(path) as handle:
        for row in rows:
            # A tab or line break inside a cell would shift columns or split the row.
            handle.write("\t".join(clean_text(str(cell)) for cell in row) + "\n")
            count += 1
    return count
