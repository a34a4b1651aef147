"""The development issuer: the embedded default when no Okta issuer is configured.

It keeps an RSA signing key in the data directory, publishes its public half as
a JWKS (validated through the same :class:`~chatsvc.auth.tokens.TokenValidator`
as Okta's keys) and mints tokens for ``python run.py token``, and what the real IdP sends to end
access (``python run.py idp ...``).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from chatsvc.auth.keyfile import read_or_create
from chatsvc.settings import Settings

KEY_FILE = "dev-issuer-key.json"


class DevIssuer:
    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.issuer
        self.audience = settings.okta_audience
        self.groups_claim = settings.okta_groups_claim
        self._key = self._load_or_create(settings.data_dir / KEY_FILE)

    @staticmethod
    def _load_or_create(path: Path) -> RSAKey:
        def generate() -> bytes:
            key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
            return json.dumps(key.as_dict(private=True)).encode()

        return RSAKey.import_key(json.loads(read_or_create(path, generate)))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.as_dict(private=False)]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": "/dev-issuer/keys"}

    def mint(
        self,
        sub: str,
        groups: list[str] | tuple[str, ...] = (),
        ttl: int = 3600,
        email: str | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            self.groups_claim: list(groups),
        }
        if email or "@" in sub:
            claims["email"] = email or sub
        return self._sign(claims)

    def _sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "kid": self._key.kid}
        return jwt.encode(header, claims, self._key)

    def mint_logout_request(self, audience: str, ttl: int = 300) -> str:
        """What the IdP signs to call Universal Logout (``aud``: the endpoint's URL)."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience, "iat": now, "exp": now + ttl}
        return self._sign({**claims, "jti": uuid.uuid4().hex})

    def mint_logout_token(
        self, client_id: str, sub: str | None = None, sid: str | None = None
    ) -> str:
        """An OIDC back-channel logout token for ``sub`` and/or ``sid``."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }
        if sub:
            claims["sub"] = sub
        if sid:
            claims["sid"] = sid
        return self._sign(claims)
