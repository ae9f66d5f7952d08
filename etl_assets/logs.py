"""Logging setup: LOG_LEVEL sets the level; LOG_FORMAT=json writes one JSON object per line.

Structured events (run start/finish/error, batch, quarantine, drift, HTTP retry, rate-limit wait) are ordinary
log calls with `extra=event_fields(...)`: the text formatter shows the message, the JSON formatter every field.
The source and Dagster run id of the ingest in progress are bound once (`bind`) and fill in lines that cannot
know them (an urllib3 retry, a rate-limit wait).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from .redaction import redact, redact_obj

_STD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("etl_log_context", default={})  # noqa: B039


def event_fields(event: str, **fields: Any) -> dict[str, Any]:
    """`extra=` of a structured log line: the event name plus its fields (source, run_id, counts...)."""
    bad = set(fields) & _STD
    if bad:  # logging refuses to overwrite LogRecord attributes; say which at the call site
        raise ValueError(f"log fields {sorted(bad)} clash with logging.LogRecord attributes")
    return {"event": event, **redact_obj(fields)}  # fields reach every handler, Dagster's too


def bind(**fields: Any) -> contextvars.Token:
    """Bind fields (source, run_id) to every line logged in this context until `unbind(token)`."""
    return _CONTEXT.set({**_CONTEXT.get(), **fields})


def unbind(token: contextvars.Token) -> None:
    _CONTEXT.reset(token)


_installed = False


def install_redaction() -> None:
    """Every log record of the process, ours and the libraries' (urllib3, Dagster's event-log handler), is
    created with its message redacted: secrets never reach a handler, whichever one formats the line."""
    global _installed
    if _installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report, not ours
            return record
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, ()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))  # tracebacks and fields too


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "event": "log",
            "logger": record.name,
        }
        out.update({k: v for k, v in _CONTEXT.get().items() if v is not None})
        out.update({k: v for k, v in vars(record).items() if k not in _STD and not k.startswith("_")})
        out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(redact_obj(out), default=lambda o: redact(str(o)), ensure_ascii=False)


def configure_logging() -> None:
    install_redaction()
    logger = logging.getLogger("etl_assets")
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    if any(getattr(h, "_etl", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._etl = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter()
        if os.environ.get("LOG_FORMAT", "").lower() == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logger.addHandler(handler)
