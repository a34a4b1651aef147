"""Okta access-token validation against the issuer's JWKS (joserfc).

The validator owns the key cache: keys are fetched once, and an unknown ``kid``
triggers at most one re-fetch per ``jwks_min_refresh_interval`` so that key
rotation works without a restart and a flood of forged ``kid`` values cannot
turn into a flood of requests to Okta.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger("chatsvc.auth")

ALLOWED_ALGORITHMS = ("RS256", "ES256")


class InvalidToken(Exception):
    """The token is not acceptable; ``reason`` is for logs and metrics only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(Exception):
    """No signing keys are cached and the JWKS cannot be fetched."""


class KeySource(Protocol):
    async def fetch(self) -> KeySet: ...


class HttpKeySource:
    """The issuer's JWKS over HTTP, located through OpenID discovery unless given."""

    def __init__(
        self,
        client: Callable[[], aiohttp.ClientSession],
        issuer: str,
        jwks_uri: str | None,
        timeout: float,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._jwks_uri = jwks_uri
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _get_json(self, url: str) -> Any:
        async with self._client().get(url, timeout=self._timeout) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def fetch(self) -> KeySet:
        if self._jwks_uri is None:
            discovery = await self._get_json(discovery_url(self._issuer))
            uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
            if not isinstance(uri, str):
                raise ValueError("discovery document has no jwks_uri")
            self._jwks_uri = uri
        return KeySet.import_key_set(await self._get_json(self._jwks_uri))


def discovery_url(issuer: str) -> str:
    """OpenID discovery of ``issuer``: an Auth0-style trailing ``/`` is not doubled."""
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"


class StaticKeySource:
    """Keys held in-process (the development issuer)."""

    def __init__(self, jwks: Callable[[], dict[str, Any]]) -> None:
        self._jwks = jwks

    async def fetch(self) -> KeySet:
        return KeySet.import_key_set(self._jwks())  # type: ignore[arg-type]


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def unverified_header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed")
    try:
        header = _b64json(parts[0])
    except (ValueError, UnicodeError) as exc:
        raise InvalidToken("malformed") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed")
    return header


TIME_CLAIMS = ("exp", "nbf", "iat")
LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z: later times overflow datetime


def _valid_time(value: Any) -> bool:
    """A NumericDate within year 9999: a number, not a bool, not NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value <= LAST_SECOND  # False for NaN too


class TokenValidator:
    def __init__(
        self,
        source: KeySource,
        issuer: str,
        audience: str,
        leeway: int = 60,
        min_refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._min_refresh = min_refresh_interval
        self._clock = clock
        self._keys: KeySet | None = None
        self._last_fetch = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def keys_loaded(self) -> bool:
        return self._keys is not None

    async def refresh(self, *, force: bool = False) -> bool:
        """Re-fetch the JWKS unless one was fetched within the refresh interval."""
        async with self._lock:
            now = time.monotonic()
            # With no keys at all, retry sooner: every request is failing meanwhile.
            interval = self._min_refresh if self._keys is not None else min(self._min_refresh, 1.0)
            if not force and now - self._last_fetch < interval:
                return False
            if not force:
                # The start-up load does not open the window: a key rotated
                # just after start must still be picked up by its first use.
                self._last_fetch = now
            try:
                keys = await self._source.fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError, JoseError, OSError) as exc:
                log.warning("event=jwks_fetch_failed error=%s", type(exc).__name__)
                return False
            if self._keys is None:
                # The first successful load (lazy, when start-up could not fetch)
                # does not open the window either: a key rotated since must be
                # picked up by its first use, not 30 s later.
                self._last_fetch = float("-inf")
            self._keys = keys
            log.info("event=jwks_loaded keys=%d", len(keys.keys))
            return True

    async def _key_for(self, kid: str | None) -> Any:
        if self._keys is None:
            # Rate-limited too: during an outage, requests must not each wait on a fetch.
            await self.refresh()
            if self._keys is None:
                raise KeysUnavailable()
        try:
            return self._keys.get_by_kid(kid)
        except JoseError:
            pass
        # Look again even when this call did not fetch: a concurrent request
        # may have just loaded the rotated key while this one waited.
        await self.refresh()
        try:
            return self._keys.get_by_kid(kid)
        except JoseError:
            raise InvalidToken("unknown_kid") from None

    async def validate(self, token: str) -> dict[str, Any]:
        """Verify an access token's signature and claims; return the claims or raise
        :class:`InvalidToken`."""
        return await self.validate_for(token, self._audience)

    async def validate_for(
        self, token: str, audience: str, *, require_sub: bool = True, require_jti: bool = False
    ) -> dict[str, Any]:
        """The same checks for another audience: the IdP's logout tokens (``aud`` our
        client id, ``sub`` optional beside ``sid``) and Universal Logout requests."""
        if not token:
            raise InvalidToken("empty")
        header = unverified_header(token)
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise InvalidToken("algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no_kid")  # keys are chosen by kid only (contract section 1)
        key = await self._key_for(kid)
        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken("signature") from exc
        claims = decoded.claims
        for name in TIME_CLAIMS:
            if name in claims and not _valid_time(claims[name]):
                raise InvalidToken("time_claim")
        essential: dict[str, Any] = {
            "iss": {"essential": True, "value": self._issuer},
            "aud": {"essential": True, "value": audience},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        if require_sub:
            essential["sub"] = {"essential": True}
        if require_jti:
            essential["jti"] = {"essential": True}
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()), leeway=self._leeway, **essential
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidToken(getattr(exc, "error", "claims")) from exc
        if require_sub and not isinstance(claims.get("sub"), str):
            raise InvalidToken("claims")
        if require_jti and not (isinstance(claims.get("jti"), str) and claims["jti"]):
            raise InvalidToken("claims")
        if not isinstance(claims.get("exp"), int | float):
            raise InvalidToken("claims")
        return claims
