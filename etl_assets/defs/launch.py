"""`python -m etl_assets.defs.launch JOB`: run a job now, in this process, attached to its code location.

What `make run` uses. `dagster job execute -m ...` and `dg launch --job` (which calls it) make runs without a
code-location origin, so the UI's job page lists none of them; `dagster job launch -w workspace.yaml` attaches
the run but only queues it (the daemon starts it). This loads the code location from workspace.yaml like the UI
and the daemon do, creates the run with that origin (and `etl/source` tags), then executes it here and waits,
as `dagster job execute` would. Dagster has no public call for this yet: it uses the CLI's own internals.
"""

from __future__ import annotations

import argparse
import json
import sys

from dagster import DagsterInstance
from dagster._cli.job import _create_run  # the run `dagster job launch` creates, with its remote origin
from dagster._cli.workspace.cli_target import (
    WorkspaceOpts,
    get_code_location_from_workspace,
    get_remote_job_from_remote_repo,
    get_remote_repository_from_code_location,
    get_workspace_from_cli_opts,
)
from dagster._core.execution.api import execute_run
from dagster._utils.hosted_user_process import recon_job_from_origin
from dagster.version import __version__

ALL_SOURCES = "all"  # the etl/source tag of a job over every source (ingest_all)


def source_tags(job_name: str) -> dict[str, str]:
    """ingest_<source> carries etl/source=<source> on its definition; ingest_all runs are tagged `all`."""
    return {"etl/source": ALL_SOURCES} if job_name == "ingest_all" else {}


def run_attached(job_name: str, workspace: str = "workspace.yaml") -> bool:
    instance = DagsterInstance.get()
    opts = WorkspaceOpts(workspace=(workspace,))
    with get_workspace_from_cli_opts(instance, version=__version__, workspace_opts=opts) as context:
        location = get_code_location_from_workspace(context, None)
        repo = get_remote_repository_from_code_location(location, None)
        remote_job = get_remote_job_from_remote_repo(repo, job_name)
        run = _create_run(
            instance=instance,
            code_location=location,
            remote_repo=repo,
            remote_job=remote_job,
            run_config={},
            tags=source_tags(job_name),
            op_selection=None,
            run_id=None,
        )
        recon = recon_job_from_origin(remote_job.get_python_origin())
    print(f"run {run.run_id} of {job_name} (code location {location.name})", flush=True)
    result = execute_run(recon, run, instance)
    return result.success


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etl_assets.defs.launch", description=__doc__.splitlines()[0]
    )
    parser.add_argument("job", help="job name, e.g. ingest_all")
    parser.add_argument("-w", "--workspace", default="workspace.yaml")
    args = parser.parse_args(argv)
    ok = run_attached(args.job, args.workspace)
    print(json.dumps({"job": args.job, "success": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
