"""The database settings alone (``DATABASE_URL``, ``SQLITE_SYNCHRONOUS``), read as
``receiver.settings`` reads them but without pydantic-settings.

Commands that need nothing but the database (``results list|show|export``, run from cron and
scripts) read these instead of ``Settings``: pydantic-settings and pydantic are a large part
of their start-up. Same sources in the same order: the environment (names in any case,
empty values ignored), then ``.env`` in the working directory (parsed by python-dotenv, as
pydantic-settings does), then the defaults. Same checks (``Settings`` calls the two below)
and the same one-line ``ConfigError``. ``tests/test_database_settings.py`` holds the two
readers equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypeVar, get_args

from receiver.errors import ConfigError

Synchronous = Literal["FULL", "NORMAL"]
SYNCHRONOUS_LEVELS: tuple[Synchronous, ...] = get_args(Synchronous)
DEFAULT_DATABASE_URL = "sqlite:///./nova_sink.db"
ENV_FILE = ".env"
T = TypeVar("T")


class DatabaseConfig(Protocol):
    """What opening the database needs: ``Settings`` and ``DatabaseSettings`` both have it."""

    @property
    def database_url(self) -> str: ...

    @property
    def sqlite_synchronous(self) -> Synchronous: ...


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """``DATABASE_URL`` and ``SQLITE_SYNCHRONOUS``, checked."""

    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)  # may hold a password
    sqlite_synchronous: Synchronous = "FULL"


def check_database_url(value: str) -> str:
    """SQLite file or PostgreSQL (psycopg 3); ``postgres://`` as platforms hand it out.

    Raises ``ValueError`` with the message ``ConfigError`` shows.
    """
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if sep and scheme in {"postgres", "postgresql", "postgresql+psycopg"} and rest:
        return f"postgresql+psycopg://{rest}"
    if sep and scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return value
    raise ValueError("must be sqlite:///path/to/nova_sink.db or postgresql://user@host/database")


def check_sqlite_synchronous(value: str) -> Synchronous:
    """``FULL`` or ``NORMAL``, in any case; raises ``ValueError`` otherwise."""
    level = value.upper()
    if level not in SYNCHRONOUS_LEVELS:
        # pydantic's wording for a Literal, which ``Settings`` used to report.
        raise ValueError("Input should be 'FULL' or 'NORMAL'")
    return level


def _variables(pairs: dict[str, str | None]) -> dict[str, str | None]:
    # pydantic-settings with env_ignore_empty: names lower-cased, empty values dropped.
    return {name.lower(): value for name, value in pairs.items() if value != ""}


def read_variables(*names: str) -> dict[str, str]:
    """The values of ``names`` (lower case) from the environment, else from ``.env``."""
    from_env = _variables(dict(os.environ))
    env_file = Path(ENV_FILE)
    from_file: dict[str, str | None] = {}
    if env_file.is_file() or env_file.is_fifo():
        from dotenv import dotenv_values  # only when there is a file to read

        from_file = _variables(dotenv_values(env_file, encoding="utf-8"))
    found: dict[str, str] = {}
    for name in names:
        value = from_env.get(name)
        if value is None:
            value = from_file.get(name)
        if value is not None:
            found[name] = value
    return found


def load_database_settings() -> DatabaseSettings:
    """Read and check the two settings; a malformed value is a one-line ``ConfigError``."""
    found = read_variables("database_url", "sqlite_synchronous")
    url, level = found.get("database_url"), found.get("sqlite_synchronous")
    return DatabaseSettings(  # checked in field order, as pydantic does: one error, the first
        database_url=(
            DEFAULT_DATABASE_URL
            if url is None
            else _checked("DATABASE_URL", check_database_url, url)
        ),
        sqlite_synchronous=(
            "FULL"
            if level is None
            else _checked("SQLITE_SYNCHRONOUS", check_sqlite_synchronous, level)
        ),
    )


def _checked(variable: str, check: Callable[[str], T], value: str) -> T:
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(variable, str(exc)) from None
