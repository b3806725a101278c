"""Log lines as text, or as one JSON object each (zap's JSON encoder's keys, as upstream's EPP
writes them, so the same log pipeline reads both pickers)."""

from __future__ import annotations

import logging

import orjson

LOG_FORMATS = ("console", "json")


class JsonFormatter(logging.Formatter):
    """`{"level", "ts", "logger", "msg"}` plus `worker` and `error` where there is one."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "level": record.levelname.lower(),
            "ts": record.created,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.worker is not None:
            line["worker"] = self.worker
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(level: str, log_format: str = "console", worker: int | None = None) -> None:
    """The root logger at `level` ("debug", "INFO", ...), writing text or JSON lines to stderr."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: use {' or '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        where = f"worker-{worker} " if worker is not None else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {where}%(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
