"""A fake Okta authorization server for the tests.

It serves the OpenID discovery document and a JWKS over real HTTP (a thread
with its own server), signs tokens with its generated keys, and can rotate its
keys, forge tokens in the usual ways and go offline.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

AUDIENCE = "api://chatsvc-test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeOkta:
    def __init__(self) -> None:
        self.keys: list[Any] = [
            RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
        ]
        self.online = True
        self.jwks_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}/oauth2/default"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # --- the HTTP side ---------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        okta = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                if not okta.online:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path.endswith("/.well-known/openid-configuration"):
                    body = {"issuer": okta.issuer, "jwks_uri": f"{okta.issuer}/v1/keys"}
                elif self.path.endswith("/v1/keys"):
                    okta.jwks_requests += 1
                    body = okta.jwks()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.keys]}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- keys --------------------------------------------------------------
    def rotate(self) -> Any:
        """Add a new signing key (Okta publishes the new key beside the old)."""
        key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
        self.keys.append(key)
        return key

    def add_ec_key(self) -> Any:
        key = ECKey.generate_key("P-256", {"use": "sig", "alg": "ES256"}, auto_kid=True)
        self.keys.append(key)
        return key

    def reset(self) -> None:
        self.keys = self.keys[:1]
        self.online = True
        self.jwks_requests = 0

    # --- tokens ------------------------------------------------------------
    def claims(
        self, sub: str, groups: list[str] | None = None, ttl: int = 3600, **extra: Any
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "groups": groups or [],
        }
        if "@" in sub:
            claims["email"] = sub
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self,
        claims: dict[str, Any],
        key: Any = None,
        alg: str | None = None,
        kid: str | None = None,
    ) -> str:
        key = key or self.keys[0]
        alg = alg or ("ES256" if isinstance(key, ECKey) else "RS256")
        header = {"alg": alg, "kid": kid or key.kid}
        return jwt.encode(header, claims, key, algorithms=[alg])

    def token(
        self, sub: str, groups: list[str] | None = None, ttl: int = 3600, **extra: Any
    ) -> str:
        return self.sign(self.claims(sub, groups, ttl, **extra))

    def unsigned_token(self, claims: dict[str, Any]) -> str:
        header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64(json.dumps(claims).encode())}."
