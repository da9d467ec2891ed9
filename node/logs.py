"""Structured, quiet logging: one JSON object per line on stderr, warnings and up by default."""

import json
import logging
import os
import sys

LOG_LEVEL_ENV = "TOKTOK_LOG"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and extra fields."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD:
                entry[key] = value if isinstance(value, int | float | str | bool) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def setup_logging(level: str | None = None) -> None:
    """Send JSON logs to stderr at ``level`` (or $TOKTOK_LOG, or warning)."""
    name = (level or os.environ.get(LOG_LEVEL_ENV) or "warning").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, name, logging.WARNING))
