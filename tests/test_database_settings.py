"""receiver.database_settings reads DATABASE_URL and SQLITE_SYNCHRONOUS as ``Settings`` does:
same sources and precedence, same values, same one-line errors (without pydantic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.database_settings import DatabaseSettings, load_database_settings
from receiver.errors import ConfigError
from receiver.settings import load_settings

VARIABLES = ("DATABASE_URL", "SQLITE_SYNCHRONOUS")


@pytest.fixture(name="env", autouse=True)
def fixture_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment (in any case) and an empty working directory (no .env)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def both() -> tuple[object, object]:
    """What each reader makes of the current environment: values, or the error's text."""
    outcomes: list[object] = []
    for read in (load_settings, load_database_settings):
        try:
            cfg = read()
        except ConfigError as exc:
            outcomes.append(("error", exc.variable, str(exc)))
        else:
            outcomes.append((cfg.database_url, cfg.sqlite_synchronous))
    return outcomes[0], outcomes[1]


def test_defaults_match() -> None:
    """Nothing set: the documented defaults."""
    full, light = both()
    assert full == light == ("sqlite:///./nova_sink.db", "FULL")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "sqlite:////srv/nova/sink.db"),
        ("DATABASE_URL", "  sqlite:///relative.db  "),
        ("DATABASE_URL", "postgres://u:pw@db/sink"),
        ("DATABASE_URL", "POSTGRESQL://u@db/sink"),
        ("DATABASE_URL", "postgresql+psycopg://u@db/sink?options=-csearch_path%3Dx"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "mysql://u@h/db"),
        ("DATABASE_URL", "sqlite://"),
        ("DATABASE_URL", "   "),
        ("DATABASE_URL", ""),
        ("SQLITE_SYNCHRONOUS", "normal"),
        ("SQLITE_SYNCHRONOUS", "FULL"),
        ("SQLITE_SYNCHRONOUS", "OFF"),
        ("SQLITE_SYNCHRONOUS", " full"),
        ("SQLITE_SYNCHRONOUS", ""),
        ("database_url", "postgresql://lower@case/name"),
        ("Sqlite_Synchronous", "Normal"),
    ],
)
def test_each_value_reads_the_same(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    """From the environment: the same value, or the same ConfigError line."""
    env.setenv(variable, value)
    full, light = both()
    assert light == full


@pytest.mark.parametrize(
    "dot_env",
    [
        "DATABASE_URL=sqlite:////from/dotenv.db\nSQLITE_SYNCHRONOUS=normal\n",
        'export DATABASE_URL="postgres://u@h/db"  # a comment\n',
        "DATABASE_URL=\nSQLITE_SYNCHRONOUS=\n",
        "DATABASE_URL\n",
        "database_url='sqlite:////quoted.db'\n",
        "HOST=db\nDATABASE_URL=postgresql://u@${HOST}/sink\n",
        "SQLITE_SYNCHRONOUS=sometimes\n",
    ],
    ids=["plain", "export-quoted", "empty", "no-value", "lower-case", "interpolated", "bad"],
)
def test_a_dot_env_file_reads_the_same(tmp_path: Path, dot_env: str) -> None:
    """From ``.env`` in the working directory: the same value, or the same error."""
    (tmp_path / ".env").write_text(dot_env, encoding="utf-8")
    full, light = both()
    assert light == full


def test_the_environment_wins_over_dot_env_unless_empty(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A variable set in the environment overrides ``.env``; an empty one does not."""
    (tmp_path / ".env").write_text(
        "DATABASE_URL=sqlite:////file.db\nSQLITE_SYNCHRONOUS=NORMAL\n", encoding="utf-8"
    )
    env.setenv("DATABASE_URL", "sqlite:////env.db")
    env.setenv("SQLITE_SYNCHRONOUS", "")
    full, light = both()
    assert light == full == ("sqlite:////env.db", "NORMAL")


def test_the_first_malformed_setting_is_the_one_reported(env: pytest.MonkeyPatch) -> None:
    """Both malformed: DATABASE_URL is named, as ``Settings`` names it."""
    env.setenv("DATABASE_URL", "mysql://u@h/db")
    env.setenv("SQLITE_SYNCHRONOUS", "OFF")
    full, light = both()
    assert light == full
    assert light[1] == "DATABASE_URL"  # type: ignore[index]


def test_other_settings_are_not_read(env: pytest.MonkeyPatch) -> None:
    """A malformed setting the database does not use does not stop reading it."""
    env.setenv("NOVA_RATE_LIMIT", "fast")
    env.setenv("DATABASE_URL", "sqlite:////ok.db")
    assert load_database_settings() == DatabaseSettings("sqlite:////ok.db", "FULL")


def test_repr_does_not_show_the_database_url(env: pytest.MonkeyPatch) -> None:
    """The URL may carry a password: repr hides it, as ``Settings`` does."""
    env.setenv("DATABASE_URL", "postgresql://nova:REPRCANARYpw@db/sink")
    assert "REPRCANARY" not in repr(load_database_settings())
