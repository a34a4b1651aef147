"""Optional py-spy sampling of the server, one raw (collapsed-stack) file per phase.

``--profile`` needs ``py-spy`` (``pip install py-spy``); sampling slows the
server a little, so profiled runs are for finding hot spots, not for figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from pathlib import Path


def py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


class PhaseProfiler:
    """``async with profiler.phase("list"):`` records ``<prefix>-list.txt``."""

    def __init__(self, pid: int, out_dir: Path, prefix: str, rate: int = 250) -> None:
        self.pid = pid
        self.out_dir = out_dir
        self.prefix = prefix
        self.rate = rate
        self.files: dict[str, str] = {}
        self.binary = py_spy()
        if self.binary is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy")

    @contextlib.asynccontextmanager
    async def phase(self, name: str):  # type: ignore[no-untyped-def]
        out = self.out_dir / f"{self.prefix}-{name}.txt"
        process = await asyncio.create_subprocess_exec(
            self.binary,  # type: ignore[arg-type]
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "-o",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # attach before the phase starts
        try:
            yield
        finally:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
            self.files[name] = str(out)
