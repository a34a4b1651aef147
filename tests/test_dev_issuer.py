"""The development issuer (contract §1): the embedded default when no Okta issuer is
set. Its key lives in the data directory, its tokens take the same validation path,
and ``python run.py token`` prints one."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.keys import SETTINGS
from chatsvc.settings import Settings, load_settings
from tests.conftest import run_cli
from tests.fake_okta import AUDIENCE

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture
async def dev_client(make_client):
    return await make_client(okta_issuer=None)


def mint(client: Any, sub: str, groups: list[str], **kwargs: Any) -> str:
    return DevIssuer(client.app[SETTINGS]).mint(sub, groups, **kwargs)


# --- the app with the development issuer -------------------------------------------


async def test_dev_token_is_accepted_with_its_level(dev_client):
    resp = await dev_client.get(
        "/api/me", headers=bearer(mint(dev_client, "alice@example.com", ["Onyx-Writers"]))
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["email"], body["permission"], body["groups"]) == (
        "alice@example.com",
        "write",
        ["Onyx-Writers"],
    )


async def test_dev_token_from_another_key_is_refused(dev_client, tmp_path):
    settings = dev_client.app[SETTINGS].model_copy(update={"data_dir": tmp_path / "elsewhere"})
    forged = DevIssuer(settings).mint("alice@example.com", ["Onyx-Admins"])
    resp = await dev_client.get("/api/me", headers=bearer(forged))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="chatsvc", error="invalid_token"'


async def test_expired_dev_token_is_refused(dev_client):
    token = mint(dev_client, "alice@example.com", ["Onyx-Writers"], ttl=-120)
    assert (await dev_client.get("/api/me", headers=bearer(token))).status == 401


async def test_dev_issuer_publishes_only_the_public_key(dev_client):
    resp = await dev_client.get("/dev-issuer/keys")
    assert resp.status == 200
    keys = (await resp.json())["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA"
    assert not PRIVATE_MEMBERS & keys[0].keys()
    token = mint(dev_client, "alice@example.com", [])
    assert segment(token, 0)["kid"] == keys[0]["kid"]


async def test_dev_issuer_discovery_points_at_its_keys(dev_client):
    resp = await dev_client.get("/dev-issuer/.well-known/openid-configuration")
    assert resp.status == 200
    body = await resp.json()
    assert body["issuer"] == dev_client.app[SETTINGS].issuer
    assert urlsplit(body["jwks_uri"]).path == "/dev-issuer/keys"


async def test_dev_issuer_routes_are_absent_with_a_real_issuer(client):
    for path in ("/dev-issuer/keys", "/dev-issuer/.well-known/openid-configuration"):
        resp = await client.get(path)
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"


async def test_signing_key_persists_across_restarts(make_client):
    first = await make_client(okta_issuer=None)
    token = mint(first, "alice@example.com", ["Onyx-Readers"])
    kid = (await (await first.get("/dev-issuer/keys")).json())["keys"][0]["kid"]
    await first.close()

    second = await make_client(okta_issuer=None)
    assert (await (await second.get("/dev-issuer/keys")).json())["keys"][0]["kid"] == kid
    resp = await second.get("/api/me", headers=bearer(token))
    assert resp.status == 200
    assert (await resp.json())["permission"] == "read"


# --- python run.py token ------------------------------------------------------------------


def cli_environment(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "CHATSVC_DATA_DIR": str(tmp_path),
        "CHATSVC_CONFIG": os.devnull,
        "CHATSVC_PORT": "8080",
        "CHATSVC_OKTA_AUDIENCE": AUDIENCE,
        **{f"CHATSVC_{k}": v for k, v in env.items()},
    }


def cli_settings(tmp_path: Path) -> Settings:
    return load_settings(environ=cli_environment(tmp_path))


def run_py(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path, *args, PORT="8080", OKTA_AUDIENCE=AUDIENCE, **env)


def test_token_command_prints_a_jwt_with_the_requested_claims(tmp_path):
    before = int(time.time())
    result = run_py(
        tmp_path, "token", "--sub", "alice@example.com", "--groups", "Onyx-Writers", "--ttl", "600"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2
    assert all(token.split("."))
    claims = segment(token, 1)
    assert claims["sub"] == "alice@example.com"
    assert claims["email"] == "alice@example.com"
    assert claims["groups"] == ["Onyx-Writers"]
    assert claims["iss"] == cli_settings(tmp_path).issuer
    assert claims["aud"] == AUDIENCE
    assert before + 600 <= claims["exp"] <= int(time.time()) + 600
    assert segment(token, 0)["alg"] == "RS256"


def test_token_command_splits_comma_separated_groups(tmp_path):
    result = run_py(tmp_path, "token", "--sub", "bob", "--groups", "Onyx-Readers, Onyx-Admins")
    assert result.returncode == 0, result.stderr
    claims = segment(result.stdout.strip(), 1)
    assert claims["groups"] == ["Onyx-Readers", "Onyx-Admins"]
    assert claims["exp"] - claims["iat"] == 3600


async def test_token_from_the_command_line_is_accepted_by_the_app(make_client, tmp_path):
    result = run_py(
        tmp_path, "token", "--sub", "alice@example.com", "--groups", "Onyx-Admins", "--ttl", "600"
    )
    assert result.returncode == 0, result.stderr
    client = await make_client(okta_issuer=None, port=8080)
    resp = await client.get("/api/me", headers=bearer(result.stdout.strip()))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["permission"] == "admin"


def test_token_command_refuses_when_a_real_issuer_is_configured(tmp_path):
    result = run_py(
        tmp_path, "token", "--sub", "alice", OKTA_ISSUER="https://example.okta.com/oauth2/default"
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "CHATSVC_OKTA_ISSUER" in lines[0]
