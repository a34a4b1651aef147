"""Configuration (contract §7): built-in defaults < TOML file < ``CHATSVC_*``
environment; a bad value stops start-up with one line naming the setting."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from chatsvc.settings import SettingsError, load_settings
from tests.conftest import run_cli


@pytest.fixture
def config(tmp_path: Path):
    """``load(toml_text, **env)``: settings from that file and environment only."""

    def load(toml: str = "", **env: str) -> Any:
        path = tmp_path / "chatsvc.toml"
        path.write_text(toml)
        return load_settings(environ={f"CHATSVC_{k}": v for k, v in env.items()}, config_file=path)

    return load


# --- precedence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("", {}, 8080),
        ("port = 9000", {}, 9000),
        ("", {"PORT": "9100"}, 9100),
        ("port = 9000", {"PORT": "9100"}, 9100),
    ],
    ids=["default", "file over default", "environment over default", "environment over file"],
)
def test_precedence_is_defaults_then_file_then_environment(config, toml, env, expected):
    assert config(toml, **env).port == expected


def test_environment_overrides_only_the_settings_it_names(config):
    settings = config('port = 9000\nokta_audience = "api://from-file"', OKTA_AUDIENCE="api://env")
    assert (settings.port, settings.okta_audience) == (9000, "api://env")


def test_contract_defaults(config):
    settings = config()
    assert (settings.host, settings.port, settings.okta_audience) == (
        "127.0.0.1",
        8080,
        "api://default",
    )
    assert settings.okta_groups_claim == "groups"
    assert (settings.groups_read, settings.groups_write, settings.groups_admin) == (
        ("Onyx-Readers",),
        ("Onyx-Writers",),
        ("Onyx-Admins",),
    )
    assert settings.enable_chat_permissions is True
    assert (settings.permission_mode, settings.enforce_groups) == ("enforce", ())
    assert settings.permission_cache_ttl == 60
    assert settings.broker_url is None
    assert settings.auto_migrate is True
    assert settings.dev_issuer


def test_missing_config_file_means_defaults(tmp_path):
    settings = load_settings(environ={}, config_file=tmp_path / "absent.toml")
    assert settings.port == 8080


def test_chatsvc_config_names_the_file(tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text("port = 9300")
    assert load_settings(environ={"CHATSVC_CONFIG": str(path)}).port == 9300


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("0", False), ("true", True), ("1", True)],
)
def test_boolean_from_the_environment(config, value, expected):
    assert config(ENABLE_CHAT_PERMISSIONS=value).enable_chat_permissions is expected


# --- the permission mode ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("", {"PERMISSION_MODE": "shadow"}, "shadow"),
        ('permission_mode = "off"', {}, "off"),
        ("", {"ENABLE_CHAT_PERMISSIONS": "false"}, "off"),
        ("", {"ENABLE_CHAT_PERMISSIONS": "0"}, "off"),
        ("enable_chat_permissions = false", {}, "off"),
        ("", {"ENABLE_CHAT_PERMISSIONS": "true"}, "enforce"),
        ("", {"ENABLE_CHAT_PERMISSIONS": "false", "PERMISSION_MODE": "off"}, "off"),
        ("enable_chat_permissions = true", {"PERMISSION_MODE": "enforce"}, "enforce"),
    ],
    ids=[
        "shadow",
        "off in the file",
        "flag false",
        "flag 0",
        "flag false in the file",
        "flag true",
        "both off",
        "both enforce",
    ],
)
def test_the_permission_flag_is_an_alias_of_the_mode(config, toml, env, expected):
    assert config(toml, **env).permission_mode == expected


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        ("", {"ENABLE_CHAT_PERMISSIONS": "false", "PERMISSION_MODE": "shadow"}),
        ("", {"ENABLE_CHAT_PERMISSIONS": "false", "PERMISSION_MODE": "enforce"}),
        ("", {"ENABLE_CHAT_PERMISSIONS": "true", "PERMISSION_MODE": "off"}),
        ("", {"ENABLE_CHAT_PERMISSIONS": "true", "PERMISSION_MODE": "shadow"}),
        ("enable_chat_permissions = false", {"PERMISSION_MODE": "enforce"}),
    ],
    ids=["false, shadow", "false, enforce", "true, off", "true, shadow", "file false, env enforce"],
)
def test_a_flag_and_a_mode_that_disagree_stop_start_up(config, toml, env):
    with pytest.raises(SettingsError) as caught:
        config(toml, **env)
    message = str(caught.value)
    assert message.startswith("invalid setting CHATSVC_PERMISSION_MODE: ")
    assert "CHATSVC_ENABLE_CHAT_PERMISSIONS" in message
    assert "set only CHATSVC_PERMISSION_MODE" in message
    assert "\n" not in message


def test_the_canary_groups_are_comma_separated(config):
    settings = config(PERMISSION_MODE="shadow", ENFORCE_GROUPS="Onyx-Admins, Pilot,,")
    assert settings.enforce_groups == ("Onyx-Admins", "Pilot")
    assert config('enforce_groups = ["Pilot"]').enforce_groups == ("Pilot",)


def test_a_disagreement_stops_the_command_line_with_one_line(tmp_path):
    result = run_cli(tmp_path, "migrate", PERMISSION_MODE="shadow", ENABLE_CHAT_PERMISSIONS="no")
    assert result.returncode == 2
    assert result.stderr.startswith("chatsvc: invalid setting CHATSVC_PERMISSION_MODE: shadow ")
    assert result.stderr.count("\n") == 1


# --- comma-separated group lists ------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("", {"GROUPS_WRITE": "Team-A"}, ("Team-A",)),
        ("", {"GROUPS_WRITE": "Team-A, Team-B,,Team-C "}, ("Team-A", "Team-B", "Team-C")),
        ('groups_write = "Team-A,Team-B"', {}, ("Team-A", "Team-B")),
        ('groups_write = ["Team-A", "Team-B"]', {}, ("Team-A", "Team-B")),
        ('groups_write = "Team-A"', {"GROUPS_WRITE": "Team-Z"}, ("Team-Z",)),
    ],
    ids=["env one", "env several", "file string", "file list", "env over file"],
)
def test_group_lists_are_comma_separated(config, toml, env, expected):
    assert config(toml, **env).groups_write == expected


# --- the issuer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [
        "https://example.okta.com/oauth2/default",
        "http://127.0.0.1:8000/oauth2/default",
        "http://localhost:8000",
        "http://[::1]:8000/oauth2/default",
    ],
)
def test_accepted_issuers(config, issuer):
    assert config(OKTA_ISSUER=issuer).okta_issuer == issuer


def test_issuer_trailing_slash_is_kept(config):
    # Auth0-style issuers end in "/": iss is compared with the setting exactly.
    settings = config(OKTA_ISSUER="https://tenant.auth0.com/")
    assert settings.okta_issuer == "https://tenant.auth0.com/"
    assert settings.discovery_url == "https://tenant.auth0.com/.well-known/openid-configuration"


def test_production_with_a_real_issuer_starts(config):
    settings = config(ENV="production", OKTA_ISSUER="https://example.okta.com")
    assert not settings.dev_issuer


# --- bad values ---------------------------------------------------------------------------

BAD = {
    "port not a number": ("", {"PORT": "abc"}, "CHATSVC_PORT"),
    "port out of range": ("", {"PORT": "70000"}, "CHATSVC_PORT"),
    "port not a number in the file": ('port = "abc"', {}, "CHATSVC_PORT"),
    "http issuer": ("", {"OKTA_ISSUER": "http://example.com"}, "CHATSVC_OKTA_ISSUER"),
    "http issuer posing as loopback": (
        "",
        {"OKTA_ISSUER": "http://127.0.0.1.evil.example/oauth2"},
        "CHATSVC_OKTA_ISSUER",
    ),
    "issuer without a scheme": ("", {"OKTA_ISSUER": "example.okta.com"}, "CHATSVC_OKTA_ISSUER"),
    "http issuer in the file": ('okta_issuer = "http://example.com"', {}, "CHATSVC_OKTA_ISSUER"),
    "broker not redis": ("", {"BROKER_URL": "http://127.0.0.1:6379"}, "CHATSVC_BROKER_URL"),
    "database not supported": ("", {"DATABASE_URL": "mysql://db/chat"}, "CHATSVC_DATABASE_URL"),
    "production without issuer": ("", {"ENV": "production"}, "CHATSVC_OKTA_ISSUER"),
    "unknown environment": ("", {"ENV": "staging"}, "CHATSVC_ENV"),
    "boolean not a boolean": (
        "",
        {"ENABLE_CHAT_PERMISSIONS": "maybe"},
        "CHATSVC_ENABLE_CHAT_PERMISSIONS",
    ),
    "unknown permission mode": ("", {"PERMISSION_MODE": "audit"}, "CHATSVC_PERMISSION_MODE"),
    "unknown permission mode beside the flag": (
        "",
        {"PERMISSION_MODE": "Shadow", "ENABLE_CHAT_PERMISSIONS": "false"},
        "CHATSVC_PERMISSION_MODE",
    ),
    "leeway over 60 s": ("", {"JWT_LEEWAY": "120"}, "CHATSVC_JWT_LEEWAY"),
    "negative cache ttl": ("", {"PERMISSION_CACHE_TTL": "-1"}, "CHATSVC_PERMISSION_CACHE_TTL"),
    "development issuer open to the network": ("", {"HOST": "0.0.0.0"}, "CHATSVC_ENV"),
    "listen backlog: zero": ("", {"LISTEN_BACKLOG": "0"}, "CHATSVC_LISTEN_BACKLOG"),
    "gc thresholds: two numbers": ("", {"GC_THRESHOLDS": "700,10"}, "CHATSVC_GC_THRESHOLDS"),
    "gc thresholds: negative": ("", {"GC_THRESHOLDS": "700,-1,10"}, "CHATSVC_GC_THRESHOLDS"),
    "gc thresholds: not numbers": ("", {"GC_THRESHOLDS": "a,b,c"}, "CHATSVC_GC_THRESHOLDS"),
}


def test_gc_thresholds_from_the_environment_and_the_file(config):
    assert config().gc_thresholds == (10_000, 20, 50)
    assert config(GC_THRESHOLDS="700, 10, 10").gc_thresholds == (700, 10, 10)
    assert config("gc_thresholds = [0, 10, 10]").gc_thresholds == (0, 10, 10)


@pytest.mark.parametrize(("toml", "env", "name"), BAD.values(), ids=BAD.keys())
def test_bad_value_names_the_setting_in_one_line(config, toml, env, name):
    with pytest.raises(SettingsError) as caught:
        config(toml, **env)
    message = str(caught.value)
    assert f"invalid setting {name}:" in message
    assert "\n" not in message


def test_the_development_issuer_beyond_loopback_needs_an_explicit_development_env(config):
    assert config(HOST="0.0.0.0", ENV="development").dev_issuer
    issuer = "https://example.okta.com/oauth2/default"
    assert not config(HOST="0.0.0.0", OKTA_ISSUER=issuer).dev_issuer


def test_unknown_key_in_the_file_is_named(config, tmp_path):
    with pytest.raises(SettingsError) as caught:
        config('port = 9000\ncolour = "blue"')
    message = str(caught.value)
    assert "'colour'" in message
    assert str(tmp_path / "chatsvc.toml") in message
    assert "\n" not in message


def test_malformed_file_is_named(config, tmp_path):
    with pytest.raises(SettingsError) as caught:
        config("port = = 9000")
    assert str(tmp_path / "chatsvc.toml") in str(caught.value)


# --- the command line -------------------------------------------------------------------


def run_py(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path, *args, **env)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PORT": "abc"}, "CHATSVC_PORT"),
        ({"OKTA_ISSUER": "http://example.com"}, "CHATSVC_OKTA_ISSUER"),
        ({"ENV": "production"}, "CHATSVC_OKTA_ISSUER"),
    ],
)
def test_run_py_refuses_bad_configuration_with_one_line(tmp_path, env, name):
    result = run_py(tmp_path, **env)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert not (tmp_path / "chatsvc.db").exists()  # stopped before touching the database
