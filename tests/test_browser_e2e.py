"""End to end in headless Chromium: the real service (``python run.py``, development
issuer, SQLite) and the built-in page, signed in through the development form.

Two writers chat live in a shared session; a reader sees the send box disabled
and why. Screenshots of each window are saved to ``var/e2e/``.

Needs Debian's Chromium at ``/usr/bin/chromium`` (``apt-get install chromium``;
``.ci/run`` installs it) and Playwright for Python (the ``test`` extra). Never
``playwright install``. When either is missing the test fails, never skips.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.browser_helpers import CHROMIUM_ARGS, UI_TIMEOUT, require_chromium, run_service, sign_in

with contextlib.suppress(ImportError):  # a missing Playwright is reported by require_chromium()
    from playwright.async_api import Browser, async_playwright, expect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python run.py`` with a fresh data directory and the development issuer."""
    with run_service(tmp_path_factory.mktemp("e2e-data")) as base:
        yield base


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The browser and its driver, or a loud failure: CI must never skip this test."""
    return require_chromium()


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
