"""Observability: the Prometheus metrics (metrics.py), the health/stats/metrics server (server.py).

Metric values are computed, never counted in process memory: from the warehouse's system tables and from the
Dagster event log. So the Pushgateway sensor and the /observability/metrics endpoint agree with each other and
with the warehouse, and a restart loses nothing.
"""
