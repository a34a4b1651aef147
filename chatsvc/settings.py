"""Settings: built-in defaults < ``config/chatsvc.toml`` < ``CHATSVC_*`` environment.

One typed, validated object. Every limit the service enforces is a named field
here, documented in ``config/chatsvc.toml``. A bad value stops start-up with one
line naming the setting (:class:`SettingsError`).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "CHATSVC_"
DEFAULT_CONFIG_FILE = Path("config/chatsvc.toml")
DEV_ISSUER = "urn:chatsvc:dev-issuer"


PERMISSION_MODES = ("enforce", "shadow", "off")
_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it."""


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list):
        return tuple(value)
    return value


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # --- process
    env: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Connections the kernel holds for accept(). aiohttp's 128 overflows when
    # hundreds of clients (re)connect at once, and a refused SYN waits a second
    # for its retry (docs/benchmarks.md); the kernel caps it at net.core.somaxconn.
    listen_backlog: int = Field(1024, ge=1, le=65535)
    data_dir: Path = Path("./var")
    migrations_dir: Path | None = None  # the checkout's migrations/ when unset
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["keyvalue", "json"] = "keyvalue"
    access_log: bool = True
    # The cyclic collector's thresholds (gen0 allocations, gen1 and gen2 counts),
    # applied after start-up, when what start-up built is frozen out of its scans.
    # With thousands of sockets open, Python's defaults (700, 10, 10) spend a third
    # of a connect in collections (docs/benchmarks.md); 0 for gen0 turns it off.
    gc_thresholds: tuple[int, int, int] = (10_000, 20, 50)

    # --- database
    database_url: str | None = None
    auto_migrate: bool = True
    db_pool_size: int = Field(10, ge=1, le=200)
    db_timeout: float = Field(5.0, gt=0)
    readiness_timeout: float = Field(2.0, gt=0)
    drain_seconds: float = Field(0.0, ge=0)
    sqlite_checkpoint_interval: float = Field(60.0, gt=0)

    # --- identity (Okta)
    okta_issuer: str | None = None
    okta_audience: str = "api://default"
    okta_jwks_uri: str | None = None
    okta_groups_claim: str = "groups"
    okta_client_id: str | None = None
    okta_client_secret: str | None = None
    okta_token_auth_method: Literal[
        "auto", "none", "client_secret_basic", "client_secret_post", "private_key_jwt"
    ] = "auto"  # noqa: S105 - a method name, not a secret
    okta_client_private_key: Path | None = None
    groups_read: tuple[str, ...] = ("Onyx-Readers",)
    groups_write: tuple[str, ...] = ("Onyx-Writers",)
    groups_admin: tuple[str, ...] = ("Onyx-Admins",)
    # enforce | shadow (act as off, audit what enforce would refuse) | off (everyone
    # acts as write, nobody as admin). enable_chat_permissions is its older spelling.
    permission_mode: Literal["enforce", "shadow", "off"] = "enforce"
    enable_chat_permissions: bool = True  # false: permission_mode off
    enforce_groups: tuple[str, ...] = ()  # shadow mode: their members are enforced (a canary)
    permission_cache_ttl: float = Field(60.0, ge=0)
    permission_cache_size: int = Field(50_000, ge=1)
    jwt_leeway: int = Field(60, ge=0, le=60)
    jwks_min_refresh_interval: float = Field(30.0, ge=0)
    jwks_fetch_timeout: float = Field(5.0, gt=0)

    # --- browser sign-in
    session_cookie_key: str | None = None
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks, e.g. 10.0.0.0/8
    public_url: str | None = None  # e.g. https://chat.example.com: redirect URI, cookie, Origin
    okta_scopes: str = "openid email profile offline_access"
    okta_prompt_consent: bool = True
    okta_resource_indicator: Literal["auto", "always", "never"] = "auto"
    okta_groups_source: Literal["access_token", "id_token", "userinfo"] = "access_token"
    okta_post_logout_redirect_uri: str | None = None
    browser_refresh_margin: float = Field(60.0, ge=0)
    browser_refresh_fraction: float = Field(0.2, ge=0, lt=1)
    browser_session_max_age: float = Field(7 * 24 * 3600.0, gt=0)
    browser_login_timeout: float = Field(600.0, gt=0)
    dev_sign_in_ttl: float = Field(8 * 3600.0, gt=0)

    # --- request limits
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    message_rate: float = Field(20.0, gt=0)
    message_burst: int = Field(40, ge=1)
    rate_limit_users: int = Field(100_000, ge=1)

    # --- realtime
    broker_url: str | None = None
    ws_max_frame_bytes: int = Field(64 * 1024, ge=1024)
    ws_send_queue_frames: int = Field(4096, ge=1)
    ws_send_queue_bytes: int = Field(1024 * 1024, ge=1024)
    ws_heartbeat: float = Field(30.0, gt=0)
    ws_compress: bool = False
    ws_max_per_session: int = Field(10_000, ge=1)
    ws_max_per_user: int = Field(50, ge=1)
    typing_coalesce_seconds: float = Field(2.0, ge=0)
    typing_timeout_seconds: float = Field(6.0, gt=0)
    ws_reorder_wait: float = Field(0.5, ge=0)
    presence_ttl: float = Field(30.0, gt=1)
    broker_reconnect_max: float = Field(10.0, gt=0)
    broker_outbox_size: int = Field(10_000, ge=1)
    broker_timeout: float = Field(2.0, gt=0)
    ws_close_timeout: float = Field(2.0, gt=0)
    ws_backlog_page: int = Field(500, ge=1, le=10_000)
    broker_health_check_interval: float = Field(5.0, gt=0)
    broker_down_resync_interval: float = Field(1.0, gt=0)
    ws_replay_ring: int = Field(256, ge=0, le=100_000)
    presence_interval: float = Field(0.25, ge=0)

    # --- continuous access (the IdP ends or changes a user's access)
    logout_issuer: str | None = None  # Universal Logout JWTs: default the Okta issuer's org URL
    logout_jwks_uri: str | None = None  # default: from the logout issuer's discovery
    okta_event_hook_secret: str | None = None  # unset: the event hook receiver answers 404
    okta_event_hook_header: str = "Authorization"
    # How long a revocation is kept: the longest lifetime of a token it covers.
    revocation_ttl: float = Field(24 * 3600.0, gt=0)
    revocation_reload_interval: float = Field(10.0, gt=0)
    # A socket whose token a group change revoked renews it within this (the page does).
    revocation_renew_grace: float = Field(30.0, gt=0)

    # --- audit
    audit_queue_size: int = Field(10_000, ge=1)
    audit_batch_size: int = Field(200, ge=1)
    audit_flush_interval: float = Field(0.5, gt=0)
    audit_retry_max: float = Field(30.0, gt=0)

    _csv_fields = field_validator(
        "gc_thresholds",
        "groups_read",
        "groups_write",
        "groups_admin",
        "enforce_groups",
        "allowed_origins",
        "trusted_proxies",
        mode="before",
    )(_csv)

    @field_validator(
        "okta_issuer",
        "okta_jwks_uri",
        "broker_url",
        "database_url",
        "okta_client_id",
        "okta_client_secret",
        "session_cookie_key",
        "okta_client_private_key",
        "okta_post_logout_redirect_uri",
        "logout_issuer",
        "logout_jwks_uri",
        "okta_event_hook_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="before")
    @classmethod
    def _permission_flag_is_a_mode(cls, data: Any) -> Any:
        # The older flag stays an alias: false is ``off``, true is ``enforce``. Given
        # both, they must agree; which one wins would otherwise be a guess.
        if not isinstance(data, dict) or "enable_chat_permissions" not in data:
            return data
        try:
            enabled = _BOOL.validate_python(data["enable_chat_permissions"])
        except ValidationError:
            return data  # the field itself names the bad value
        implied = "enforce" if enabled else "off"
        given = data.get("permission_mode")
        if given is None:
            return {**data, "permission_mode": implied}
        if given in PERMISSION_MODES and given != implied:
            raise ValueError(
                f"permission_mode: {given} disagrees with CHATSVC_ENABLE_CHAT_PERMISSIONS="
                f"{str(enabled).lower()} (the older spelling of {implied}); "
                "set only CHATSVC_PERMISSION_MODE"
            )
        return data

    @field_validator("okta_issuer", "logout_issuer")
    @classmethod
    def _issuer_https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Kept exactly as configured, a trailing "/" included (Auth0-style issuers):
        # ``iss`` is compared with it exactly.
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and is_loopback_host(parts.hostname):
            return value
        raise ValueError("must be an https:// URL (http:// only for a loopback host)")

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "memory"):
            raise ValueError("must be redis://..., rediss://... or memory://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _private_key_jwt_needs_a_key(self) -> Settings:
        if (
            self.okta_token_auth_method == "private_key_jwt"  # noqa: S105
            and self.okta_client_private_key is None
        ):
            raise ValueError(
                "okta_client_private_key: is required with okta_token_auth_method=private_key_jwt"
            )
        if (
            self.okta_token_auth_method in ("client_secret_basic", "client_secret_post")
            and not self.okta_client_secret
        ):
            raise ValueError(
                f"okta_client_secret: is required with okta_token_auth_method="
                f"{self.okta_token_auth_method}"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_issuer(self) -> Settings:
        if self.env == "production" and not self.okta_issuer:
            raise ValueError("okta_issuer: is required when CHATSVC_ENV=production")
        return self

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://chat.example.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _production_sign_in_needs_public_url(self) -> Settings:
        # Behind a proxy the request's Host and scheme are not the browser's: the
        # redirect URI and the cookie's Secure flag must come from configuration.
        if self.env == "production" and self.okta_client_id and not self.public_url:
            raise ValueError(
                "public_url: is required for browser sign-in when CHATSVC_ENV=production"
            )
        return self

    @model_validator(mode="after")
    def _dev_issuer_stays_local(self) -> Settings:
        # The development issuer lets anyone sign in at any level. Listening beyond
        # loopback with it is a choice someone has to make out loud.
        if (
            self.dev_issuer
            and not is_loopback_host(self.host)
            and "env" not in self.model_fields_set
        ):
            raise ValueError(
                f"env: the development issuer would accept sign-ins from the network on "
                f"{self.host}; configure CHATSVC_OKTA_ISSUER, or set CHATSVC_ENV=development "
                "to allow it"
            )
        return self

    # --- derived values
    @property
    def dev_issuer(self) -> bool:
        return self.okta_issuer is None

    @property
    def issuer(self) -> str:
        # The development issuer's name does not depend on the port, so that several
        # processes sharing one data directory (and so one key) accept each other's tokens.
        return self.okta_issuer or DEV_ISSUER

    @property
    def effective_logout_issuer(self) -> str:
        """Who signs Universal Logout requests: the Okta org (the scheme and host of
        the Okta issuer) unless set; the development issuer itself in development."""
        if self.logout_issuer is not None:
            return self.logout_issuer
        if self.okta_issuer is None:
            return DEV_ISSUER
        parts = urlsplit(self.okta_issuer)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def discovery_url(self) -> str:
        """``{issuer without its trailing /}/.well-known/openid-configuration``."""
        return f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"

    @property
    def effective_database_url(self) -> str:
        return (
            self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'chatsvc.db').as_posix()}"
        )

    @field_validator("gc_thresholds")
    @classmethod
    def _gc_thresholds(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(part < 0 for part in value):
            raise ValueError("must be three numbers of 0 or more, e.g. 10000,20,50")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(item.strip(), strict=False) for item in self.trusted_proxies
        )

    @property
    def broker_configured(self) -> bool:
        """Whether events cross processes (``redis://``); ``memory://`` or none is one process."""
        return self.broker_url is not None and not self.broker_url.startswith("memory://")

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def _env_overrides(environ: dict[str, str]) -> dict[str, str]:
    fields = Settings.model_fields
    found: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in fields:
                found[name] = value
    return found


def _setting_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(
    environ: dict[str, str] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from file, environment and explicit overrides (tests)."""
    environ = dict(os.environ if environ is None else environ)
    named = environ.get("CHATSVC_CONFIG")
    path = config_file or Path(named or DEFAULT_CONFIG_FILE)
    if named and config_file is None and not path.exists():
        # A file someone named is meant to be read: running on defaults instead is a surprise.
        raise SettingsError(f"invalid setting CHATSVC_CONFIG: {path} does not exist")
    values: dict[str, Any] = {}
    if path.is_file():
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: invalid TOML: {exc}") from None
        unknown = sorted(set(data) - set(Settings.model_fields))
        if unknown:
            raise SettingsError(f"{path}: unknown setting {unknown[0]!r}")
        values.update(data)
    values.update(_env_overrides(environ))
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"] if part]
        field = loc[0] if loc else ""
        message = error["msg"].removeprefix("Value error, ")
        if not field and ":" in message:
            field, message = (part.strip() for part in message.split(":", 1))
        raise SettingsError(f"invalid setting {_setting_name(field)}: {message}") from None
