"""Summarise py-spy ``--format raw`` output by function.

``python -m tests.bench.profile_summary FILE [--top 25] [--filter chatsvc]``
prints the samples per thread, then, per function, its inclusive share (on the
stack) and its self share (on top of the stack) of the samples of one thread
(default the event loop's ``MainThread``; ``--thread`` for e.g. aiosqlite's).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def _rows(path: Path) -> list[tuple[list[str], int]]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            rows.append((stack.split(";"), int(count_text)))
    return rows


def thread_totals(path: Path) -> Counter[str]:
    totals: Counter[str] = Counter()
    for frames, count in _rows(path):
        totals[frames[0].split(": ", 1)[-1]] += count
    return totals


def summarise(path: Path, thread: str = "MainThread") -> tuple[int, Counter[str], Counter[str]]:
    """Samples of the threads whose name contains ``thread``: (total, inclusive, self)."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in _rows(path):
        if thread not in frames[0]:
            continue
        names = [_short(f) for f in frames[1:]] or [frames[0]]
        total += count
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
    return total, inclusive, own


def report(path: Path, top: int = 25, needle: str | None = None, thread: str = "MainThread") -> str:
    threads = thread_totals(path)
    total, inclusive, own = summarise(path, thread)
    head = ", ".join(f"{name} {count}" for name, count in threads.most_common())
    if not total:
        return f"{path}: no samples of {thread!r} ({head})"
    out = [
        f"{path}: samples per thread: {head}",
        f"shares of the {total} samples of {thread!r} (active samples only)",
        "  incl%   self%  function",
    ]
    shown = 0
    for name, count in inclusive.most_common():
        if needle and needle not in name:
            continue
        out.append(f"  {100 * count / total:5.1f}  {100 * own[name] / total:6.1f}  {name}")
        shown += 1
        if shown >= top:
            break
    out.append("  -- top self time --")
    for name, count in own.most_common(top):
        out.append(f"  {100 * inclusive[name] / total:5.1f}  {100 * count / total:6.1f}  {name}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default=None, help="only functions whose name contains this")
    parser.add_argument("--thread", default="MainThread", help="thread name (substring)")
    args = parser.parse_args()
    for file in args.files:
        print(report(file, args.top, args.filter, args.thread))
        print()


if __name__ == "__main__":
    main()
