"""Command line: ``python run.py [serve|migrate|token|idp|audit verify] [--help]``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from chatsvc import logs
from chatsvc.settings import Settings, SettingsError, load_settings

log = logging.getLogger("chatsvc")


def configure_logging(settings: Settings) -> None:
    """Every logger, aiohttp's included, through one safe formatter on stderr (chatsvc.logs)."""
    logs.setup(settings.log_level, settings.log_format)


async def _migrate(settings: Settings) -> None:
    from chatsvc.store.db import create_engine
    from chatsvc.store.migrate import upgrade

    engine = create_engine(settings)
    try:
        await upgrade(engine, directory=settings.migrations_dir)
    finally:
        await engine.dispose()


def migrate(settings: Settings) -> None:
    asyncio.run(_migrate(settings))
    log.info("event=migrated database=%s", "sqlite" if settings.is_sqlite else "postgresql")


def tune_gc(settings: Settings) -> None:
    """Freeze what start-up built (modules, the application) out of the cyclic
    collector's scans, and apply its thresholds: with thousands of sockets, each
    connect otherwise pays for collections that walk them all."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.gc_thresholds)
    log.info(
        "event=gc_tuned thresholds=%s frozen=%d",
        ",".join(map(str, settings.gc_thresholds)),
        gc.get_freeze_count(),
    )


async def _serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down: close the listener, let requests in
    flight finish (aiohttp's shutdown_timeout), run the application's cleanup."""
    from aiohttp import web

    from chatsvc.app import create_app
    from chatsvc.http.access_log import AccessLogger
    from chatsvc.http.server import ProblemAppRunner
    from chatsvc.keys import DRAINING

    app = create_app(settings)
    runner = ProblemAppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("chatsvc.access") if settings.access_log else None,
        keepalive_timeout=75.0,  # web.run_app's defaults, which chatsvc served with before
        shutdown_timeout=60.0,
    )
    await runner.setup()
    tune_gc(settings)
    received: list[str] = []
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    try:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        await web.TCPSite(
            runner, settings.host, settings.port, backlog=settings.listen_backlog
        ).start()
        log.info("event=listening url=http://%s:%s", settings.host, settings.port)
        await stop.wait()
        if received[0] == "SIGTERM" and settings.drain_seconds > 0:
            # An orchestrator's stop: fail readiness first, so the balancer stops
            # sending new clients here, then close (sockets get 1001).
            app[DRAINING].set()
            log.info("event=draining seconds=%s", settings.drain_seconds)
            await asyncio.sleep(settings.drain_seconds)
        log.info("event=stopping signal=%s", received[0])
    finally:
        await runner.cleanup()
        log.info("event=stopped signal=%s", received[0] if received else "-")


def serve(settings: Settings) -> None:
    if settings.auto_migrate:
        migrate(settings)
    if settings.dev_issuer:
        log.info(
            "event=dev_issuer issuer=%s hint=%r",
            settings.issuer,
            "get a token with: python run.py token --sub you@example.com --groups Onyx-Writers",
        )
    try:
        import uvloop  # type: ignore[import-not-found]

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(settings))


def token(settings: Settings, args: argparse.Namespace) -> None:
    from chatsvc.auth.dev_issuer import DevIssuer

    if not settings.dev_issuer:
        raise SettingsError(
            "invalid setting CHATSVC_OKTA_ISSUER: tokens can only be minted by the development issuer"
        )
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else []
    print(DevIssuer(settings).mint(args.sub, groups, ttl=args.ttl, email=args.email))


def _dev_issuer(settings: Settings) -> Any:
    from chatsvc.auth.dev_issuer import DevIssuer

    if not settings.dev_issuer:
        raise SettingsError(
            "invalid setting CHATSVC_OKTA_ISSUER: only the development issuer can sign this"
        )
    return DevIssuer(settings)


def idp(settings: Settings, args: argparse.Namespace) -> None:
    """Print what the identity provider sends when it ends or changes access."""
    from chatsvc.web.idp import GLOBAL_LOGOUT_PATH, client_id

    if args.idp_command == "logout-request":
        base = (
            args.url or settings.public_url or f"http://{settings.host}:{settings.port}"
        ).rstrip("/")
        print(_dev_issuer(settings).mint_logout_request(base + GLOBAL_LOGOUT_PATH))
    elif args.idp_command == "logout-token":
        if not (args.sub or args.sid):
            raise SettingsError("logout-token needs --sub or --sid")
        audience = client_id(settings) or ""
        print(_dev_issuer(settings).mint_logout_token(audience, args.sub, args.sid))
    else:
        target: list[dict[str, str]] = [{"type": "User", "id": args.user, "alternateId": args.user}]
        if args.group:
            target.append({"type": "UserGroup", "displayName": args.group})
        event = {
            "eventType": args.type,
            "published": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "target": target,
        }
        print(json.dumps({"eventType": "com.okta.event_hook", "data": {"events": [event]}}))


async def _verify_audit(settings: Settings) -> bool:
    from chatsvc.store.audit import verify_chain
    from chatsvc.store.db import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        check = await verify_chain(create_sessionmaker(engine))
    finally:
        await engine.dispose()
    if check.ok:
        print(f"audit trail ok: {check.events} events")
    else:
        print(f"audit trail broken: {check.events} events, first bad event {check.first_bad_id}")
    return check.ok


def audit(settings: Settings, args: argparse.Namespace) -> int:
    """``audit verify``: 0 when the chain checks out, 1 when it is broken, 2 when it
    could not be read."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return 0 if asyncio.run(_verify_audit(settings)) else 1
    except (SQLAlchemyError, OSError) as exc:
        print(f"chatsvc: cannot read the audit trail: {type(exc).__name__}", file=sys.stderr)
        return 2


def _add_audit_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    trail = commands.add_parser(
        "audit",
        help="check the audit trail",
        description="Operator commands for the audit trail in CHATSVC_DATABASE_URL.",
    )
    actions = trail.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    actions.add_parser(
        "verify",
        parents=[common],
        help="re-compute the hash chain and say whether every event is as written",
        description="Re-compute the audit trail's hash chain over the whole table and "
        "print one line: ok and the number of events, or the first event whose hash "
        "does not match (edited, inserted, or the one after a deleted event). Exit "
        "status: 0 ok, 1 broken, 2 the database could not be read. Events still "
        "buffered by a running server are not stored yet, so not checked.",
    )


def build_parser() -> argparse.ArgumentParser:
    from chatsvc.metrics import version

    parser = argparse.ArgumentParser(
        prog="run.py",
        description="chatsvc: a chat service protected by Okta permissions. "
        "Settings come from config/chatsvc.toml and CHATSVC_* variables.",
    )
    parser.add_argument("--version", action="version", version=f"chatsvc {version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", help="settings file (default: config/chatsvc.toml)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_cmd = commands.add_parser(
        "serve",
        parents=[common],
        help="run the service (the default)",
        description="Apply pending migrations (unless CHATSVC_AUTO_MIGRATE=false) and serve.",
    )
    serve_cmd.add_argument("--host", help="listen address (CHATSVC_HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="listen port (CHATSVC_PORT, default 8080)")
    commands.add_parser(
        "migrate",
        parents=[common],
        help="apply pending database migrations and exit",
        description="Apply the migration history to CHATSVC_DATABASE_URL, under a lock.",
    )
    mint = commands.add_parser(
        "token",
        parents=[common],
        help="print a token from the development issuer",
        description="Mint an access token from the built-in development issuer "
        "(only when CHATSVC_OKTA_ISSUER is unset).",
    )
    mint.add_argument("--sub", required=True, help="the user's subject, e.g. alice@example.com")
    mint.add_argument("--groups", default="", help="comma-separated, e.g. Onyx-Writers")
    mint.add_argument("--ttl", type=int, default=3600, help="seconds the token lives")
    mint.add_argument("--email", default=None, help="the email claim (default: the subject)")
    idp_cmd = commands.add_parser(
        "idp",
        parents=[common],
        help="print what the identity provider sends to end or change access",
        description="Sign, with the development issuer, what the real IdP sends: a "
        "Universal Logout request token, a back-channel logout token, or an Okta event "
        "hook delivery (printed as JSON; send it with CHATSVC_OKTA_EVENT_HOOK_SECRET).",
    )
    idp_commands = idp_cmd.add_subparsers(dest="idp_command", metavar="WHAT", required=True)
    request = idp_commands.add_parser(
        "logout-request",
        help="the bearer JWT of POST /api/idp/global-token-revocation",
    )
    request.add_argument(
        "--url", help="the service's public URL (default: CHATSVC_PUBLIC_URL, else host:port)"
    )
    logout_token = idp_commands.add_parser(
        "logout-token", help="the logout_token of POST /auth/backchannel-logout"
    )
    logout_token.add_argument("--sub", help="end all of this subject's browser sessions")
    logout_token.add_argument("--sid", help="end the browser sessions of this IdP session")
    hook = idp_commands.add_parser(
        "event-hook", help="the JSON body of POST /api/idp/okta-event-hook"
    )
    hook.add_argument(
        "--type",
        required=True,
        choices=[
            "group.user_membership.add",
            "group.user_membership.remove",
            "user.lifecycle.deactivate",
            "user.lifecycle.suspend",
            "user.session.clear",
        ],
        help="the Okta event type",
    )
    hook.add_argument("--user", required=True, help="the user's subject or email")
    hook.add_argument("--group", help="the group (membership events)")
    _add_audit_parser(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = dict(os.environ)
    if getattr(args, "config", None):
        environ["CHATSVC_CONFIG"] = args.config
    for name in ("host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            environ[f"CHATSVC_{name.upper()}"] = str(value)
    try:
        settings = load_settings(environ)
        configure_logging(settings)
        if args.command == "migrate":
            migrate(settings)
        elif args.command == "token":
            token(settings, args)
        elif args.command == "idp":
            idp(settings, args)
        elif args.command == "audit":
            return audit(settings, args)
        else:
            serve(settings)
    except SettingsError as exc:
        print(f"chatsvc: {exc}", file=sys.stderr)
        return 2
    return 0
