"""The OAuth client side of browser sign-in against the configured issuer:
discovery, the authorization URL (code flow with PKCE, ``prompt=consent`` for
offline access, RFC 8707 ``resource``), the token endpoint (code exchange and
refresh; ``client_secret_basic``, ``client_secret_post`` or ``private_key_jwt``),
revocation (RFC 7009), userinfo, RP-initiated logout and ID-token validation."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.common.urls import add_params_to_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey, import_key

from chatsvc.auth.tokens import HttpKeySource, TokenValidator
from chatsvc.errors import ServiceUnavailable
from chatsvc.settings import Settings, SettingsError

log = logging.getLogger("chatsvc.auth.browser")

OIDC = web.AppKey["OidcClient | None"]("oidc_client")


class TokenRefused(Exception):
    """The token endpoint answered with an OAuth error (e.g. ``invalid_grant``)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True, slots=True)
class ProviderEndpoints:
    """What chatsvc uses of the discovery document."""

    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    iss_parameter: bool = False  # RFC 9207: the authorization response carries ``iss``
    resource_indicators: bool = False  # advertises RFC 8707 (a non-standard flag)


def _optional_url(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    return value if isinstance(value, str) and value else None


def load_private_key(path: Path) -> Any:
    """A PEM private key or a private JWK (JSON) for ``private_key_jwt``."""
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"{"):
            jwk = json.loads(data)
            return import_key(jwk, jwk.get("kty"))
        try:
            return RSAKey.import_key(data)
        except (ValueError, JoseError, TypeError):
            return ECKey.import_key(data)
    except (OSError, ValueError, JoseError) as exc:
        raise SettingsError(
            f"invalid setting CHATSVC_OKTA_CLIENT_PRIVATE_KEY: {path}: {type(exc).__name__}"
        ) from None


class OidcClient:
    """The OAuth client side of browser sign-in against the configured issuer."""

    def __init__(self, settings: Settings, client: Callable[[], aiohttp.ClientSession]) -> None:
        assert settings.okta_client_id is not None
        self.issuer = settings.issuer
        self.client_id = settings.okta_client_id
        self.scopes = settings.okta_scopes
        self.audience = settings.okta_audience
        self.groups_source = settings.okta_groups_source
        self.groups_claim = settings.okta_groups_claim
        self._settings = settings
        self._secret = settings.okta_client_secret
        method = settings.okta_token_auth_method
        if method == "auto":
            method = "client_secret_basic" if self._secret else "none"
        self.auth_method = method
        self._private_key = (
            load_private_key(settings.okta_client_private_key)
            if method == "private_key_jwt" and settings.okta_client_private_key is not None
            else None
        )
        self._client = client
        self._timeout = aiohttp.ClientTimeout(total=settings.jwks_fetch_timeout)
        self._endpoints: ProviderEndpoints | None = None
        # ID tokens are meant for us (aud = client id), not for the API; the
        # provider may sign them with other keys than access tokens, so they
        # have their own key set, loaded at start-up like the access-token one.
        self.id_tokens = TokenValidator(
            HttpKeySource(
                client, settings.issuer, settings.okta_jwks_uri, settings.jwks_fetch_timeout
            ),
            issuer=settings.issuer,
            audience=self.client_id,
            leeway=settings.jwt_leeway,
            min_refresh_interval=settings.jwks_min_refresh_interval,
        )

    async def start(self) -> None:
        """Start-up: discovery and the ID-token keys now, when the provider answers."""
        with contextlib.suppress(ServiceUnavailable):  # retried on first use
            await self.endpoints()
        await self.id_tokens.refresh(force=True)

    async def endpoints(self) -> ProviderEndpoints:
        if self._endpoints is None:
            url = self._settings.discovery_url
            try:
                async with self._client().get(url, timeout=self._timeout) as resp:
                    resp.raise_for_status()
                    doc = await resp.json(content_type=None)
                authorize, token = doc["authorization_endpoint"], doc["token_endpoint"]
                if not isinstance(authorize, str) or not isinstance(token, str):
                    raise TypeError("endpoint is not a string")
                issuer = doc.get("issuer")
                if issuer is not None and issuer != self.issuer:
                    # OpenID discovery 1.0 section 4.3: exactly the configured issuer.
                    log.warning("event=oidc_discovery_issuer_mismatch issuer=%r", str(issuer)[:200])
                    raise ValueError("discovery issuer mismatch")
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
                log.warning("event=oidc_discovery_failed error=%s", type(exc).__name__)
                raise ServiceUnavailable("The identity provider is unavailable") from None
            self._endpoints = ProviderEndpoints(
                authorize,
                token,
                revocation_endpoint=_optional_url(doc, "revocation_endpoint"),
                end_session_endpoint=_optional_url(doc, "end_session_endpoint"),
                userinfo_endpoint=_optional_url(doc, "userinfo_endpoint"),
                iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
                resource_indicators=doc.get("resource_indicators_supported") is True,
            )
        return self._endpoints

    @property
    def requests_offline_access(self) -> bool:
        return "offline_access" in self.scopes.split()

    def sends_resource(self, endpoints: ProviderEndpoints) -> bool:
        setting = self._settings.okta_resource_indicator
        return setting == "always" or (setting == "auto" and endpoints.resource_indicators)

    def authorization_url(
        self, endpoints: ProviderEndpoints, redirect_uri: str, state: str, nonce: str, verifier: str
    ) -> str:
        extra: dict[str, str] = {}
        if self.requests_offline_access and self._settings.okta_prompt_consent:
            # OIDC Core section 11: offline_access is granted only with prompt=consent.
            extra["prompt"] = "consent"
        if self.sends_resource(endpoints):
            extra["resource"] = self.audience  # RFC 8707
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
            **extra,
        )

    async def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            resource=True,
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, resource=True
        )

    def _client_auth(self, form: dict[str, str], audience: str) -> dict[str, str]:
        """Add the client authentication to ``form``; return the extra headers."""
        if self.auth_method == "none":
            form["client_id"] = self.client_id  # a public client, PKCE only
            return {}
        if self.auth_method == "client_secret_post":
            assert self._secret is not None
            form["client_id"] = self.client_id
            form["client_secret"] = self._secret
            return {}
        if self.auth_method == "private_key_jwt":
            now = int(time.time())
            claims = {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": audience,
                "jti": generate_token(32),
                "iat": now,
                "exp": now + 60,
            }
            alg = "ES256" if getattr(self._private_key, "key_type", "") == "EC" else "RS256"
            header = {"alg": alg}
            kid = getattr(self._private_key, "kid", None)
            if kid:
                header["kid"] = kid
            form["client_id"] = self.client_id
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            assert self._private_key is not None
            form["client_assertion"] = jwt.encode(header, claims, self._private_key, [alg])
            return {}
        # client_secret_basic: each part form-encoded first (RFC 6749, section 2.3.1)
        assert self._secret is not None
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    async def _post(self, url: str, form: dict[str, str]) -> tuple[int, Any]:
        headers = {"Accept": "application/json", **self._client_auth(form, url)}
        try:
            async with self._client().post(
                url, data=form, headers=headers, timeout=self._timeout
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("event=idp_request_failed error=%s", type(exc).__name__)
            raise ServiceUnavailable("The identity provider is unavailable") from None
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, None

    async def _token_request(self, form: dict[str, str], resource: bool) -> dict[str, Any]:
        """Raise :class:`TokenRefused` for an OAuth error, :class:`ServiceUnavailable` otherwise."""
        endpoints = await self.endpoints()
        form = dict(form)
        if resource and self.sends_resource(endpoints):
            form["resource"] = self.audience
        status, body = await self._post(endpoints.token_endpoint, form)
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

    async def revoke(self, token: str, hint: str = "refresh_token") -> bool:
        """RFC 7009, best effort: True when the provider confirmed."""
        try:
            endpoints = await self.endpoints()
            if endpoints.revocation_endpoint is None:
                return False
            status, _ = await self._post(
                endpoints.revocation_endpoint, {"token": token, "token_type_hint": hint}
            )
        except ServiceUnavailable:
            status = 503
        if status != 200:
            log.warning("event=token_revocation_failed status=%d", status)
        return status == 200

    async def userinfo(self, access_token: str) -> dict[str, Any] | None:
        endpoints = await self.endpoints()
        if endpoints.userinfo_endpoint is None:
            return None
        try:
            async with self._client().get(
                endpoints.userinfo_endpoint,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=self._timeout,
            ) as resp:
                if resp.status != 200:
                    log.info("event=userinfo_refused status=%d", resp.status)
                    return None
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("event=userinfo_failed error=%s", type(exc).__name__)
            return None
        return body if isinstance(body, dict) else None

    async def end_session_url(
        self, id_token: str | None, post_logout_redirect_uri: str
    ) -> str | None:
        """RP-initiated logout: where to send the browser, if the provider offers it."""
        try:
            endpoints = await self.endpoints()
        except ServiceUnavailable:
            return None
        if endpoints.end_session_endpoint is None:
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token:
            params["id_token_hint"] = id_token
        return add_params_to_uri(endpoints.end_session_endpoint, params)


def oidc_client(
    settings: Settings, client: Callable[[], aiohttp.ClientSession]
) -> OidcClient | None:
    """The client for Okta sign-in; none with the development issuer or without a client id."""
    if settings.dev_issuer or not settings.okta_client_id:
        return None
    return OidcClient(settings, client)
