"""Where the steps of a run execute: on the run's own machine (the default), or on Celery workers that any number
of machines start against one broker (ETL_EXECUTOR=celery).

With Celery, the run process only orchestrates: it submits each step to the queue, and a worker that shares the
run's instance (DAGSTER_HOME, PostgreSQL storage) and the warehouse runs it. Pools are still counted by the run
process in the instance, and the rate limit lives in the warehouse, so both hold across workers and machines.
Workers start with `celery -A etl_assets.defs.executors worker -Q <queue>`: the same module, the same
environment, hence the same broker and queue as the runs that submit to them.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import ExecutorDefinition, in_process_executor

EXECUTORS = ("multiprocess", "celery")
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_QUEUE = "dagster"
BROKER_ENV, QUEUE_ENV, EXECUTOR_ENV = "ETL_CELERY_BROKER_URL", "ETL_CELERY_QUEUE", "ETL_EXECUTOR"


class ExecutorConfigError(ValueError):
    """ETL_EXECUTOR names no executor, or one whose package is not installed."""


def executor_name() -> str:
    name = (os.environ.get(EXECUTOR_ENV) or "multiprocess").strip().lower()
    if name not in EXECUTORS:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}={name!r} is not an executor: set it to one of {', '.join(EXECUTORS)} (or unset it)"
        )
    return name


def celery_queue() -> str:
    return os.environ.get(QUEUE_ENV) or DEFAULT_QUEUE


def celery_config() -> dict[str, Any]:
    """The celery executor's config. The broker is read from the environment by reference where it is set, so
    a password in its URL never lands in the job's snapshot or the run config the UI shows."""
    broker: Any = {"env": BROKER_ENV} if os.environ.get(BROKER_ENV) else DEFAULT_BROKER
    return {
        "broker": broker,
        "backend": "rpc://",  # results come back over the broker: no second service
        "config_source": {
            # dagster-celery submits each step to the queue its app defaults to (a step tag may override it)
            "task_default_queue": celery_queue(),
            # A worker takes a step only when one of its processes is free: the message is acknowledged when
            # the step ends, and a worker holds one unacknowledged message per process. Acknowledged on
            # receipt, a step would wait behind a long one while another worker idles (and a worker that dies
            # mid-step would lose it; redelivered, it lands exactly once from its checkpoint).
            "task_acks_late": True,
            "worker_prefetch_multiplier": 1,
        },
    }


def _celery_executor() -> ExecutorDefinition:
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install 'etl-assets[celery]'"
        ) from None
    return celery_executor.configured(celery_config(), name="etl_celery")


def ingest_all_executor() -> ExecutorDefinition | None:
    """ingest_all's executor: None keeps Dagster's default (one process per step on the run's machine)."""
    return _celery_executor() if executor_name() == "celery" else None


def source_job_executor() -> ExecutorDefinition:
    """ingest_<source> and its backfills: in the run's own process by default (one step: a step process would
    import everything again), on the workers with Celery (a backfill's runs then spread over them)."""
    return _celery_executor() if executor_name() == "celery" else in_process_executor


def make_worker_app() -> Any:
    """The Celery app a worker runs: dagster-celery's step task on our broker, consuming our queue."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task
    from kombu import Queue

    config = celery_config()
    broker = os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    app = make_app(
        CeleryExecutor.for_cli(
            broker=broker, backend=config["backend"], config_source=config["config_source"]
        ).app_args()
    )
    queue = celery_queue()
    # make_app declares only the queue "dagster"; ours is bound the same way (routing keys `<queue>.*`)
    app.conf.task_queues = [Queue(queue, routing_key=f"{queue}.#", queue_arguments={"x-max-priority": 10})]
    create_task(app)
    return app


def __getattr__(name: str) -> Any:
    # `celery -A etl_assets.defs.executors` looks up `app`: built on demand, so importing this module for the
    # job definitions never imports Celery
    if name == "app":
        app = make_worker_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)
