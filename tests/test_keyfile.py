"""Secrets generated once into the data directory (the development issuer's key,
the session cookie key): owner-only, never half written, first writer wins."""

from __future__ import annotations

import stat
from pathlib import Path

from chatsvc.auth.keyfile import read_or_create


def test_a_missing_secret_is_generated_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "secret.key"
    assert read_or_create(path, lambda: b"first") == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_an_existing_secret_is_read_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    read_or_create(path, lambda: b"first")
    assert read_or_create(path, lambda: b"second") == b"first"


def test_the_first_writer_wins_a_race(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"

    def generate_while_another_process_writes() -> bytes:
        path.write_bytes(b"theirs")  # the other process links its file first
        return b"ours"

    assert read_or_create(path, generate_while_another_process_writes) == b"theirs"
    assert list(tmp_path.iterdir()) == [path]
