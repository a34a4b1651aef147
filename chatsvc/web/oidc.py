"""The OAuth client side of browser sign-in against the configured issuer:
discovery, the authorization URL (code flow with PKCE), the token endpoint
(code exchange and refresh) and ID-token validation."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from chatsvc.auth.tokens import HttpKeySource, TokenValidator
from chatsvc.errors import ServiceUnavailable
from chatsvc.settings import Settings

log = logging.getLogger("chatsvc.auth.browser")

OIDC = web.AppKey["OidcClient | None"]("oidc_client")


class TokenRefused(Exception):
    """The token endpoint answered with an OAuth error (e.g. ``invalid_grant``)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True, slots=True)
class ProviderEndpoints:
    authorization_endpoint: str
    token_endpoint: str


class OidcClient:
    """The OAuth client side of browser sign-in against the configured issuer."""

    def __init__(self, settings: Settings, client: Callable[[], aiohttp.ClientSession]) -> None:
        assert settings.okta_client_id is not None
        self.issuer = settings.issuer
        self.client_id = settings.okta_client_id
        self.scopes = settings.okta_scopes
        self._secret = settings.okta_client_secret
        self._client = client
        self._timeout = aiohttp.ClientTimeout(total=settings.jwks_fetch_timeout)
        self._endpoints: ProviderEndpoints | None = None
        # ID tokens are signed with the same keys as access tokens but are meant
        # for us (aud = client id), not for the API.
        self.id_tokens = TokenValidator(
            HttpKeySource(
                client, settings.issuer, settings.okta_jwks_uri, settings.jwks_fetch_timeout
            ),
            issuer=settings.issuer,
            audience=self.client_id,
            leeway=settings.jwt_leeway,
            min_refresh_interval=settings.jwks_min_refresh_interval,
        )

    async def endpoints(self) -> ProviderEndpoints:
        if self._endpoints is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                async with self._client().get(url, timeout=self._timeout) as resp:
                    resp.raise_for_status()
                    doc = await resp.json(content_type=None)
                authorize, token = doc["authorization_endpoint"], doc["token_endpoint"]
                if not isinstance(authorize, str) or not isinstance(token, str):
                    raise TypeError("endpoint is not a string")
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
                log.warning("event=oidc_discovery_failed error=%s", type(exc).__name__)
                raise ServiceUnavailable("The identity provider is unavailable") from None
            self._endpoints = ProviderEndpoints(authorize, token)
        return self._endpoints

    def authorization_url(
        self, endpoints: ProviderEndpoints, redirect_uri: str, state: str, nonce: str, verifier: str
    ) -> str:
        return prepare_grant_uri(
            endpoints.authorization_endpoint,
            client_id=self.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self.scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )

    async def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        """Raise :class:`TokenRefused` for an OAuth error, :class:`ServiceUnavailable` otherwise."""
        endpoints = await self.endpoints()
        headers = {"Accept": "application/json"}
        if self._secret is None:
            form = {**form, "client_id": self.client_id}  # a public client, PKCE only
        else:
            # client_secret_basic: each part form-encoded first (RFC 6749, section 2.3.1)
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            async with self._client().post(
                endpoints.token_endpoint,
                data=form,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("event=token_endpoint_failed error=%s", type(exc).__name__)
            raise ServiceUnavailable("The identity provider is unavailable") from None
        if not isinstance(body, dict):
            raise ServiceUnavailable("The identity provider answered unexpectedly")
        if status != 200:
            error = body.get("error")
            if 400 <= status < 500 and isinstance(error, str):
                raise TokenRefused(error)
            raise ServiceUnavailable("The identity provider is unavailable")
        if not isinstance(body.get("access_token"), str):
            raise TokenRefused("no_access_token")
        return body


def oidc_client(
    settings: Settings, client: Callable[[], aiohttp.ClientSession]
) -> OidcClient | None:
    """The client for Okta sign-in; none with the development issuer or without a client id."""
    if settings.dev_issuer or not settings.okta_client_id:
        return None
    return OidcClient(settings, client)
