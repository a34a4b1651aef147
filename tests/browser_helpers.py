"""Helpers for the headless-Chromium tests: the real service (``python run.py``,
development issuer, SQLite), the browser, and users signed in through the
development sign-in form, as a person would.

Needs Debian's Chromium at ``/usr/bin/chromium`` and Playwright for Python (the
``test`` extra). Never ``playwright install``. When either is missing the tests
fail, never skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.async_api import Browser, Page, expect
except ImportError as exc:  # pragma: no cover - reported by require_chromium()
    PLAYWRIGHT_MISSING: str | None = f"{exc}"
else:
    PLAYWRIGHT_MISSING = None

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "var" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT = 60.0
UI_TIMEOUT = 15_000  # ms, for Playwright's waits and assertions
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_service(data_dir: Path, log_name: str = "service.log", **settings: str) -> Iterator[str]:
    """``python run.py`` with a fresh data directory, the development issuer and
    ``settings`` as extra ``CHATSVC_*`` variables; yields the base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    env.update(
        CHATSVC_DATA_DIR=str(data_dir),
        CHATSVC_PORT=str(port),
        CHATSVC_HOST="127.0.0.1",
        CHATSVC_ENV="development",
        CHATSVC_CONFIG=os.devnull,
    )
    env.update({f"CHATSVC_{k.upper()}": v for k, v in settings.items()})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_path = SCREENSHOTS / log_name
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "run.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"the service exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the service was not ready in {START_TIMEOUT} s; see {log_path}")
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def require_chromium() -> Path:
    """The browser and its driver, or a loud failure: CI must never skip these tests."""
    if PLAYWRIGHT_MISSING is not None:
        pytest.fail(
            f"Playwright for Python is not installed ({PLAYWRIGHT_MISSING}); "
            "install the test extra: pip install -e '.[test]'",
            pytrace=False,
        )
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: apt-get update && apt-get install -y chromium "
            "(.ci/run does this); do not use `playwright install`",
            pytrace=False,
        )
    return CHROMIUM


class Window:
    """One signed-in browser context, with the console problems it reported."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error" and "favicon" not in (message.location or {}).get("url", ""):
            self.problems.append(message.text)

    async def screenshot(self, name: str | None = None, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name or self.name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path

    async def open_session(self, session_id: str) -> None:
        await self.page.locator(f'#session-list li[data-session-id="{session_id}"] button').click()
        await expect(self.page.locator("body")).to_have_attribute("data-ws-state", "open")


async def sign_in(
    browser: Browser,
    base: str,
    name: str,
    email: str,
    group: str,
    form_shot: bool = False,
    viewport: dict[str, int] | None = None,
    **context_options: Any,
) -> Window:
    """Through the development form, as a person would."""
    context = await browser.new_context(
        viewport=viewport or {"width": 1200, "height": 800}, **context_options
    )
    context.set_default_timeout(UI_TIMEOUT)
    window = Window(await context.new_page(), name)
    page = window.page
    await page.goto(f"{base}/auth/login")
    await page.fill('input[name="email"]', email)
    for box in await page.locator('input[name="groups"]').all():
        await box.set_checked(await box.get_attribute("value") == group)
    if form_shot:
        await page.screenshot(path=str(SCREENSHOTS / "sign-in-form.png"))
    await page.click('button[type="submit"]')
    await page.wait_for_url(f"{base}/")
    await expect(page.locator("#me-email")).to_have_text(email)
    return window
