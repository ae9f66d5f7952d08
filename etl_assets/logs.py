"""Logging setup: LOG_LEVEL sets the level; LOG_FORMAT=json writes one JSON object per line."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

_STD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STD and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging() -> None:
    logger = logging.getLogger("etl_assets")
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    if any(getattr(h, "_etl", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._etl = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if os.environ.get("LOG_FORMAT", "").lower() == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
