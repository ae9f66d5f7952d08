"""The run loggers of the Definitions (the Dagster side of logs.py)."""

from __future__ import annotations

import os
from typing import Any

from dagster import json_console_logger

from ..logs import configure_logging, install_redaction


def dagster_loggers() -> dict[str, Any]:
    """Loggers for the Definitions. Dagster's `json_console_logger` is there as `json`; a run uses it instead of
    the colored console when its run config says `loggers: {json: {config: {log_level: INFO}}}` (Dagster only
    instantiates the loggers a run config names, else its default console). With LOG_FORMAT=json, every
    process that loads the definitions (run workers included) also writes the core's structured lines, with all
    their fields, to stderr as JSON."""
    install_redaction()
    if os.environ.get("LOG_FORMAT", "").lower() == "json":
        configure_logging()
    return {"json": json_console_logger}
