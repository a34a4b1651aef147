"""The built-in chat page in headless Chromium, at 1280x800 and on a 390x844 phone:
layout (the composer stays on screen), banners that clear, empty states and the
signed-out landing, history scroll-back through ``before_seq``, links in message
text, inline editing by keyboard, collaborator management (picked from suggestions
as the owner types), the admins' audit view (outcomes, a would-deny event marked
in words, the trail's verification) and an axe-core accessibility scan.

The service is ``python run.py`` (development issuer, SQLite) with a high message
rate so that the history can be seeded over REST. axe-core comes from npm:
``npm ci --prefix tests/page`` (package-lock.json is committed). Screenshots go
to ``var/e2e/``.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from chatsvc.audit import AuditRecord
from chatsvc.store import audit as audit_store
from chatsvc.store.models import AuditEvent
from tests.browser_helpers import (
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    UI_TIMEOUT,
    Window,
    require_chromium,
    run_service,
    sign_in,
)

with contextlib.suppress(ImportError):  # a missing Playwright is reported by require_chromium()
    from playwright.async_api import Browser, Page, async_playwright, expect

pytestmark = pytest.mark.slow

AXE = Path(__file__).parent / "page" / "node_modules" / "axe-core" / "axe.min.js"
SEEDED = 130  # more than the 100 messages a session opens with


@pytest.fixture(scope="module")
def page_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("page-data")


@pytest.fixture(scope="module")
def service(page_data: Path) -> Iterator[str]:
    with run_service(
        page_data,
        log_name="page-service.log",
        message_rate="1000",
        message_burst="1000",
    ) as base:
        yield base


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = require_chromium()
    expect.set_options(timeout=UI_TIMEOUT)
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            await instance.close()


# --- helpers --------------------------------------------------------------------------


async def assert_in_viewport(page: Page, selector: str) -> None:
    box = await page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None, selector
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], (selector, box, size)
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], (selector, box, size)


async def create_session(page: Page, title: str, shared: bool = False) -> str:
    await page.fill("#new-session-title", title)
    await page.set_checked("#new-session-shared", shared)
    await page.click("#new-session-submit")
    await expect(page.locator("#session-title")).to_have_text(title)
    await expect(page.locator("body")).to_have_attribute("data-ws-state", "open")
    return page.url.split("#", 1)[1]


async def send(page: Page, text: str) -> None:
    count = await page.locator("#message-list li.message").count()
    await page.fill("#message-input", text)
    await page.press("#message-input", "Enter")
    await expect(page.locator("#message-list li.message")).to_have_count(count + 1)


async def rest(page: Page, method: str, path: str, body: Any = None) -> Any:
    """A cookie-authenticated call from the page, with its CSRF token."""
    return await page.evaluate(
        """async ([method, path, body]) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const res = await fetch(path, {
                method, headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: body === null ? undefined : JSON.stringify(body)});
            return {status: res.status, body: res.status === 204 ? null : await res.json()};
        }""",
        [method, path, body],
    )


async def seed(page: Page, session_id: str, count: int) -> None:
    sent = await page.evaluate(
        """async ([id, count]) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            for (let i = 1; i <= count; i++) {
                const res = await fetch(`/api/chat/sessions/${id}/messages`, {
                    method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                    body: JSON.stringify({content: `seeded message ${i}`})});
                if (res.status !== 201) return `message ${i}: ${res.status}`;
            }
            return 'ok';
        }""",
        [session_id, count],
    )
    assert sent == "ok"


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations. Its source is evaluated through the
    DevTools protocol, which the page's CSP (no inline scripts) does not govern."""
    if not AXE.exists():
        pytest.fail(
            f"axe-core is missing at {AXE}: run `npm ci --prefix tests/page`", pytrace=False
        )
    if not await page.evaluate("() => Boolean(window.axe)"):
        await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;void 0")
    result = await page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(
            (v) => ({id: v.id, impact: v.impact, help: v.help,
                     nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' '))}))"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def shot(window: Window, name: str) -> Any:
    return window.screenshot(name, full_page=False)


@contextlib.asynccontextmanager
async def service_database(page_data: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The service's SQLite file, opened by this process as a second writer would."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{page_data / 'chatsvc.db'}")
    try:
        yield async_sessionmaker(engine)
    finally:
        await engine.dispose()


async def record_would_deny(page_data: Path, user_id: str, email: str) -> None:
    """A shadow-mode evaluation, stored through the chain by another writer."""
    event = AuditRecord(
        user_id=uuid.UUID(user_id), user_email=email, permission="write",
        action="session.delete", resource_type="chat_session", resource_id=None,
        reason="Can only delete your own chat sessions", request_id="shadow-page-1",
        client_ip="127.0.0.1", outcome="would_deny",
    )  # fmt: skip
    async with service_database(page_data) as sessions, sessions() as db:
        await audit_store.insert_events(db, [asdict(event)])


async def set_reason(page_data: Path, request_id: str, reason: str) -> str:
    """Edit a stored event behind chatsvc's back; its id."""
    async with service_database(page_data) as sessions, sessions() as db:
        event_id = (
            await db.execute(select(AuditEvent.id).where(AuditEvent.request_id == request_id))
        ).scalar_one()
        await db.execute(update(AuditEvent).where(AuditEvent.id == event_id).values(reason=reason))
        await db.commit()
    return str(event_id)


# --- tests ----------------------------------------------------------------------------


async def test_signed_out_landing(service: str, browser: Browser) -> None:
    """A welcome and a Sign in button, not a red error bar on a blank page; axe-clean."""
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = await browser.new_context(viewport=viewport)
        window = Window(await context.new_page(), f"page-{label}-landing")
        await window.page.goto(f"{service}/")
        landing = window.page.locator("#landing")
        await expect(landing).to_be_visible()
        await expect(landing.locator("h2")).to_have_text("Welcome to chatsvc")
        await expect(window.page.locator("#landing-sign-in")).to_have_attribute(
            "href", "/auth/login"
        )
        await expect(window.page.locator("#status")).to_contain_text("You are not signed in.")
        assert await window.page.locator("#status").get_attribute("data-kind") != "error"
        await expect(window.page.locator("#app")).to_be_hidden()
        await shot(window, window.name)
        assert await axe_violations(window.page) == []
        assert all("401" in p for p in window.problems), window.problems
        await context.close()


@pytest.mark.parametrize("form", ["desktop", "phone"])
async def test_chat_layout_history_links_and_editing(
    service: str, browser: Browser, form: str
) -> None:
    viewport = DESKTOP if form == "desktop" else PHONE
    me = await sign_in(
        browser,
        service,
        f"page-{form}",
        f"dana-{form}@example.com",
        "Onyx-Writers",
        viewport=viewport,
    )
    page = me.page
    # Empty states: no sessions yet, then a session without messages.
    await expect(page.locator("#no-sessions")).to_be_visible()
    await shot(me, f"page-{form}-no-sessions")
    session_id = await create_session(page, f"History on the {form}")
    await expect(page.locator("#no-messages")).to_be_visible()
    await expect(page.locator("#send-disabled-reason")).to_be_hidden()
    await expect(page.locator("#connection-state")).to_have_text("connected")
    await assert_in_viewport(page, "#message-input")
    await assert_in_viewport(page, "#send-button")
    await shot(me, f"page-{form}-empty-session")

    # More than one page of history: the newest 100 open, older ones load on scroll-back.
    await seed(page, session_id, SEEDED)
    await page.reload()
    messages = page.locator("#message-list li.message")
    await expect(messages).to_have_count(100)
    await expect(page.locator("body")).to_have_attribute("data-ws-state", "open")
    await expect(page.locator("#no-messages")).to_be_hidden()
    await expect(page.locator("#load-older")).to_be_visible()
    await assert_in_viewport(page, "#message-input")
    await assert_in_viewport(page, "#send-button")
    first = page.locator(f'#message-list li[data-seq="{SEEDED - 99}"]')
    await page.locator("#message-scroller").evaluate("(box) => { box.scrollTop = 0; }")
    await expect(messages).to_have_count(SEEDED)
    await expect(page.locator("#history-start")).to_be_visible()
    await expect(page.locator("#load-older")).to_be_hidden()
    await expect(messages.first.locator(".message-content")).to_have_text("seeded message 1")
    # The message that was on top is still in view: the scroll position was kept.
    scroller = await page.locator("#message-scroller").bounding_box()
    kept = await first.bounding_box()
    assert scroller and kept
    assert scroller["y"] <= kept["y"] <= scroller["y"] + scroller["height"], (scroller, kept)
    await assert_in_viewport(page, "#send-button")
    await shot(me, f"page-{form}-history-scroll-back")

    # A URL is a link (http(s) only, rel=noopener noreferrer); markup stays text.
    await send(page, "Docs at https://example.com/docs?q=1. Not a link: javascript:alert(1)")
    await send(page, "<script>window.injected = 1</script><b>bold?</b>")
    link_item = messages.nth(SEEDED)
    link = link_item.locator(".message-content a")
    await expect(link).to_have_count(1)
    await expect(link).to_have_attribute("href", "https://example.com/docs?q=1")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    await expect(link).to_have_text("https://example.com/docs?q=1")
    markup = messages.last.locator(".message-content")
    await expect(markup).to_have_text("<script>window.injected = 1</script><b>bold?</b>")
    assert await markup.locator("script, b").count() == 0
    assert await page.evaluate("() => window.injected") is None
    await assert_in_viewport(page, "#send-button")

    # Edit and Delete show only for the message under the pointer or holding focus.
    actions = messages.last.locator(".message-actions")
    await page.locator("#message-input").focus()
    await page.mouse.move(1, 1)
    assert await actions.evaluate("(n) => getComputedStyle(n).opacity") == "0"
    await messages.last.locator(".message-meta").click()
    await expect(actions.locator(".message-edit")).to_be_visible()
    assert await actions.evaluate("(n) => getComputedStyle(n).opacity") == "1"

    # Enter saves an edit; Shift+Enter is a new line; Escape cancels.
    await actions.locator(".message-edit").click()
    editor = messages.last.locator(".message-edit-input")
    await expect(editor).to_be_focused()
    await editor.fill("edited once")
    await editor.press("Shift+Enter")
    await editor.type("second line")
    await editor.press("Enter")
    await expect(editor).to_have_count(0)
    await expect(messages.last.locator(".message-content")).to_have_text("edited once\nsecond line")
    await expect(messages.last.locator(".message-edited")).to_be_visible()
    await messages.last.locator(".message-edit").focus()  # keyboard focus reveals the actions
    assert await actions.evaluate("(n) => getComputedStyle(n).opacity") == "1"
    await messages.last.locator(".message-edit").click()
    await editor.fill("never saved")
    await editor.press("Escape")
    await expect(editor).to_have_count(0)
    await expect(messages.last.locator(".message-content")).to_have_text("edited once\nsecond line")
    await shot(me, f"page-{form}-conversation")
    assert await axe_violations(page) == []
    assert me.problems == [], me.problems


async def test_banners_collaborators_and_audit(
    service: str, page_data: Path, browser: Browser
) -> None:
    owner = await sign_in(
        browser, service, "page-owner", "olga@example.com", "Onyx-Writers", viewport=DESKTOP
    )
    session_id = await create_session(owner.page, "Team room", shared=True)
    guest = await sign_in(
        browser, service, "page-guest", "gus@example.com", "Onyx-Writers", viewport=DESKTOP
    )
    guest_id = (await rest(guest.page, "GET", "/api/me"))["body"]["id"]
    await guest.open_session(session_id)

    # Gus may write in the shared room but not rename, share or delete it: the page
    # offers none of that (the session's `permissions` say so) ...
    page = guest.page
    await expect(page.locator("#session-settings")).to_be_hidden()
    await expect(page.locator("#message-input")).to_be_enabled()
    # ... and a refusal is still explained: from a view gone stale (forced here), the
    # server's 403 shows as a banner.
    await page.evaluate(
        """() => {
            document.querySelector('#session-settings').hidden = false;
            document.querySelector('#session-rename-form').hidden = false;
        }"""
    )
    await page.click("#session-settings summary")
    await page.fill("#session-rename-input", "Gus's room")
    await page.click("#session-rename-submit")
    status = page.locator("#status")
    await expect(status).to_contain_text(
        "Can only update your own chat sessions or sessions you collaborate on"
    )
    await expect(status).to_have_attribute("data-kind", "error")
    await page.keyboard.press("Escape")
    await assert_in_viewport(page, "#send-button")  # the banner does not push Send away
    await shot(guest, "page-desktop-403-banner")
    # ... and it clears with his next successful send.
    await send(page, "Hello from Gus")
    await expect(status).to_have_text("")
    await expect(page.locator("#send-disabled-reason")).to_be_hidden()
    await expect(page.locator("#connection-state")).to_have_text("connected")

    # Members online: the roster from `connected.online` and `presence` frames.
    await expect(owner.page.locator("#members-online")).to_contain_text("gus@example.com")
    await expect(page.locator("#members-online")).to_contain_text("olga@example.com")

    # The owner manages collaborators: add by email, errors in the API's words, remove.
    op = owner.page
    await op.click("#collaborators-toggle")
    panel = op.locator("#collaborators-panel")
    await expect(panel).to_be_visible()
    await expect(op.locator("#collaborators-empty")).to_be_visible()
    await op.fill("#collaborator-input", "nobody@example.com")
    await op.click("#collaborator-add")
    await expect(op.locator("#collaborator-error")).to_have_text("User not found")
    await op.fill("#collaborator-input", "gus@example.com")
    await op.click("#collaborator-add")
    rows = op.locator("#collaborator-list li")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("gus@example.com")
    await expect(op.locator("#collaborator-error")).to_have_text("")
    await op.fill("#collaborator-input", "olga@example.com")
    await op.click("#collaborator-add")
    await expect(op.locator("#collaborator-error")).to_have_text(
        "The owner cannot be a collaborator"
    )
    await shot(owner, "page-desktop-collaborators")
    assert await axe_violations(op) == []
    await op.set_viewport_size(PHONE)
    await assert_in_viewport(op, "#send-button")
    await shot(owner, "page-phone-collaborators")
    await op.set_viewport_size(DESKTOP)
    await op.click("#collaborator-list li button.collaborator-remove")
    await expect(rows).to_have_count(0)
    await expect(op.locator("#collaborators-empty")).to_be_visible()
    # Added back by user id (what the field holds when it is a UUID).
    await op.fill("#collaborator-input", guest_id)
    await op.click("#collaborator-add")
    await expect(rows).to_have_count(1)  # added back by user id
    assert (await rest(op, "GET", f"/api/chat/sessions/{session_id}/collaborators"))["body"][0][
        "user_id"
    ] == guest_id

    # Gus, a collaborator now, sees the list but no controls.
    await page.click("#collaborators-toggle")
    await expect(page.locator("#collaborator-list li")).to_have_count(1)
    await expect(page.locator("#collaborator-add-form")).to_be_hidden()
    await expect(page.locator("#collaborators-readonly")).to_be_visible()

    # An admin sees the audit view with Gus's denial in it, newest first, filtered.
    admin = await sign_in(
        browser, service, "page-admin", "ada@example.com", "Onyx-Admins", viewport=DESKTOP
    )
    ap = admin.page
    await expect(ap.locator("#audit-toggle")).to_be_visible()
    await expect(owner.page.locator("#audit-toggle")).to_be_hidden()
    await ap.click("#audit-toggle")
    audit_rows = ap.locator("#audit-rows tr")
    await expect(audit_rows.first).to_be_visible()
    await ap.fill("#audit-user", guest_id)
    await ap.fill("#audit-action", "session.update")
    await ap.click("#audit-apply")
    await expect(audit_rows).to_have_count(1)
    await expect(audit_rows.first).to_contain_text("gus@example.com")
    await expect(audit_rows.first.locator(".audit-reason")).to_have_text(
        "Can only update your own chat sessions or sessions you collaborate on"
    )
    await ap.fill("#audit-user", "")
    await ap.fill("#audit-action", "")
    await ap.click("#audit-apply")
    times = await ap.locator("#audit-rows time").evaluate_all(
        "(nodes) => nodes.map((n) => n.dateTime)"
    )
    assert times == sorted(times, reverse=True) and len(times) >= 1
    await ap.fill("#audit-user", "not-a-uuid")
    await ap.click("#audit-apply")
    await expect(ap.locator("#audit-error")).to_have_text("user_id: must be a UUID")
    await ap.fill("#audit-user", "")
    await ap.fill("#audit-action", "session.update")
    await ap.click("#audit-apply")
    await expect(audit_rows).to_have_count(1)
    await expect(audit_rows.first.locator(".audit-outcome")).to_have_text("Denied")

    # A would-deny event (shadow mode) is marked in words, not by colour alone, and
    # the outcome filter finds it.
    await record_would_deny(page_data, guest_id, "gus@example.com")
    await ap.fill("#audit-action", "")
    await ap.select_option("#audit-outcome", "would_deny")
    await ap.click("#audit-apply")
    await expect(audit_rows).to_have_count(1)
    shadow_row = audit_rows.first
    await expect(shadow_row).to_have_attribute("data-outcome", "would_deny")
    await expect(shadow_row.locator(".audit-outcome .badge")).to_have_text("Would deny")
    await expect(shadow_row.locator(".audit-outcome")).to_have_text(
        "Would deny (allowed in shadow mode)"
    )
    await ap.select_option("#audit-outcome", "")
    await ap.click("#audit-apply")
    await expect(ap.locator('#audit-rows tr[data-outcome="would_deny"]')).to_have_count(1)
    await expect(ap.locator('#audit-rows tr[data-outcome="denied"]').first).to_be_visible()

    # "Verify trail" re-computes the hash chain: intact, then broken by an edit made
    # behind chatsvc's back, naming the event.
    verdict = ap.locator("#audit-verify-result")
    await ap.click("#audit-verify")
    await expect(verdict).to_have_text(re.compile(r"^Trail intact: \d+ events checked\.$"))
    await expect(verdict).to_have_attribute("data-kind", "ok")
    await expect(ap.locator("#audit-verify")).to_be_enabled()
    await shot(admin, "page-desktop-audit")
    assert await axe_violations(ap) == []
    edited = await set_reason(page_data, "shadow-page-1", "Nothing to see here")
    await ap.click("#audit-verify")
    await expect(verdict).to_contain_text(f"Trail broken: event {edited} does not match its hash")
    await expect(verdict).to_have_attribute("data-kind", "error")
    await shot(admin, "page-desktop-audit-broken")
    assert await axe_violations(ap) == []
    await set_reason(page_data, "shadow-page-1", "Can only delete your own chat sessions")
    await ap.click("#audit-verify")
    await expect(verdict).to_contain_text("Trail intact")
    await ap.set_viewport_size(PHONE)
    await shot(admin, "page-phone-audit")

    problems = {w.name: w.problems for w in (owner, guest, admin)}
    # The expected 403/404/400 answers above are logged by Chromium as failed resources.
    unexpected = {
        name: [p for p in found if not re.search(r"\b(400|403|404)\b", p)]
        for name, found in problems.items()
    }
    assert all(not found for found in unexpected.values()), json.dumps(problems)


async def test_owner_picks_a_collaborator_from_the_suggestions(
    service: str, browser: Browser
) -> None:
    """The "add" field suggests signed-in users as the owner types (debounced GET
    /api/users), adds the chosen one by user id, and explains what goes wrong."""
    owner = await sign_in(
        browser, service, "page-picker", "paula@example.com", "Onyx-Writers", viewport=DESKTOP
    )
    quinn = await sign_in(
        browser, service, "page-quinn", "quinn@example.com", "Onyx-Writers", viewport=DESKTOP
    )
    quincy = await sign_in(
        browser, service, "page-quincy", "quincy@example.com", "Onyx-Writers", viewport=DESKTOP
    )
    quinn_id = (await rest(quinn.page, "GET", "/api/me"))["body"]["id"]
    op = owner.page
    session_id = await create_session(op, "Picked team")  # private: only members see it
    await op.click("#collaborators-toggle")
    field = op.locator("#collaborator-input")
    suggestions = op.locator("#collaborator-suggestions")
    options = suggestions.locator('[role="option"]')
    error = op.locator("#collaborator-error")
    hint = op.locator("#collaborator-hint")

    # Typing asks the directory once per pause, not once per key; any case matches.
    asked: list[str] = []
    op.on("request", lambda r: asked.append(r.url) if "/api/users?" in r.url else None)
    await field.press_sequentially("QUIN", delay=20)
    await expect(options).to_have_count(2)
    assert 1 <= len(asked) < len("QUIN"), asked
    await expect(options).to_have_text(["quincy@example.com", "quinn@example.com"])
    await expect(field).to_have_attribute("aria-expanded", "true")
    await expect(hint).to_have_text("2 matching users: ↑ ↓ to move, Enter or a click to choose.")

    # By keyboard: arrows move through the options, Enter chooses, Enter again adds.
    await field.press("ArrowDown")
    await field.press("ArrowDown")
    await expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    await expect(field).to_have_attribute("aria-activedescendant", "collaborator-option-1")
    await shot(owner, "page-desktop-collaborator-suggestions")
    assert await axe_violations(op) == []
    await op.set_viewport_size(PHONE)
    await assert_in_viewport(op, "#collaborator-suggestions")
    await shot(owner, "page-phone-collaborator-suggestions")
    await op.set_viewport_size(DESKTOP)
    await field.press("Enter")
    await expect(suggestions).to_be_hidden()
    await expect(field).to_have_value("quinn@example.com")
    await expect(field).to_be_focused()
    await field.press("Enter")
    rows = op.locator("#collaborator-list li")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("quinn@example.com")
    await expect(rows.first).to_have_attribute("data-user-id", quinn_id)
    await expect(field).to_have_value("")
    await expect(error).to_have_text("")
    listed = await rest(op, "GET", f"/api/chat/sessions/{session_id}/collaborators")
    assert [c["user_id"] for c in listed["body"]] == [quinn_id]

    # Quinn can now post in the private session.
    await quinn.page.reload()
    await quinn.open_session(session_id)
    await send(quinn.page, "Thanks for adding me")
    await expect(op.locator("#message-list li.message").last).to_contain_text(
        "Thanks for adding me"
    )

    # The owner is never offered; a collaborator is offered as one, and adding them
    # again says so; the message goes once the field is edited.
    await field.fill("")
    await field.press_sequentially("p")
    await expect(hint).to_contain_text("No user who has signed in has an email starting with “p”")
    await expect(suggestions).to_be_hidden()
    await field.fill("quinn")
    await expect(options).to_have_count(1)
    await expect(options.first).to_contain_text("already a collaborator")
    await options.first.click()  # by pointer
    await expect(field).to_have_value("quinn@example.com")
    await field.press("ArrowDown")  # opens the suggestions again; Escape closes them
    await expect(options).to_have_count(1)
    await field.press("Escape")
    await expect(suggestions).to_be_hidden()
    await op.click("#collaborator-add")
    await expect(error).to_have_text("quinn@example.com is already a collaborator.")
    await expect(rows).to_have_count(1)
    await field.press("Backspace")
    await expect(error).to_have_text("")

    # Unknown user: the API's words, until the field changes.
    await field.fill("nobody-here@example.com")
    await op.click("#collaborator-add")
    await expect(error).to_have_text("User not found")
    await field.fill("quin")
    await expect(error).to_have_text("")
    await expect(options).to_have_count(2)

    # The directory unreachable: said so, and cleared once suggestions load again.
    await field.press("Escape")
    await expect(suggestions).to_be_hidden()
    await op.route("**/api/users?*", lambda route: route.abort())
    await field.press_sequentially("c")
    await expect(error).to_have_text("Could not look users up. Network error — please try again.")
    await op.unroute("**/api/users?*")
    await field.press("Backspace")
    await expect(options).to_have_count(2)
    await expect(error).to_have_text("")
    await options.nth(0).click()
    await op.click("#collaborator-add")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("quincy@example.com")
    assert await axe_violations(op) == []

    problems = {w.name: w.problems for w in (owner, quinn, quincy)}
    # The expected 404 and the aborted request are logged by Chromium as failed resources.
    unexpected = {
        name: [p for p in found if not re.search(r"\b404\b|ERR_FAILED", p)]
        for name, found in problems.items()
    }
    assert all(not found for found in unexpected.values()), json.dumps(problems)
