"""The service under test: ``python run.py`` in a subprocess.

Each :class:`Service` gets a free port, a fresh temporary ``CHATSVC_DATA_DIR``
and, for PostgreSQL, a fresh database on the local server (dropped again by
:meth:`Service.stop`). Tokens are minted by the development issuer with the
very settings the server runs with (the same code as ``python run.py token``).
The load test (``tests/load/run.py``) starts its service the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("CHATSVC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0

# The service with its limits raised so that the benchmark measures latency,
# not the rate limiter or the per-user socket cap.
BENCH_SETTINGS = {
    "CHATSVC_MESSAGE_RATE": "1000000",
    "CHATSVC_MESSAGE_BURST": "1000000",
    "CHATSVC_WS_MAX_PER_USER": "100000",
    "CHATSVC_WS_MAX_PER_SESSION": "100000",
    "CHATSVC_ACCESS_LOG": "false",
    "CHATSVC_LOG_LEVEL": "WARNING",
}

# Runs the service with uvloop hidden, for the asyncio-versus-uvloop comparison
# (chatsvc.cli picks uvloop whenever it can be imported).
_ASYNCIO_ONLY = (
    "import sys; sys.modules['uvloop'] = None; "
    "from chatsvc.cli import main; sys.exit(main(['serve']))"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): the first CPU for the server, the rest for the
    measuring side, when pinning is asked for and there are at least two."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """A ``preexec_fn``: many sockets allowed, and pinned to ``cpus`` if given."""

    def setup() -> None:
        raise_nofile_limit()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def system_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (all CPUs, every process), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Service:
    """One ``python run.py`` subprocess with its own data directory (and database)."""

    def __init__(
        self,
        db: str = "sqlite",
        settings: Mapping[str, str] | None = None,
        cpus: set[int] | None = None,
        loop: str = "auto",
        keep: bool = False,
    ) -> None:
        if db not in ("sqlite", "postgres"):
            raise ValueError(f"unknown database {db!r}")
        if loop not in ("auto", "asyncio"):
            raise ValueError(f"unknown loop {loop!r}")
        self.db = db
        self.cpus = cpus
        self.loop = loop
        self.keep = keep
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"chatsvc-{db}-"))
        self.pg_database: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "server.log"
        self._settings = dict(settings or {})
        self._issuer: Any = None
        self.env: dict[str, str] = {}

    # --- derived -------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def loop_used(self) -> str:
        return "uvloop" if self.loop == "auto" and uvloop_installed() else "asyncio"

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def describe(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "url": self.base_url,
            "pid": self.process.pid if self.process else None,
            "data_dir": str(self.data_dir),
            "pg_database": self.pg_database,
            "event_loop": self.loop_used,
            "cpus": sorted(self.cpus) if self.cpus else sorted(os.sched_getaffinity(0)),
            "pinned": bool(self.cpus),
            "settings": {k: v for k, v in self.env.items() if k.startswith("CHATSVC_")},
        }

    # --- lifecycle -------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        # Hermetic: no CHATSVC_* from the caller's shell leaks into the service.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
        env.update(
            {
                "CHATSVC_ENV": "development",
                "CHATSVC_HOST": "127.0.0.1",
                "CHATSVC_PORT": str(self.port),
                "CHATSVC_DATA_DIR": str(self.data_dir),
                "CHATSVC_OKTA_ISSUER": "",
                "CHATSVC_BROKER_URL": "",
                "CHATSVC_DATABASE_URL": "",
                "CHATSVC_CONFIG": os.devnull,
            }
        )
        if self.pg_database:
            env["CHATSVC_DATABASE_URL"] = (
                f"postgresql+asyncpg://{PG_ADMIN_URL.split('://', 1)[1]}/{self.pg_database}"
            )
        env.update(self._settings)
        return env

    async def start(self) -> None:
        if self.db == "postgres":
            self.pg_database = f"chatsvc_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            await create_database(self.pg_database)
        self.env = self._environment()
        if self.loop == "asyncio":
            command = [sys.executable, "-c", _ASYNCIO_ONLY]
        else:
            command = [sys.executable, "run.py"]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            command,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_setup(self.cpus),
        )
        log.close()
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"service exited at start-up:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.base_url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"service not ready after {READY_TIMEOUT:.0f} s:\n{self.log_tail()}")

    async def stop(self) -> int | None:
        """SIGINT (graceful), then SIGKILL after a while; drop the database and the data dir."""
        code: int | None = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            code = self.process.returncode
        if self.pg_database:
            await drop_database(self.pg_database)
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return code

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- tokens ------------------------------------------------------------------
    def settings(self) -> Any:
        from chatsvc.settings import load_settings

        return load_settings(environ=self.env)

    def mint(self, sub: str, groups: list[str] | tuple[str, ...] = (), ttl: int = 4 * 3600) -> str:
        """A development-issuer token, exactly as ``python run.py token`` prints it with
        the service's ``CHATSVC_DATA_DIR`` and ``CHATSVC_PORT``."""
        if self._issuer is None:
            from chatsvc.auth.dev_issuer import DevIssuer

            self._issuer = DevIssuer(self.settings())
        return str(self._issuer.mint(sub, list(groups), ttl=ttl))

    def mint_with_cli(self, sub: str, groups: str = "Onyx-Writers", ttl: int = 4 * 3600) -> str:
        """The same through ``python run.py token`` (slower: one process per token)."""
        out = subprocess.run(
            [
                sys.executable,
                "run.py",
                "token",
                "--sub",
                sub,
                "--groups",
                groups,
                "--ttl",
                str(ttl),
            ],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()


# --- PostgreSQL -----------------------------------------------------------------
async def create_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG_ADMIN_URL}/postgres", timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(f"{PG_ADMIN_URL}/postgres", timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        return
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def wait_idle(
    *pids: int, threshold: float = 0.05, window: float = 0.5, limit_s: float = 120.0
) -> float:
    """Wait until the processes together use less than ``threshold`` of a core over
    ``window`` s; return the seconds waited (e.g. for a presence storm to drain, on
    the server and in the clients, between phases)."""
    started = time.monotonic()

    def cpu() -> float:
        return sum(process_cpu_seconds(pid) for pid in pids)

    while time.monotonic() - started < limit_s:
        before = cpu()
        await asyncio.sleep(window)
        if cpu() - before < threshold * window:
            break
    return time.monotonic() - started
