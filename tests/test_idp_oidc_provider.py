"""Against a real OpenID provider: panva's ``oidc-provider`` (tests/idp/, pinned in
its package.json and package-lock.json; ``make idp-deps`` runs ``npm ci``, and so
does this module when node_modules is missing), driven end to end in headless
Chromium through the real service (``python run.py``).

The provider listens on 127.0.0.1 only, with an issuer ending in ``/`` (Auth0
style), JWT access tokens for a resource indicator (RFC 8707), a ``groups``
claim, rotating refresh tokens (a reused one revokes the grant), 10 s access
tokens, consent for offline access (OIDC Core section 11), revocation and
RP-initiated logout. Covered: sign-in, chat, expiry with the socket's token
renewed in place, ten parallel requests during a refresh, logout (a copied
cookie is refused, the refresh token revoked, the next sign-in asks for the
login again) and sign-in right after a hard key rotation.

A provider that cannot start FAILS the test; nothing here skips."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from tests import test_browser_e2e as e2e
from tests.browser_helpers import CHROMIUM_ARGS, START_TIMEOUT, free_port

with contextlib.suppress(ImportError):  # the chromium fixture fails loudly without it
    from playwright.async_api import Page, async_playwright, expect

chromium = e2e.chromium  # the fixture: Debian's Chromium and Playwright, or a failure

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IDP_DIR = REPO / "tests" / "idp"
LOGS = REPO / "var" / "idp"
AUDIENCE = "api://chatsvc-idp"
ACCESS_TTL = 10
UI_TIMEOUT = 15_000


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"{url}: the process exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer in {timeout} s; see {log}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Idp:
    """The provider process; :meth:`restart` with a new key is a hard rotation."""

    def __init__(self, tmp: Path, chatsvc_origin: str) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/"
        self.keys = tmp / "idp-keys.json"
        self.origin = chatsvc_origin
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0

    def start(self) -> None:
        key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
        self.keys.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
        self.generation += 1
        log = LOGS / f"provider-{self.generation}.log"
        env = {
            **os.environ,
            "IDP_PORT": str(self.port),
            "IDP_KEYS": str(self.keys),
            "IDP_AUDIENCE": AUDIENCE,
            "IDP_REDIRECT": self.origin,
            "IDP_ACCESS_TTL": str(ACCESS_TTL),
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["node", "provider.mjs"], cwd=IDP_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_http(f"{self.issuer}.well-known/openid-configuration", self.process, log, 20)

    def restart(self) -> None:
        assert self.process is not None
        stop(self.process)
        self.start()

    def events(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.issuer}__test/events", timeout=5) as resp:
            return list(json.load(resp))


def npm_ci() -> None:
    if (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=IDP_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"npm ci in {IDP_DIR} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Idp, str]]:
    """The provider and chatsvc configured for it (public client, PKCE, offline access)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    npm_ci()
    tmp = tmp_path_factory.mktemp("idp")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    idp = Idp(tmp, base)
    idp.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    env.update(
        CHATSVC_DATA_DIR=str(tmp / "data"),
        CHATSVC_PORT=str(port),
        CHATSVC_HOST="127.0.0.1",
        CHATSVC_ENV="development",
        CHATSVC_CONFIG=os.devnull,
        CHATSVC_OKTA_ISSUER=idp.issuer,
        CHATSVC_OKTA_AUDIENCE=AUDIENCE,
        CHATSVC_OKTA_CLIENT_ID="chatsvc-public",
        CHATSVC_OKTA_SCOPES="openid email groups offline_access",
        CHATSVC_JWT_LEEWAY="0",
    )
    log = LOGS / "service.log"
    with log.open("wb") as out:
        service = subprocess.Popen(
            [sys.executable, "run.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_http(f"{base}/readyz", service, log, START_TIMEOUT)
        yield idp, base
    finally:
        stop(service)
        if idp.process is not None:
            stop(idp.process)


async def provider_login(page: Page, login: str) -> None:
    """oidc-provider's development login form, then its consent prompt."""
    await page.wait_for_selector('input[name="login"]')
    await page.fill('input[name="login"]', login)
    await page.fill('input[name="password"]', "any")
    await page.click('button[type="submit"]')
    await page.wait_for_selector('button[type="submit"]')  # the consent prompt
    await page.click('button[type="submit"]')


def get_status(url: str, cookie: str) -> int:
    request = urllib.request.Request(url, headers={"Cookie": f"chatsvc_session={cookie}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_the_full_browser_flow_against_oidc_provider(
    stack: tuple[Idp, str], chromium: Path
) -> None:
    idp, base = stack
    expect.set_options(timeout=UI_TIMEOUT)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        context = await browser.new_context()
        # Count WebSocket constructions: renewal must happen in place.
        await context.add_init_script(
            "window.__sockets = 0; const W = window.WebSocket;"
            "window.WebSocket = function (...a) { window.__sockets += 1; return new W(...a); };"
            "window.WebSocket.prototype = W.prototype; Object.assign(window.WebSocket, W);"
        )
        page = await context.new_page()

        # --- sign in (prompt=consent, resource, iss, trailing-slash issuer)
        await page.goto(f"{base}/auth/login")
        await provider_login(page, "alice")
        await page.wait_for_url(f"{base}/")
        await expect(page.locator("#me-email")).to_have_text("alice@example.com")
        await expect(page.locator("#me-permission")).to_have_text("write")

        # --- chat
        session = await page.evaluate(
            """async () => {
              const csrf = document.querySelector('meta[name="csrf-token"]').content;
              const r = await fetch('/api/chat/sessions', {method: 'POST', headers: {'X-CSRF-Token': csrf,
                'Content-Type': 'application/json'}, body: JSON.stringify({title: 'real idp'})});
              return r.json();
            }"""
        )
        await page.reload()
        await page.locator(f'#session-list li[data-session-id="{session["id"]}"] button').click()
        await expect(page.locator("body")).to_have_attribute("data-ws-state", "open")
        await page.fill("#message-input", "hello from a real provider")
        await page.press("#message-input", "Enter")
        await expect(page.locator("#message-list li.message")).to_have_count(1)

        # --- ten parallel requests at the moment of refresh
        token = await page.evaluate(
            """async () => (await fetch('/auth/token', {headers: {'X-CSRF-Token':
                document.querySelector('meta[name="csrf-token"]').content}})).json()"""
        )
        await asyncio.sleep(max(0.0, token["expires_at"] - 1.0 - time.time()))
        statuses = await page.evaluate(
            "async () => Promise.all(Array.from({length: 10}, () => fetch('/api/me').then(r => r.status)))"
        )
        assert statuses == [200] * 10
        events = idp.events()
        assert not [e for e in events if e["name"] == "grant.revoked"], events
        refreshes = [
            e for e in events if e["name"] == "grant.success" and e["grant"] == "refresh_token"
        ]
        assert len(refreshes) >= 1

        # --- expiry: the socket's token was renewed in place, the socket never reopened
        await asyncio.sleep(max(0.0, token["expires_at"] + 1.5 - time.time()))
        await expect(page.locator("body")).to_have_attribute("data-ws-state", "open")
        await page.fill("#message-input", "after expiry")
        await page.press("#message-input", "Enter")
        await expect(page.locator("#message-list li.message")).to_have_count(2)
        assert await page.evaluate("window.__sockets") == 1
        assert int(await page.locator("body").get_attribute("data-token-renewals") or 0) >= 1
        assert not [e for e in idp.events() if e["name"] == "grant.revoked"]

        # --- logout: the copied cookie is dead, the refresh token revoked, the provider's logout
        [cookie] = [c["value"] for c in await context.cookies() if c["name"] == "chatsvc_session"]
        assert get_status(f"{base}/api/me", cookie) == 200
        await page.click("#sign-out")
        await page.wait_for_selector('button[autofocus], form button[type="submit"]')
        await page.click("button[autofocus]")  # oidc-provider: "Yes, sign me out"
        await page.wait_for_url(f"{base}/")
        await expect(page.locator("#status")).to_contain_text("You are not signed in.")
        assert get_status(f"{base}/api/me", cookie) == 401
        names = [e["name"] for e in idp.events()]
        # RFC 7009 revocation of the refresh token revokes its grant (the only one so far).
        assert names.count("grant.revoked") == 1 and "end_session.success" in names
        await page.goto(f"{base}/auth/login")
        await expect(page.locator('input[name="login"]')).to_be_visible()  # asks again

        # --- a hard key rotation: the next sign-in works at once
        idp.restart()
        await page.goto(f"{base}/auth/login")
        await provider_login(page, "bob")
        await page.wait_for_url(f"{base}/")
        await expect(page.locator("#me-email")).to_have_text("bob@example.com")
        await browser.close()
