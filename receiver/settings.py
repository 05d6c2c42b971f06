"""Typed settings from the environment or a ``.env`` file (``.env.example`` lists them all).

Secrets are ``SecretStr`` so that no repr, log line or error message can show them. What a
command needs is checked by ``require``: a missing or malformed setting becomes one
``ConfigError`` line that names the variable and says what to do (CLI exit code 2).
Commands that need only the database read ``receiver.database_settings`` instead: the same
two variables and checks, without pydantic's start-up cost.
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from receiver.database_settings import (
    DEFAULT_DATABASE_URL,
    Synchronous,
    check_database_url,
    check_sqlite_synchronous,
)
from receiver.errors import ConfigError
from receiver.values import is_plain_segment

_MAX_SECRETS = 5


class Settings(BaseSettings):
    """Every setting of nova-sink. Build it in a composition root, never at import time."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        hide_input_in_errors=True,
    )

    nova_webhook_secrets: SecretStr | None = None
    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    nova_api_key: SecretStr | None = None
    nova_tenant_id: str | None = None
    nova_rate_limit: float = Field(default=15.0, gt=0, le=1000)
    nova_api_url: str = "https://embed.nova.dweet.com"
    # auto: learn and pin per secret; or one construction for every secret (NOVA.md, Decision 1).
    nova_signature_construction: Literal["auto", "body", "timestamp", "id-timestamp"] = "auto"
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    webhook_max_body_bytes: int = Field(default=1_048_576, ge=1)
    sqlite_synchronous: Synchronous = "FULL"
    # process: deliveries are parsed and committed in a child process (the serving process's
    # event loop keeps its core); thread: in a thread of the serving process.
    ingest_writer: Literal["process", "thread"] = "process"
    sink_secret_key: SecretStr | None = None
    sink_ui_https_only: bool = False  # dashboard session cookie only over HTTPS
    log_format: Literal["console", "json"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _synchronous(cls, value: object) -> object:
        return check_sqlite_synchronous(value) if isinstance(value, str) else value

    @field_validator("log_level", "log_format", "nova_signature_construction", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("nova_api_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        # Paths all start with /v1/; a configured "/v1" suffix would double it.
        return value.removesuffix("/v1")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)

    @field_validator("nova_tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        # Sent as the X-Tenant-Id header: a CR/LF would make every request to Nova fail.
        if value is not None and not is_plain_segment(value):
            raise ValueError("must be a plain id (no '/', '\\' or control characters)")
        return value

    def webhook_secrets(self) -> list[str]:
        """The configured secrets, newest first; raises ConfigError when unusable."""
        raw = self.nova_webhook_secrets.get_secret_value() if self.nova_webhook_secrets else ""
        secrets = [part.strip() for part in raw.split(",") if part.strip()]
        if not secrets:
            raise ConfigError(
                "NOVA_WEBHOOK_SECRETS",
                "not set; copy the endpoint's whsec_… secret from Nova's Embed Portal "
                "(Settings → Webhooks) into NOVA_WEBHOOK_SECRETS",
            )
        if len(secrets) > _MAX_SECRETS:
            raise ConfigError(
                "NOVA_WEBHOOK_SECRETS", f"at most {_MAX_SECRETS} secrets, one per endpoint"
            )
        for index, secret in enumerate(secrets, start=1):
            if not secret.startswith("whsec_") or len(secret) < 12:
                raise ConfigError(
                    "NOVA_WEBHOOK_SECRETS",
                    f"secret #{index} does not look like a Nova webhook secret (whsec_…)",
                )
        return secrets

    def api_key(self) -> str:
        """The Nova API key; raises ConfigError when missing or malformed."""
        key = self.nova_api_key.get_secret_value().strip() if self.nova_api_key else ""
        if not key:
            raise ConfigError("NOVA_API_KEY", "not set; create an API key in Nova's Embed Portal")
        if not key.startswith(("sk_test_", "sk_live_")):
            raise ConfigError("NOVA_API_KEY", "must start with sk_test_ or sk_live_")
        return key

    def read_token_key(self) -> str:
        """The newest ``SINK_SECRET_KEY`` (the one new tokens are signed with)."""
        return self.read_token_keys()[0]

    def read_token_keys(self) -> list[str]:
        """Every ``SINK_SECRET_KEY``, comma-separated, newest first: new tokens are signed
        with the first, all of them are accepted (rotation)."""
        raw = self.sink_secret_key.get_secret_value() if self.sink_secret_key else ""
        keys = [part.strip() for part in raw.split(",") if part.strip()]
        if not keys or any(len(key) < 16 for key in keys):
            raise ConfigError(
                "SINK_SECRET_KEY",
                "not set, or a key shorter than 16 characters; set it to a long random string "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))"), '
                "comma-separated and newest first while rotating",
            )
        return keys

    def resolved_log_format(self) -> Literal["console", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a malformed value becomes a one-line ``ConfigError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0]).upper() if error["loc"] else "settings"
        raise ConfigError(variable, error["msg"].removeprefix("Value error, ")) from None
