"""Alembic environment: runs on the connection ``storage.schema`` hands over."""

from __future__ import annotations

from alembic import context

from storage.models import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
