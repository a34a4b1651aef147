"""Secrets generated once into the data directory: the development issuer's
signing key and the session cookie key.

The file is written owner-only (0600) under a unique temporary name and then
hard-linked into place, so a reader never sees it half written, and when
several processes start at once the first link wins and every process reads
that one secret.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """The contents of ``path``; if there is no such file, ``generate()`` is written there first."""
    if not path.is_file():
        _create(path, generate())
    return path.read_bytes()


def _create(path: Path, secret: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp: O_EXCL, mode 0600, a name no other process (or earlier crash) uses
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
            fh.flush()
            os.fsync(fh.fileno())
        # A link, unlike a rename, never replaces a secret already in place: when
        # another process was first, its secret stays and this one is dropped.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
