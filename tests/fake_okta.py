"""A fake Okta authorization server for the tests.

It serves the OpenID discovery document and a JWKS over real HTTP (a thread
with its own server), signs tokens with its generated keys, and can rotate its
keys, forge tokens in the usual ways and go offline.

For browser sign-in it also has an authorization endpoint (which signs in
``browser_user`` at once and redirects back with a code) and a token endpoint
(authorization code with a PKCE S256 check, and rotating refresh tokens: a
refresh token used twice revokes the whole grant, as strict providers do), a
revocation endpoint (RFC 7009), userinfo and an end-session endpoint. Its
issuer can end in ``/`` (Auth0 style) and its authorization response can carry
``iss`` (RFC 9207).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
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
        # The org authorization server (``http://127.0.0.1:PORT``): it signs Universal
        # Logout requests, with a key of its own.
        self.org_key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
        self.online = True
        self.jwks_requests = 0
        self._reset_sign_in()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/oauth2/default"
        self.trailing_slash = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def issuer(self) -> str:
        return self.base + ("/" if self.trailing_slash else "")

    @property
    def org(self) -> str:
        """The Okta org's URL: the scheme and host of the issuer."""
        return f"http://127.0.0.1:{self.port}"

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
                if "//" in urlsplit(self.path).path:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": okta.org, "jwks_uri": f"{okta.org}/oauth2/v1/keys"}
                elif self.path == "/oauth2/v1/keys":
                    body = {"keys": [okta.org_key.as_dict(private=False)]}
                elif self.path == "/oauth2/default/.well-known/openid-configuration":
                    okta.discovery_requests += 1
                    body = {
                        "issuer": okta.issuer,
                        "jwks_uri": f"{okta.base}/v1/keys",
                        "authorization_endpoint": f"{okta.base}/v1/authorize",
                        "token_endpoint": f"{okta.base}/v1/token",
                        "revocation_endpoint": f"{okta.base}/v1/revoke",
                        "userinfo_endpoint": f"{okta.base}/v1/userinfo",
                        "end_session_endpoint": f"{okta.base}/v1/logout",
                        **okta.discovery_extra,
                    }
                    body = {k: v for k, v in body.items() if v is not None}
                elif urlsplit(self.path).path.endswith("/v1/userinfo"):
                    auth = self.headers.get("Authorization", "")
                    known = okta.access_tokens.get(auth.removeprefix("Bearer "))
                    okta.userinfo_requests += 1
                    if known is None:
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    body = {"sub": known, **okta.userinfo_claims}
                elif urlsplit(self.path).path.endswith("/v1/authorize"):
                    location = okta.authorize(parse_qs(urlsplit(self.path).query))
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
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

            def do_POST(self) -> None:
                known = self.path.endswith(("/v1/token", "/v1/revoke"))
                if not okta.online or not known:
                    self.send_response(503 if not okta.online else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                fields = {k: v[0] for k, v in form.items()}
                if self.path.endswith("/v1/revoke"):
                    status, body = okta.revoke(fields)
                else:
                    if okta.token_delay:
                        time.sleep(okta.token_delay)
                    status, body = okta.token_endpoint(fields, self.headers.get("Authorization"))
                payload = json.dumps(body).encode()
                self.send_response(status)
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
    def rotate(self, hard: bool = False) -> Any:
        """Add a new signing key (Okta publishes the new key beside the old); ``hard``:
        the new key replaces the old ones and signs from now on."""
        key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
        if hard:
            self.keys = [key]
        else:
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
        self.trailing_slash = False
        self._reset_sign_in()

    # --- browser sign-in (authorization code + PKCE) -------------------------
    def _reset_sign_in(self) -> None:
        self.browser_user: tuple[str, list[str]] = ("browser@example.com", ["Onyx-Writers"])
        self.access_token_ttl = 3600
        self.id_token_claims: dict[str, Any] = {}  # overrides, e.g. a wrong nonce
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, Any]] = []
        self._codes: dict[str, dict[str, Any]] = {}
        self._refresh_tokens: dict[str, tuple[str, list[str], str, str]] = {}
        self._spent: dict[str, str] = {}  # used refresh token -> its grant
        self.revoked_grants: set[str] = set()
        self.revocations: list[dict[str, str]] = []
        self.access_tokens: dict[str, str] = {}  # issued access token -> sub (userinfo)
        self.access_token_claims: dict[str, Any] = {}  # overrides, e.g. {"email": None}
        self.userinfo_claims: dict[str, Any] = {}
        self.discovery_extra: dict[str, Any] = {}
        self.response_iss: str | None = None  # RFC 9207 ``iss`` in the authorization response
        self.discovery_requests = 0
        self.userinfo_requests = 0
        self.token_delay = 0.0

    def authorize(self, query: dict[str, list[str]]) -> str:
        """Sign ``browser_user`` in at once; the redirect back carries a one-time code."""
        params = {k: v[0] for k, v in query.items()}
        self.authorize_requests.append(params)
        code = secrets.token_urlsafe(16)
        self._codes[code] = {**params, "user": self.browser_user}
        back = {"code": code, "state": params.get("state", "")}
        if self.response_iss is not None:
            back["iss"] = self.response_iss
        return f"{params['redirect_uri']}?{urlencode(back)}"

    def token_endpoint(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        self.token_requests.append({**form, "authorization": authorization})
        grant = form.get("grant_type")
        if grant == "authorization_code":
            request = self._codes.pop(form.get("code", ""), None)
            if request is None or request.get("redirect_uri") != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant"}
            verifier = form.get("code_verifier", "")
            if request.get("code_challenge_method") != "S256" or create_s256_code_challenge(
                verifier
            ) != request.get("code_challenge"):
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification"}
            sub, groups = request["user"]
            return 200, self._issue(
                sub, groups, request["client_id"], request.get("nonce"), secrets.token_hex(8)
            )
        if grant == "refresh_token":
            presented = form.get("refresh_token", "")
            known = self._refresh_tokens.pop(presented, None)
            if known is None:
                grant_id = self._spent.get(presented)
                if grant_id is not None:  # reuse: treated as theft, the grant is revoked
                    self._revoke_grant(grant_id)
                return 400, {"error": "invalid_grant"}
            sub, groups, client_id, grant_id = known
            self._spent[presented] = grant_id
            return 200, self._issue(sub, groups, client_id, None, grant_id)
        return 400, {"error": "unsupported_grant_type"}

    def change_groups(self, sub: str, groups: list[str]) -> None:
        """An administrator changed the user's groups: refreshed tokens carry the new ones."""
        for token, (known_sub, _, client_id, grant_id) in list(self._refresh_tokens.items()):
            if known_sub == sub:
                self._refresh_tokens[token] = (known_sub, list(groups), client_id, grant_id)

    def _revoke_grant(self, grant_id: str) -> None:
        self.revoked_grants.add(grant_id)
        for token, known in list(self._refresh_tokens.items()):
            if known[3] == grant_id:
                del self._refresh_tokens[token]

    def revoke(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.revocations.append(form)
        known = self._refresh_tokens.get(form.get("token", ""))
        if known is not None:
            self._revoke_grant(known[3])
        return 200, {}

    def live_grants(self) -> set[str]:
        return {known[3] for known in self._refresh_tokens.values()}

    def _issue(
        self, sub: str, groups: list[str], client_id: str, nonce: str | None, grant_id: str
    ) -> dict[str, Any]:
        id_claims = self.claims(
            sub, ttl=3600, aud=client_id, nonce=nonce, groups=None, sid=f"sid-{grant_id}"
        )
        id_claims.update(self.id_token_claims)
        id_claims = {k: v for k, v in id_claims.items() if v is not None}
        refresh = secrets.token_urlsafe(24)
        self._refresh_tokens[refresh] = (sub, groups, client_id, grant_id)
        access_claims = self.claims(sub, groups, ttl=self.access_token_ttl)
        access_claims.update(self.access_token_claims)
        access = self.sign({k: v for k, v in access_claims.items() if v is not None})
        self.access_tokens[access] = sub
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl,
            "scope": "openid email profile offline_access",
            "access_token": access,
            "id_token": self.sign(id_claims),
            "refresh_token": refresh,
        }

    def revoke_refresh_tokens(self) -> None:
        self._refresh_tokens.clear()

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

    def logout_request(self, audience: str, key: Any = None, **extra: Any) -> str:
        """A Universal Logout (Global Token Revocation) request's bearer JWT, from the org."""
        now = int(time.time())
        claims = {
            "iss": self.org,
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            **extra,
        }
        return self.sign({k: v for k, v in claims.items() if v is not None}, key or self.org_key)

    def logout_token(self, client_id: str, **extra: Any) -> str:
        """An OIDC back-channel logout token from the issuer (pass ``sub`` and/or ``sid``)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            **extra,
        }
        return self.sign({k: v for k, v in claims.items() if v is not None})

    def unsigned_token(self, claims: dict[str, Any]) -> str:
        header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64(json.dumps(claims).encode())}."
