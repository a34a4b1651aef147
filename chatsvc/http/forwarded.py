"""Who is really calling, behind a load balancer (``CHATSVC_TRUSTED_PROXIES``).

Only a connection from a trusted proxy may say, in ``X-Forwarded-For``,
``-Proto`` and ``-Host``, who the client is and how it reached the proxy;
anyone else's headers are ignored. The client is the right-most address in
``X-Forwarded-For`` that is not itself a trusted proxy (addresses to its left
were written by the client and prove nothing).

Written here rather than taken from aiohttp-remotes: its strict mode answers 400
to every client that does not come through the proxy (health checks, operators
on the host), and its filtered mode believes the headers of any peer. The
values are kept in request keys, not in a ``request.clone()``, so that what
later middlewares record on the request (its principal, its id) still reaches
the access log.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from chatsvc.keys import SETTINGS
from chatsvc.settings import Settings, is_loopback_host

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Forwarded:
    client_ip: str
    scheme: str | None  # as the proxy received the request
    host: str | None


FORWARDED = web.RequestKey[Forwarded]("chatsvc_forwarded")


def _trusted(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _last(value: str | None) -> str | None:
    if not value:
        return None
    last = value.split(",")[-1].strip()
    return last or None


def resolve(request: web.BaseRequest, networks: tuple[Network, ...]) -> Forwarded | None:
    if not networks or not _trusted(request.remote, networks):
        return None
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    hops = [hop for hop in hops if hop]
    client = None
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a malformed entry: trust nothing to its left
        client = hop
        if not _trusted(hop, networks):
            break
    if client is None:
        return None
    proto = _last(request.headers.get("X-Forwarded-Proto"))
    scheme = proto.lower() if proto and proto.lower() in ("http", "https") else None
    return Forwarded(client, scheme, _last(request.headers.get("X-Forwarded-Host")))


def client_ip(request: web.BaseRequest) -> str | None:
    """The caller's address: the proxy's word for it when the proxy is trusted."""
    forwarded = request.get(FORWARDED)
    return forwarded.client_ip if forwarded is not None else request.remote


def forwarded_middleware(settings: Settings) -> Middleware:
    networks = settings.trusted_proxy_networks

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        forwarded = resolve(request, networks)
        if forwarded is not None:
            request[FORWARDED] = forwarded
        return await handler(request)

    return middleware


def public_origin(request: web.Request) -> str:
    """``scheme://host`` the browser uses to reach chatsvc: ``CHATSVC_PUBLIC_URL``
    when set, else what a trusted proxy says, else the request itself."""
    public = request.app[SETTINGS].public_url
    if public:
        parts = urlsplit(public)
        return f"{parts.scheme}://{parts.netloc}"
    forwarded = request.get(FORWARDED)
    scheme = forwarded.scheme if forwarded and forwarded.scheme else request.scheme
    host = forwarded.host if forwarded and forwarded.host else request.host
    return f"{scheme}://{host}"


def is_secure_origin(request: web.Request) -> bool:
    """Whether cookies must be ``Secure``: https, or any host but loopback."""
    parts = urlsplit(public_origin(request))
    return parts.scheme == "https" or not is_loopback_host(parts.hostname)
