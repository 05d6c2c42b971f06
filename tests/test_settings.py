"""receiver.settings: defaults, parsing, one-line ConfigErrors naming the variable, no leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.errors import ConfigError
from receiver.settings import load_settings

VARIABLES = (
    "NOVA_WEBHOOK_SECRETS",
    "DATABASE_URL",
    "NOVA_API_KEY",
    "NOVA_TENANT_ID",
    "NOVA_RATE_LIMIT",
    "NOVA_API_URL",
    "NOVA_SIGNATURE_CONSTRUCTION",
    "WEBHOOK_TOLERANCE_SECONDS",
    "WEBHOOK_MAX_BODY_BYTES",
    "SQLITE_SYNCHRONOUS",
    "SINK_SECRET_KEY",
    "LOG_FORMAT",
    "LOG_LEVEL",
)
A = "whsec_aaaaaaaaaaaaaaaa"
B = "whsec_bbbbbbbbbbbbbbbb"


@pytest.fixture(name="env", autouse=True)
def fixture_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment and an empty working directory (no .env is read)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def config_error(**env: str) -> ConfigError:
    """The ConfigError that reading settings (and the secrets) with ``env`` raises."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        with pytest.raises(ConfigError) as caught:
            load_settings().webhook_secrets()
    return caught.value


def test_defaults() -> None:
    """Every setting has the documented default."""
    settings = load_settings()
    assert settings.nova_webhook_secrets is None
    assert settings.database_url == "sqlite:///./nova_sink.db"
    assert settings.nova_api_key is None
    assert settings.nova_tenant_id is None
    assert settings.nova_rate_limit == 15
    assert settings.nova_api_url == "https://embed.nova.dweet.com"
    assert settings.webhook_tolerance_seconds == 300
    assert settings.nova_signature_construction == "auto"
    assert settings.webhook_max_body_bytes == 1_048_576
    assert settings.sqlite_synchronous == "FULL"
    assert settings.sink_secret_key is None
    assert settings.log_level == "info"


def test_reads_the_environment(env: pytest.MonkeyPatch) -> None:
    """Variables override defaults, case-insensitively normalised where documented."""
    env.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    env.setenv("NOVA_RATE_LIMIT", "7.5")
    env.setenv("SQLITE_SYNCHRONOUS", "normal")
    env.setenv("LOG_LEVEL", "DEBUG")
    env.setenv("LOG_FORMAT", "JSON")
    env.setenv("NOVA_API_URL", "http://127.0.0.1:9000/v1/")
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.nova_rate_limit == 7.5
    assert settings.sqlite_synchronous == "NORMAL"
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    assert settings.nova_api_url == "http://127.0.0.1:9000"


def test_reads_a_dot_env_file(tmp_path: Path) -> None:
    """A .env in the working directory is read."""
    (tmp_path / ".env").write_text(f"NOVA_WEBHOOK_SECRETS={A}\nNOVA_RATE_LIMIT=3\n")
    settings = load_settings()
    assert settings.webhook_secrets() == [A]
    assert settings.nova_rate_limit == 3


def test_parses_comma_separated_secrets_in_order(env: pytest.MonkeyPatch) -> None:
    """Secrets are split on commas, trimmed, empties dropped, order kept (newest first)."""
    env.setenv("NOVA_WEBHOOK_SECRETS", f" {B} ,, {A},")
    assert load_settings().webhook_secrets() == [B, A]


def test_accepts_five_secrets(env: pytest.MonkeyPatch) -> None:
    """Up to five endpoints, one secret each."""
    secrets = [f"whsec_{i}{'x' * 12}" for i in range(5)]
    env.setenv("NOVA_WEBHOOK_SECRETS", ",".join(secrets))
    assert load_settings().webhook_secrets() == secrets


@pytest.mark.parametrize(
    "value",
    [
        "",
        " , ",
        ",".join(f"whsec_{i}{'x' * 12}" for i in range(6)),
        f"{A},sk_test_123456789",
        "whsec_",
    ],
    ids=["empty", "only-commas", "six-secrets", "not-whsec", "too-short"],
)
def test_unusable_secrets_are_a_config_error_naming_the_variable(value: str) -> None:
    """Missing, too many or malformed secrets: ConfigError for NOVA_WEBHOOK_SECRETS."""
    error = config_error(NOVA_WEBHOOK_SECRETS=value)
    assert error.variable == "NOVA_WEBHOOK_SECRETS"
    assert str(error).startswith("NOVA_WEBHOOK_SECRETS: ")
    assert "\n" not in str(error)


def test_missing_secrets_is_a_config_error() -> None:
    """With no NOVA_WEBHOOK_SECRETS at all the error says what to do."""
    error = config_error()
    assert error.variable == "NOVA_WEBHOOK_SECRETS"
    assert "whsec_" in str(error)


def test_malformed_secret_error_does_not_echo_the_value() -> None:
    """The error names the position of a bad secret, never its text."""
    error = config_error(NOVA_WEBHOOK_SECRETS=f"{A},not_a_secret_value_XYZ")
    assert "#2" in str(error)
    assert "not_a_secret_value_XYZ" not in str(error)
    assert A not in str(error)


@pytest.mark.parametrize("value", ["fast", "15/s", "0", "-1", "nan", "1e9"])
def test_malformed_rate_limit_is_a_config_error_naming_the_variable(
    env: pytest.MonkeyPatch, value: str
) -> None:
    """NOVA_RATE_LIMIT must be a positive number of requests per second."""
    env.setenv("NOVA_RATE_LIMIT", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "NOVA_RATE_LIMIT"
    assert str(caught.value).startswith("NOVA_RATE_LIMIT: ")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_TOLERANCE_SECONDS", "five minutes"),
        ("WEBHOOK_MAX_BODY_BYTES", "0"),
        ("SQLITE_SYNCHRONOUS", "OFF"),
        ("LOG_LEVEL", "loud"),
        ("NOVA_API_URL", "embed.nova.dweet.com"),
        ("NOVA_SIGNATURE_CONSTRUCTION", "timestamp.body"),
    ],
)
def test_other_malformed_values_name_their_variable(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Each malformed setting is one ConfigError line naming that variable."""
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == variable
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", ["", "pk_live_abc", "whsec_abcdefghijkl"])
def test_api_key_must_be_an_sk_key(env: pytest.MonkeyPatch, value: str) -> None:
    """NOVA_API_KEY is required for API calls and must be sk_test_/sk_live_."""
    env.setenv("NOVA_API_KEY", value)
    with pytest.raises(ConfigError) as caught:
        load_settings().api_key()
    assert caught.value.variable == "NOVA_API_KEY"
    if value:
        assert value not in str(caught.value)


def test_api_key_is_returned_trimmed(env: pytest.MonkeyPatch) -> None:
    """A valid key is available to the client that needs it."""
    env.setenv("NOVA_API_KEY", " sk_test_abc123 ")
    assert load_settings().api_key() == "sk_test_abc123"


def test_read_token_key_needs_sixteen_characters(env: pytest.MonkeyPatch) -> None:
    """SINK_SECRET_KEY shorter than 16 characters is a ConfigError naming it."""
    env.setenv("SINK_SECRET_KEY", "short")
    with pytest.raises(ConfigError) as caught:
        load_settings().read_token_key()
    assert caught.value.variable == "SINK_SECRET_KEY"
    env.setenv("SINK_SECRET_KEY", "s" * 16)
    assert load_settings().read_token_key() == "s" * 16


def test_repr_shows_no_secret_and_no_database_password(env: pytest.MonkeyPatch) -> None:
    """repr/str of Settings hide SecretStr values and the DATABASE_URL (password inside)."""
    env.setenv("NOVA_WEBHOOK_SECRETS", "whsec_REPRCANARY_1234567")
    env.setenv("NOVA_API_KEY", "sk_live_REPRCANARY_89")
    env.setenv("SINK_SECRET_KEY", "REPRCANARY_token_key_0123")
    env.setenv("DATABASE_URL", "postgresql+psycopg://nova:REPRCANARYpw@db:5432/sink")
    settings = load_settings()
    for text in (repr(settings), str(settings), f"{settings!r}", repr(settings.nova_api_key)):
        assert "REPRCANARY" not in text
    assert settings.webhook_secrets() == ["whsec_REPRCANARY_1234567"]


def test_validation_error_never_echoes_the_input(env: pytest.MonkeyPatch) -> None:
    """A malformed value is not repeated in the error (it could be a misplaced secret)."""
    env.setenv("WEBHOOK_TOLERANCE_SECONDS", "whsec_LEAKCANARY_value")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "LEAKCANARY" not in str(caught.value)
    assert "LEAKCANARY" not in repr(caught.value)


@pytest.mark.parametrize("value", ["auto", "body", "TIMESTAMP", "id-timestamp"])
def test_signature_construction_accepts_the_documented_values(
    env: pytest.MonkeyPatch, value: str
) -> None:
    """NOVA_SIGNATURE_CONSTRUCTION is auto, body, timestamp or id-timestamp (any case)."""
    env.setenv("NOVA_SIGNATURE_CONSTRUCTION", value)
    assert load_settings().nova_signature_construction == value.lower()
