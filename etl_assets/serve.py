"""`etl-assets serve`: health, stats and metrics over HTTP (Starlette on uvicorn, both come with dagster-webserver).

    GET /health                      200 when the warehouse and the Dagster instance answer, else 503 naming what failed
    GET /stats                       rows per table, last run and status per source, checkpoints
    GET /observability/metrics       Prometheus text, computed from the warehouse and the Dagster event log
    GET /observability/metrics/json  runs, records, drift, checkpoints, rate limits and HTTP per source

Nothing is counted in this process: each request reads the warehouse, and the event log is folded from where
the previous request stopped (a restarted server refolds it from the start), so the figures are exact.

An entry point (beside cli.py and definitions.py, above both the core and defs/): it wires the core metrics
(observability/: facts, exposition, JSON view) to the Dagster layer, whose event-log fold and instance it takes
injected (`fold`, `instance`) or, by default, imports from `etl_assets.defs.event_fold` when first needed.
Importing this module does not import dagster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import SourceSpec
from .observability.event_totals import EventTotals
from .observability.exposition import registry, render
from .observability.facts import WarehouseFacts, warehouse_facts
from .observability.json_view import as_json
from .redaction import redact_obj
from .warehouse import Warehouse

log = logging.getLogger(__name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Observer:
    """What the endpoints read: the warehouse, the Dagster instance (made on first use), the sources file, and
    the fold of the instance's event log into `EventTotals` (by default `defs.event_fold.read_event_log`)."""

    def __init__(
        self,
        warehouse_url: str | None = None,
        instance: Any = None,
        sources: Callable[[], dict[str, SourceSpec]] | None = None,
        fold: Callable[[Any, EventTotals], EventTotals] | None = None,
    ):
        self.warehouse_url = warehouse_url
        self._wh: Warehouse | None = None
        self._instance = instance
        self._sources = sources or _load_sources
        self._fold = fold
        self._totals = EventTotals()
        self._lock = threading.Lock()  # one fold at a time; requests run in a thread pool

    def warehouse(self) -> Warehouse:
        if self._wh is None:
            self._wh = Warehouse(self.warehouse_url)
        return self._wh

    def instance(self) -> Any:
        if self._instance is None:
            from .defs.event_fold import current_instance  # the entry point's edge to the Dagster layer

            self._instance = current_instance()  # $DAGSTER_HOME/dagster.yaml
        return self._instance

    def specs(self) -> dict[str, SourceSpec]:
        try:
            return self._sources()
        except Exception as exc:  # a broken sources file must not take the metrics down with it
            log.warning("serve: sources file not loaded: %s", exc)
            return {}

    def totals(self) -> EventTotals:
        with self._lock:
            if self._fold is None:
                from .defs.event_fold import read_event_log  # the entry point's edge to the Dagster layer

                self._fold = read_event_log
            self._totals = self._fold(self.instance(), self._totals)
            return self._totals

    def snapshot(self) -> tuple[WarehouseFacts, EventTotals, dict[str, SourceSpec]]:
        return warehouse_facts(self.warehouse()), self.totals(), self.specs()


def _load_sources() -> dict[str, SourceSpec]:
    from .config_load import load_sources

    specs, invalid = load_sources(None, lenient=True)  # a bad source must not blank the figures of the others
    for name, lines in invalid.items():
        log.warning("serve: source %s is invalid: %s", name, " | ".join(lines))
    return specs


def create_app(observer: Observer | None = None) -> Starlette:
    obs = observer or Observer()

    # Sync handlers: Starlette runs them in its thread pool, so SQL and the event log never block the loop.
    def health(_: Request) -> Response:
        checks: dict[str, Any] = {}
        try:
            with obs.warehouse().engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            checks["warehouse"] = {"ok": True}
        except Exception as exc:
            checks["warehouse"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        try:
            obs.instance().get_run_records(limit=1)
            checks["dagster"] = {"ok": True}
        except Exception as exc:
            checks["dagster"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        failed = sorted(k for k, v in checks.items() if not v["ok"])
        body = {"status": "fail" if failed else "ok", "failed": failed, "checks": checks}
        return JSONResponse(redact_obj(body), status_code=503 if failed else 200)

    def stats(_: Request) -> Response:
        try:
            facts = warehouse_facts(obs.warehouse())
        except Exception as exc:  # the warehouse is down or dropped: say so, in one line, as a 503
            reason = (
                f"warehouse unavailable: {type(exc).__name__}: "
                + (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0][:300]
            )
            log.warning("serve: /stats: %s", reason)
            return JSONResponse(redact_obj({"status": "unavailable", "error": reason}), status_code=503)
        names = sorted(set(facts.sources) | set(facts.checkpoints))
        return JSONResponse(
            redact_obj(
                {
                    "tables": facts.tables,
                    "sources": {
                        s: {
                            "last_run": facts.sources.get(s, {}).get("last_run"),
                            "checkpoint": facts.checkpoints.get(s),
                        }
                        for s in names
                    },
                }
            )
        )

    def snapshot() -> tuple[WarehouseFacts, EventTotals, dict[str, Any]] | Response:
        try:
            return obs.snapshot()
        except Exception as exc:  # partial figures would be wrong figures: fail the scrape, say why
            log.warning("serve: metrics unavailable: %s", exc)
            return Response(
                f"metrics unavailable: {type(exc).__name__}: {exc}".splitlines()[0] + "\n",
                status_code=503,
                media_type="text/plain",
            )

    def metrics_text(_: Request) -> Response:
        snap = snapshot()
        if isinstance(snap, Response):
            return snap
        return Response(render(registry(*snap)), media_type=PROMETHEUS_TEXT)

    def metrics_json(_: Request) -> Response:
        snap = snapshot()
        if isinstance(snap, Response):
            return snap
        return JSONResponse(redact_obj(as_json(*snap)))

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/stats", stats),
            Route("/observability/metrics", metrics_text),
            Route("/observability/metrics/json", metrics_json),
        ]
    )


def serve(host: str = "127.0.0.1", port: int = 8080) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
