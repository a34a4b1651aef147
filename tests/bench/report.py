"""The printed table: each figure beside chatsvc's goal for it and the looser
service-level requirement it must never miss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A figure at 100,000 stored messages counts as flat when its p95 is at most
# this many times the 1,000-message p95, or within the noise floor below.
FLAT_RATIO = 1.5
FLAT_NOISE_MS = 2.0


@dataclass
class Row:
    metric: str
    value: str
    target: str = ""
    target_ok: bool | None = None
    original: str = ""
    original_ok: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _pcts(s: dict[str, Any], *keys: str) -> str:
    if not s or not s.get("n"):
        return "n/a"
    return " / ".join(f"{s[k]:.2f}" for k in keys) + " ms"


def _under(value: float | None, limit: float) -> bool | None:
    return None if value is None else value < limit


def _flat(small: dict[str, Any], large: dict[str, Any]) -> bool | None:
    if not small.get("n") or not large.get("n"):
        return None
    return large["p95"] <= max(small["p95"] * FLAT_RATIO, small["p95"] + FLAT_NOISE_MS)


def rows_for(run: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    auth = run.get("auth")
    if auth:
        rows.append(Row("/healthz p50 (no token)", _ms(auth["healthz"]["p50"])))
        rows.append(Row("/api/me p50 (cached token)", _ms(auth["me"]["p50"])))
        rows.append(Row("  cached-token overhead p50", _ms(auth["overhead_p50_ms"])))
    small = run.get("stage_small", {})
    large = run.get("stage_large", {})
    small_n = small.get("stored_messages", "?")
    large_n = large.get("stored_messages", "?")
    if small:
        s = small["list"]
        rows.append(
            Row(
                f"list 50 sessions+msgs p50/p95/p99 @{small_n} msgs",
                _pcts(s, "p50", "p95", "p99"),
                "p95 < 15 ms",
                _under(s["p95"], 15),
                "p95 < 300 ms",
                _under(s["p95"], 300),
            )
        )
        s = small["send_rest"]
        rows.append(
            Row(
                f"send REST p50/p95 @{small_n} msgs",
                _pcts(s, "p50", "p95"),
                "p95 < 10 ms",
                _under(s["p95"], 10),
                "< 100 ms",
                _under(s["p95"], 100),
            )
        )
        s = small["page"]
        rows.append(Row(f"page newest 100 msgs p50/p95 @{small_n}", _pcts(s, "p50", "p95")))
    if "send_ws" in run:
        s = run["send_ws"]
        rows.append(
            Row(
                "send WebSocket p50/p95 (to own frame)",
                _pcts(s, "p50", "p95"),
                "p95 < 10 ms",
                _under(s["p95"], 10),
                "< 100 ms",
                _under(s["p95"], 100),
            )
        )
    if "connect" in run:
        s = run["connect"]
        rows.append(
            Row(
                "WebSocket connect p50/p95 (to connected)",
                _pcts(s, "p50", "p95"),
                "p95 < 10 ms",
                _under(s["p95"], 10),
                "< 50 ms",
                _under(s["p95"], 50),
            )
        )
    if large:
        for key, label in (
            ("list", "list"),
            ("send_rest", "send REST"),
            ("page", "page newest 100"),
        ):
            s = large[key]
            rows.append(
                Row(
                    f"{label} p50/p95 @{large_n} msgs",
                    _pcts(s, "p50", "p95"),
                    f"flat vs @{small_n}",
                    _flat(small[key], s),
                    "p95 < 300 ms" if key == "list" else ("< 100 ms" if key == "send_rest" else ""),
                    _under(s["p95"], 300 if key == "list" else 100) if key != "page" else None,
                )
            )
    for fan in run.get("fanout", []):
        n = fan["members"]
        lat = fan.get("latency", {})
        connect = fan.get("connect", {})
        rows.append(
            Row(
                f"fan-out {n} members ({fan.get('users', n)} users): room fill",
                f"{connect.get('connected', 0)}/{n} in {connect.get('room_fill_s', 0):.1f} s"
                f" (+{connect.get('settle_s', 0):.1f} s settle), server CPU"
                f" {connect.get('server_cpu_s', 0):.1f} s",
            )
        )
        if lat.get("n"):
            target, ok = "", None
            if n == 1000:
                target, ok = "p99 < 100 ms", _under(lat["p99"], 100)
            rows.append(
                Row(
                    f"fan-out {n} members p50/p99 latency",
                    _pcts(lat, "p50", "p99"),
                    target,
                    ok,
                    "200+ members" if n >= 200 else "",
                    (not lat["loss"]) if n >= 200 else None,
                )
            )
        if lat:
            rows.append(
                Row(
                    f"fan-out {n} members loss",
                    f"{lat.get('missing', '?')} of {lat.get('expected_frames', '?')} frames missing"
                    + (f", closed {lat['closed']}" if lat.get("closed") else ""),
                    "no loss" if n >= 2000 else "",
                    (not lat.get("loss", True)) if n >= 2000 else None,
                )
            )
        if "error" in fan:
            rows.append(Row(f"fan-out {n} members: error", fan["error"][:80], "no error", False))
        burst = fan.get("burst")
        if burst and "frames_per_s" in burst:
            rows.append(
                Row(
                    f"saturation: delivered frames/s ({n} members, {burst['messages']} msgs)",
                    f"{burst['frames_per_s']:,.0f}/s"
                    + (f" (loss {burst['missing']})" if burst["missing"] else ""),
                    ">= 70,000/s" if n >= 1000 else ">= 70,000/s (at 1,000)",
                    burst["frames_per_s"] >= 70_000 if n >= 1000 else None,
                )
            )
    return rows


def _mark(ok: bool | None) -> str:
    return {True: "ok", False: "MISS", None: ""}[ok]


def render(title: str, rows: list[Row]) -> str:
    widths = [
        max(len("metric"), *(len(r.metric) for r in rows)),
        max(len("measured"), *(len(r.value) for r in rows)),
        max(len("goal"), *(len(r.target) + 5 for r in rows)),
        max(len("requirement"), *(len(r.original) + 5 for r in rows)),
    ]
    lines = [title, "=" * len(title)]
    header = ("metric", "measured", "goal", "requirement")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = (
            r.metric,
            r.value,
            f"{r.target} {_mark(r.target_ok)}".strip(),
            f"{r.original} {_mark(r.original_ok)}".strip(),
        )
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)
