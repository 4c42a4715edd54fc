"""The one exception type for bad user input, and the CLI wrapper that prints it."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


class MTDNNInputError(Exception):
    """Bad user input: carries ``file:line: what is wrong`` as a single line."""

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None):
        self.file = str(file) if file is not None else None
        self.line = line
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


def run_cli(main: Callable[[], object]) -> None:
    """Run a CLI ``main``; an ``MTDNNInputError`` becomes one stderr line and exit code 2."""
    try:
        main()
    except MTDNNInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
