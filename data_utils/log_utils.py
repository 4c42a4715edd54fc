"""One logging format for every entry point."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Configure the root logger to write to stderr (and ``log_file`` when given)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%m/%d %H:%M:%S", handlers=handlers, force=True)
    return logging.getLogger("mt_dnn")


def log_to_files_only(message: str, level: int = logging.ERROR) -> None:
    """Write ``message`` to the log files alone: for an error the CLI also prints to stderr, so it shows once there."""
    record = logging.getLogger("mt_dnn").makeRecord("mt_dnn", level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
