"""The architecture as a test: which package may import what (read with ``ast``, nothing run).

ruff's banned-api rule says the same for single files, but its per-file ignores lift every
ban at once for a file; this test checks each library against the modules that own it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("receiver", "storage")

# A library, and the only modules that may import it (fnmatch patterns, root-relative).
OWNERS: dict[str, tuple[str, ...]] = {
    "sqlalchemy": ("storage/*",),
    "sqlmodel": ("storage/models.py",),
    "alembic": ("storage/schema.py", "storage/migrations/*"),
    "sqlite3": ("storage/*",),
    "psycopg": ("storage/*",),
    "httpx": (
        "receiver/nova/client.py",
        "receiver/fake_nova/*",
        "receiver/cli/ops.py",  # send-test-webhook posts one signed request
    ),
    "stamina": ("receiver/nova/client.py",),
    "starlette": (
        "receiver/app.py",
        "receiver/webhook.py",
        "receiver/http_errors.py",
        "receiver/http_headers.py",
        "receiver/read_api.py",
        "receiver/api/*",
        "receiver/ui/*",
        "receiver/fake_nova/*",
    ),
    "uvicorn": (
        "receiver/cli/serve.py",
        "receiver/http_guard.py",  # a uvicorn protocol that bounds request heads
        "receiver/serving.py",
        "receiver/demo.py",
        "receiver/fake_nova/*",
    ),
    "jinja2": ("receiver/ui/*",),
    "typer": ("receiver/cli/*",),
    "click": ("receiver/cli/*",),
    "rich": ("receiver/cli/*",),
    "prometheus_client": ("receiver/metrics.py",),
    "itsdangerous": ("receiver/tokens.py", "receiver/ui/*"),
    "pydantic_settings": ("receiver/settings.py",),
    "dotenv": ("receiver/database_settings.py",),  # .env as pydantic-settings parses it
}

# Pure modules compute on values: no database, network, threads, files, clocks or logs.
PURE = (
    "receiver/signatures.py",
    "receiver/events.py",
    "receiver/values.py",
    "receiver/convergence.py",
    "receiver/nova/schema.py",
    "storage/records.py",
)
IO_MODULES = frozenset(
    {
        *OWNERS,
        "asyncio",
        "logging",
        "os",
        "pathlib",
        "shutil",
        "socket",
        "structlog",
        "subprocess",
        "tempfile",
        "threading",
        "urllib",
    }
)


def imported_modules(source: str) -> Iterator[str]:
    """Top-level names of every absolute import in ``source`` (lazy imports included)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def violations(path: str, source: str) -> list[str]:
    """Every layering rule that the module at ``path`` (root-relative) breaks."""
    found = []
    for name in set(imported_modules(source)):
        owners = OWNERS.get(name)
        if owners is not None and not any(fnmatch(path, pattern) for pattern in owners):
            found.append(f"{path} imports {name}, which only {', '.join(owners)} may import")
        if path.startswith("storage/") and name == "receiver":
            found.append(f"{path} imports receiver: storage never depends on receiver")
        if path in PURE and name in IO_MODULES:
            found.append(f"{path} is pure but imports {name}")
    return sorted(found)


def project_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_project_follows_the_layering_rules() -> None:
    """No module imports a library it does not own; storage and the pure modules stay clean."""
    broken = [
        problem
        for module in project_modules()
        for problem in violations(module.relative_to(ROOT).as_posix(), module.read_text())
    ]
    assert broken == []


def test_every_pure_module_exists() -> None:
    """A renamed pure module must be renamed here too, or it silently leaves the check."""
    present = {m.relative_to(ROOT).as_posix() for m in project_modules()}
    assert [path for path in PURE if path not in present] == []


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("receiver/app.py", "import sqlalchemy as sa", "receiver/app.py imports sqlalchemy"),
        ("receiver/app.py", "def f():\n    from sqlmodel import Field", "imports sqlmodel"),
        ("storage/store/results.py", "from receiver.events import x", "storage never depends"),
        ("receiver/events.py", "import structlog", "receiver/events.py is pure but imports"),
        ("receiver/signatures.py", "import os.path", "is pure but imports os"),
        ("receiver/cli/inspect.py", "import prometheus_client", "imports prometheus_client"),
    ],
)
def test_checker_flags_each_kind_of_violation(path: str, source: str, expected: str) -> None:
    """The checker itself is not vacuous: each rule catches a module that breaks it."""
    assert any(expected in problem for problem in violations(path, source))


def test_checker_accepts_an_owner_and_relative_imports() -> None:
    """Owners may import their library; the standard library is free outside pure modules."""
    assert violations("storage/db.py", "import sqlalchemy\nimport os") == []
    assert violations("receiver/cli/common.py", "import rich.table\nimport typer") == []
