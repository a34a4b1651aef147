"""Command line: ``python run.py [serve|migrate|token]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

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


async def _serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down: close the listener, let requests in
    flight finish (aiohttp's shutdown_timeout), run the application's cleanup."""
    from aiohttp import web

    from chatsvc.app import create_app
    from chatsvc.http.access_log import AccessLogger
    from chatsvc.http.server import ProblemAppRunner

    runner = ProblemAppRunner(
        create_app(settings),
        access_log_class=AccessLogger,
        access_log=logging.getLogger("chatsvc.access") if settings.access_log else None,
        keepalive_timeout=75.0,  # web.run_app's defaults, which chatsvc served with before
        shutdown_timeout=60.0,
    )
    await runner.setup()
    received: list[str] = []
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    try:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("event=listening url=http://%s:%s", settings.host, settings.port)
        await stop.wait()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description="chatsvc")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    commands.add_parser("migrate", help="apply pending database migrations")
    mint = commands.add_parser("token", help="print a development-issuer token")
    mint.add_argument("--sub", required=True)
    mint.add_argument("--groups", default="", help="comma-separated, e.g. Onyx-Writers")
    mint.add_argument("--ttl", type=int, default=3600)
    mint.add_argument("--email", default=None)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        if args.command == "migrate":
            migrate(settings)
        elif args.command == "token":
            token(settings, args)
        else:
            serve(settings)
    except SettingsError as exc:
        print(f"chatsvc: {exc}", file=sys.stderr)
        return 2
    return 0
