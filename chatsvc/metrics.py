"""Prometheus metrics, one registry per application (tests build many apps).

``deploy/prometheus/alerts.yml`` and ``deploy/grafana/chatsvc.json`` use these
names; ``tests/test_deploy.py`` checks that every name they use exists here."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A broadcast to thousands of members can take a while: the tail must be visible.
FANOUT_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def version() -> str:
    try:
        return metadata.version("chatsvc")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "0+unknown"


class Metrics:
    def __init__(self, broker_configured: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        Info("chatsvc_build", "The running chatsvc", registry=r).info(
            {"version": version(), "python": platform.python_version()}
        )
        self.messages = Counter(
            "chatsvc_messages", "Messages sent, edited and deleted", ["change"], registry=r
        )
        self.ws_closes = Counter(
            "chatsvc_ws_closes", "WebSocket connections closed, by close code", ["code"], registry=r
        )
        self.audit_queue = Gauge(
            "chatsvc_audit_queue", "Audit events waiting to be stored", registry=r
        )
        self.db_pool_in_use = Gauge(
            "chatsvc_db_pool_in_use", "Database connections checked out of the pool", registry=r
        )
        self.db_pool_size = Gauge(
            "chatsvc_db_pool_size", "Database connections the pool holds open", registry=r
        )
        self.requests = Counter(
            "chatsvc_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "chatsvc_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "chatsvc_auth_failures", "Rejected credentials by reason", ["reason"], registry=r
        )
        self.permission_cache = Counter(
            "chatsvc_permission_cache", "Permission cache lookups", ["result"], registry=r
        )
        self.denials = Counter(
            "chatsvc_access_denials", "Access denials by action", ["action"], registry=r
        )
        self.shadow_denials = Counter(
            "chatsvc_shadow_denials",
            "Requests shadow mode allowed that enforcement would refuse, by action",
            ["action"],
            registry=r,
        )
        self.revocations = Counter(
            "chatsvc_revocations",
            "Users whose access the identity provider ended or changed, by source",
            ["source"],
            registry=r,
        )
        self.rate_limited = Counter(
            "chatsvc_rate_limited", "Messages refused by the per-user rate limit", registry=r
        )
        self.audit_overflow = Counter(
            "chatsvc_audit_overflow",
            "Audit events that found the buffer full (logged, not stored)",
            registry=r,
        )
        self.audit_written = Counter("chatsvc_audit_written", "Audit events stored", registry=r)
        self.ws_connections = Gauge(
            "chatsvc_ws_connections", "Open WebSocket connections", registry=r
        )
        self.ws_frames_sent = Counter(
            "chatsvc_ws_frames_sent", "WebSocket frames queued to members", registry=r
        )
        self.ws_slow_closes = Counter(
            "chatsvc_ws_slow_consumer_closes",
            "Members closed because their queue was full",
            registry=r,
        )
        self.fanout_seconds = Histogram(
            "chatsvc_ws_fanout_seconds",
            "Time to enqueue one event to every local member",
            buckets=FANOUT_BUCKETS,
            registry=r,
        )
        # Exported only where a broker is configured: a single process has none to lose.
        self.broker_up = Gauge(
            "chatsvc_broker_up",
            "1 when the cross-process broker is connected",
            registry=r if broker_configured else None,
        )
        self.broker_errors = Counter(
            "chatsvc_broker_errors", "Broker connection failures", registry=r
        )
