"""What ships in deploy/ and the image works as shipped: the alert rules and the
dashboard are valid PromQL over metrics chatsvc really exports (checked with
promtool from Debian's prometheus package, which ``make test`` fetches), the
compose topology is coherent, and the image's environment is one chatsvc accepts."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from chatsvc.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
REDIS_URL = os.environ.get("CHATSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
METRIC = re.compile(r"\b((?:chatsvc|process|python)_[a-z_]+)\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "summary": ("_count", "_sum", "_created"),
}


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    local = REPO / "var" / "tools" / "promtool"
    path = found or (str(local) if local.exists() else None)
    assert path, "promtool is missing: `make test` fetches it (make promtool)"
    return path


def run_promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "chatsvc.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_queries() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


async def exported_names(client: TestClient) -> set[str]:
    text = await (await client.get("/metrics")).text()
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_alert_rules_are_valid_and_fire_as_their_tests_say() -> None:
    run_promtool("check", "rules", "alerts.yml", cwd=DEPLOY / "prometheus")
    run_promtool("test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    run_promtool("check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool checks expressions inside rule files: one recording rule per panel query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"chatsvc:panel_{i}", "expr": q.replace("$__rate_interval", "5m")}
                    for i, q in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    run_promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


async def test_alerts_and_dashboard_use_only_metrics_chatsvc_exports(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(broker_url=REDIS_URL)  # chatsvc_broker_up needs a broker
    exported = await exported_names(client)
    used = {
        name for query in alert_queries() + dashboard_queries() for name in METRIC.findall(query)
    }
    assert used, "no metric found in the queries"
    assert used <= exported, sorted(used - exported)


def chatsvc_env(mapping: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in mapping.items() if k.startswith("CHATSVC_")}


def assert_known_settings(env: dict[str, str]) -> None:
    unknown = {k for k in env if k.removeprefix("CHATSVC_").lower() not in Settings.model_fields}
    # CHATSVC_CONFIG names the file, it is not a setting of its own.
    assert unknown <= {"CHATSVC_CONFIG"}, unknown


def test_the_compose_topology_is_coherent() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "chatsvc-1", "chatsvc-2", "proxy"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    for name in ("chatsvc-1", "chatsvc-2"):
        replica = services[name]
        assert replica["command"] == ["serve"]
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = chatsvc_env(replica["environment"])
        assert env["CHATSVC_AUTO_MIGRATE"] == "false"
        assert env["CHATSVC_BROKER_URL"].startswith("redis://redis:")
        assert env["CHATSVC_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert_known_settings(env)
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "chatsvc-1:8080" in nginx and "chatsvc-2:8080" in nginx
    assert "proxy_set_header Upgrade" in nginx  # WebSockets pass through
    assert "$request_uri" not in nginx and "$args" not in nginx  # no query string in its log
    volume = services["proxy"]["volumes"][0].split(":")[0]
    assert (DEPLOY / volume).resolve() == (DEPLOY / "nginx.conf").resolve()


def dockerfile_env() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return env


def test_the_image_environment_is_production_on_all_interfaces() -> None:
    env = chatsvc_env(dockerfile_env())
    assert env["CHATSVC_ENV"] == "production"
    assert env["CHATSVC_HOST"] == "0.0.0.0"
    assert_known_settings(env)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "var"} <= set(ignored)


def test_the_image_entrypoint_without_an_issuer_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    env.update(chatsvc_env(dockerfile_env()))
    env.update(CHATSVC_DATA_DIR=str(tmp_path), CHATSVC_CONFIG=str(REPO / "config" / "chatsvc.toml"))
    env["CHATSVC_MIGRATIONS_DIR"] = str(REPO / "migrations")
    result = subprocess.run(
        [sys.executable, "run.py", "serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "CHATSVC_OKTA_ISSUER" in result.stderr


def test_every_runtime_dependency_is_pinned() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    required = {
        re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
        for line in config["options"]["install_requires"].strip().splitlines()
    }
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert required <= pinned, sorted(required - pinned)


def test_make_run_installs_only_what_the_service_needs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "-n", "run", f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install --quiet -e ." in result.stdout
    assert "[test]" not in result.stdout and "[bench]" not in result.stdout
