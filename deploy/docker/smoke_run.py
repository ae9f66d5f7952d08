"""Launch `ingest_all` through the webserver's GraphQL API and wait for it; exit 0 only on SUCCESS.

Runs inside the dagster-webserver container (dagster-graphql comes with dagster-webserver):
    docker compose exec -T dagster-webserver python - < deploy/docker/smoke_run.py
The run is queued, dequeued by the daemon and started in its own container by the DockerRunLauncher.
"""

import sys
import time

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

TIMEOUT = 600
client = DagsterGraphQLClient("127.0.0.1", port_number=3000)
run_id = client.submit_job_execution("ingest_all", repository_location_name="etl_assets",
                                     repository_name="__repository__")
print(f"submitted ingest_all: run {run_id}", flush=True)
final = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
deadline = time.monotonic() + TIMEOUT
status = client.get_run_status(run_id)
while status not in final and time.monotonic() < deadline:
    time.sleep(5)
    status = client.get_run_status(run_id)
print(f"run {run_id}: {status.value}", flush=True)
sys.exit(0 if status == DagsterRunStatus.SUCCESS else 1)
