"""Observability: metric values computed, never counted in process memory, so the Pushgateway sensor and the
/observability/metrics endpoint agree with each other and with the warehouse, and a restart loses nothing.

- catalogue.py     every metric: name, kind, help, labels, origin
- facts.py         warehouse facts: the SQL over the system tables, through a `Warehouse`
- event_totals.py  `EventTotals`, the JSON-serializable totals the Dagster event-log fold (defs/event_fold.py) fills
- exposition.py    the Prometheus registry and text; json_view.py the JSON view

None of them imports dagster or anything above the core; the `etl-assets serve` app (etl_assets/serve.py, an
entry point) joins them to the fold in defs/.
"""
