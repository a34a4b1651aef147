"""``python run.py`` as an operator uses it: help, version, --host/--port/--config,
a named settings file that is missing, the listen backlog, and draining at SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.cluster import free_port
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]


def test_version_and_help(tmp_path: Path) -> None:
    version = run_cli(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("chatsvc ")
    serve_help = run_cli(tmp_path, "serve", "--help")
    assert serve_help.returncode == 0
    for flag in ("--host", "--port", "--config"):
        assert flag in serve_help.stdout
    top = run_cli(tmp_path, "--help")
    for command in ("serve", "migrate", "token"):
        assert command in top.stdout


def test_a_missing_settings_file_named_on_the_command_line_stops_start_up(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"chatsvc: invalid setting CHATSVC_CONFIG: {tmp_path / 'nope.toml'} does not exist"
    ]


def test_a_missing_settings_file_named_in_the_environment_stops_start_up(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", CONFIG=str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "CHATSVC_CONFIG" in result.stderr


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``: ``ss`` shows it as Send-Q."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])


def test_serve_takes_host_port_and_backlog_and_drains_at_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    env.update(
        CHATSVC_DATA_DIR=str(tmp_path),
        CHATSVC_CONFIG=os.devnull,
        CHATSVC_DRAIN_SECONDS="2",
        CHATSVC_LISTEN_BACKLOG="300",
    )
    log = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if readyz(port)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "stderr.log"
            ).read_text()[-2000:]
            time.sleep(0.1)
        assert listen_backlog(port) == 300
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        status, body = readyz(port)  # still serving, but out of the balancer
        assert (status, body["status"]) == (503, "draining")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    lines = (tmp_path / "stderr.log").read_text().splitlines()
    assert any("event=draining" in line for line in lines)
    assert any("event=gc_tuned thresholds=10000,20,50" in line for line in lines)
    assert "event=stopped" in lines[-1]
