"""One logging format for every entry point, and the timing of progress lines."""
from __future__ import annotations

import logging
import sys
import time
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


def format_duration(seconds: float) -> str:
    """``12s``, ``4m05s`` or ``2h03m``: a duration as a person reads it in a progress line."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressClock:
    """When a progress line is due: every ``every_updates`` updates, or when ``every_seconds`` (0: never)
    have passed since the last line, whichever comes first."""

    def __init__(self, every_updates: int, every_seconds: float) -> None:
        self.every_updates, self.every_seconds = every_updates, every_seconds
        self.last = time.monotonic()

    def due(self, updates: int) -> bool:
        """True when update ``updates`` should log a line; the clock restarts when it does."""
        now = time.monotonic()
        if updates % self.every_updates == 0 or (self.every_seconds > 0 and now - self.last >= self.every_seconds):
            self.last = now
            return True
        return False
