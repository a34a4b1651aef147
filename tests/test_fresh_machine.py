"""``make test`` on a fresh machine: the browser test's Chromium is installed by the
Makefile when it is missing (as root), or make fails printing the one command to
run -- it never skips. The machine's own Chromium is never touched: ``CHROMIUM``
points at a path in a temporary directory and ``APT_GET`` at a stub."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "apt-get update && apt-get install -y chromium"

STUB = """#!/bin/sh
echo "$*" >> "$STUB_CALLS"
if [ "$1" = install ] && [ -n "$STUB_CREATES" ]; then
  printf '#!/bin/sh\\n' > "$STUB_CREATES" && chmod +x "$STUB_CREATES"
fi
exit "${STUB_EXIT:-0}"
"""


@pytest.fixture
def apt_get(tmp_path: Path) -> Path:
    stub = tmp_path / "apt-get"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return stub


def make(
    tmp_path: Path, target: str, *variables: str, **env: str
) -> subprocess.CompletedProcess[str]:
    make_bin = shutil.which("make")
    assert make_bin, "make is not installed"
    environ = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    environ.update(STUB_CALLS=str(tmp_path / "calls"), **env)
    return subprocess.run(
        [make_bin, "--no-print-directory", "-C", str(ROOT), target, *variables],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_a_present_chromium_is_left_alone(tmp_path, apt_get):
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    result = make(tmp_path, "chromium", f"CHROMIUM={browser}", f"APT_GET={apt_get}", "USER_ID=0")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == []


def test_a_missing_chromium_is_installed_from_debian_as_root(tmp_path, apt_get):
    browser = tmp_path / "bin" / "chromium"
    browser.parent.mkdir()
    result = make(
        tmp_path,
        "chromium",
        f"CHROMIUM={browser}",
        f"APT_GET={apt_get}",
        "USER_ID=0",
        STUB_CREATES=str(browser),
    )
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == ["update", "install -y chromium"]
    assert "installing Debian's chromium" in result.stdout


@pytest.mark.parametrize("stub_exit", ["0", "100"], ids=["installs-nothing", "apt-fails"])
def test_an_install_that_leaves_no_chromium_fails(tmp_path, apt_get, stub_exit):
    browser = tmp_path / "missing" / "chromium"
    result = make(
        tmp_path,
        "chromium",
        f"CHROMIUM={browser}",
        f"APT_GET={apt_get}",
        "USER_ID=0",
        STUB_EXIT=stub_exit,
    )
    assert result.returncode != 0
    assert calls(tmp_path)[0] == "update"


def test_without_root_make_prints_the_command_and_fails(tmp_path, apt_get):
    browser = tmp_path / "missing" / "chromium"
    result = make(tmp_path, "chromium", f"CHROMIUM={browser}", f"APT_GET={apt_get}", "USER_ID=1000")
    assert result.returncode != 0
    assert INSTALL in result.stderr
    assert str(browser) in result.stderr
    assert calls(tmp_path) == []


def test_make_test_checks_chromium_before_running_the_tests(tmp_path):
    browser = tmp_path / "missing" / "chromium"
    result = make(tmp_path, "-n", "test", f"CHROMIUM={browser}", "USER_ID=1000")
    assert result.returncode == 0, result.stderr
    planned = result.stdout
    assert INSTALL in planned and "-m pytest" in planned
    assert planned.index(INSTALL) < planned.index("-m pytest")


def test_ci_leaves_the_install_to_make():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "apt-get install" not in ci
