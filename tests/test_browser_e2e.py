"""End to end in headless Chromium: the real service (``python run.py``, development
issuer, SQLite) and the built-in page, signed in through the development form.

Two writers chat live in a shared session; a reader sees the send box disabled
and why. Screenshots of each window are saved to ``var/e2e/``.

Needs Debian's Chromium at ``/usr/bin/chromium`` (``apt-get install chromium``;
``.ci/run`` installs it) and Playwright for Python (the ``test`` extra). Never
``playwright install``. When either is missing the test fails, never skips.
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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError as exc:  # pragma: no cover - reported by the fixture below
    PLAYWRIGHT_MISSING: str | None = f"{exc}"
else:
    PLAYWRIGHT_MISSING = None

pytestmark = pytest.mark.slow

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python run.py`` with a fresh data directory and the development issuer."""
    data_dir = tmp_path_factory.mktemp("e2e-data")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    env.update(
        CHATSVC_DATA_DIR=str(data_dir),
        CHATSVC_PORT=str(port),
        CHATSVC_HOST="127.0.0.1",
        CHATSVC_ENV="development",
        CHATSVC_CONFIG=os.devnull,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_path = SCREENSHOTS / "service.log"
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


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The browser and its driver, or a loud failure: CI must never skip this test."""
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


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            await instance.close()


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

    async def screenshot(self) -> Path:
        path = SCREENSHOTS / f"{self.name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def open_session(self, session_id: str) -> None:
        await self.page.locator(f'#session-list li[data-session-id="{session_id}"] button').click()
        await expect(self.page.locator("body")).to_have_attribute("data-ws-state", "open")


async def sign_in(
    browser: Browser, base: str, name: str, email: str, group: str, form_shot: bool = False
) -> Window:
    """Through the development form, as a person would."""
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
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


async def test_two_writers_chat_live_and_a_reader_cannot_send(
    service: str, browser: Browser
) -> None:
    expect.set_options(timeout=UI_TIMEOUT)
    alice = await sign_in(
        browser, service, "alice", "alice@example.com", "Onyx-Writers", form_shot=True
    )
    await expect(alice.page.locator("#me-permission")).to_have_text("write")

    # Alice creates a shared session (a cookie POST: the page's CSRF token goes with it).
    await alice.page.fill("#new-session-title", "Launch plan")
    await alice.page.check("#new-session-shared")
    await alice.page.click("#new-session-submit")
    await expect(alice.page.locator("#session-title")).to_have_text("Launch plan")
    await expect(alice.page.locator("body")).to_have_attribute("data-ws-state", "open")
    session_id = alice.page.url.split("#", 1)[1]

    bob = await sign_in(browser, service, "bob", "bob@example.com", "Onyx-Writers")
    await bob.open_session(session_id)
    await expect(bob.page.locator("#send-button")).to_be_enabled()

    # Alice sends; Bob sees it arrive over his WebSocket (authenticated by the cookie).
    await alice.page.fill("#message-input", "Hello Bob, this is live")
    await alice.page.press("#message-input", "Enter")
    bob_messages = bob.page.locator("#message-list li.message")
    await expect(bob_messages).to_have_count(1)
    await expect(bob_messages.first.locator(".message-content")).to_have_text(
        "Hello Bob, this is live"
    )
    await expect(bob_messages.first.locator(".message-author")).to_have_text("alice@example.com")
    await expect(alice.page.locator("#message-list li.message")).to_have_count(1)

    # Bob answers; Alice sees it too.
    await bob.page.fill("#message-input", "Hi Alice")
    await bob.page.press("#message-input", "Enter")
    await expect(alice.page.locator("#message-list li.message")).to_have_count(2)
    await expect(alice.page.locator("#message-list li.message").nth(1)).to_contain_text("Hi Alice")

    reader = await sign_in(browser, service, "reader", "reader@example.com", "Onyx-Readers")
    await expect(reader.page.locator("#me-permission")).to_have_text("read")
    await expect(reader.page.locator("#new-session-submit")).to_be_disabled()
    await reader.open_session(session_id)
    await expect(reader.page.locator("#message-list li.message")).to_have_count(2)
    await expect(reader.page.locator("#send-button")).to_be_disabled()
    reason = reader.page.locator("#send-disabled-reason")
    await expect(reason).to_be_visible()
    await expect(reason).to_contain_text("does not allow sending")

    for window in (alice, bob, reader):
        await window.screenshot()
    for window in (alice, bob, reader):
        assert window.problems == [], f"{window.name}: {window.problems}"


async def test_sign_out_returns_to_the_sign_in_prompt(service: str, browser: Browser) -> None:
    expect.set_options(timeout=UI_TIMEOUT)
    carol = await sign_in(browser, service, "carol", "carol@example.com", "Onyx-Writers")
    await carol.page.click("#sign-out")
    status = carol.page.locator("#status")
    await expect(status).to_contain_text("You are not signed in.")
    await expect(status.locator('a[href="/auth/login"]')).to_be_visible()
    await expect(carol.page.locator("#app")).to_be_hidden()
    await carol.screenshot()
    assert carol.problems == [] or all("401" in p for p in carol.problems), carol.problems
