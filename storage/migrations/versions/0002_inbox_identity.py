"""inbox identity: body SHA-256 (plus the webhook id only when signed), reuse flag

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Existing rows are kept. Each gets its body's SHA-256 (from the stored body, or from a
``sha256:`` key when the body was purged) and, where no other row holds it already, the key
the new rule gives it, so that a retry of an old delivery adds an attempt to its row.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import op

from storage.records import inbox_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000
_ID_SIGNED_SUFFIX = "/id.timestamp.body"
_HASH_KEY_PREFIX = "sha256:"
_HEX_LEN = 64


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_sha256", sa.String(), nullable=True))
        batch_op.add_column(
            sa.Column("webhook_id_reused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(batch_op.f("ix_delivery_webhook_id"), ["webhook_id"], unique=False)
    _rekey(op.get_bind())


def _digest(key: str, body: bytes | None) -> str | None:
    if body is not None:
        return hashlib.sha256(bytes(body)).hexdigest()
    tail = key[len(_HASH_KEY_PREFIX) :]
    if key.startswith(_HASH_KEY_PREFIX) and len(tail) == _HEX_LEN:
        return tail  # the old hash key of a delivery without an id
    return None


def _new_key(digest: str, row: Any) -> str | None:
    if not str(row.signature_scheme).endswith(_ID_SIGNED_SUFFIX):
        return inbox_key(digest, None)
    if row.webhook_id is None:
        return None  # signed with an id no column could hold: its old key stays
    return inbox_key(digest, row.webhook_id)


def _rekey(conn: sa.Connection) -> None:
    delivery = sa.table(
        "delivery",
        sa.column("id"),
        sa.column("delivery_key"),
        sa.column("webhook_id"),
        sa.column("signature_scheme"),
        sa.column("raw_body"),
        sa.column("body_sha256"),
        sa.column("webhook_id_reused"),
    )
    c = delivery.c
    set_digest = sa.update(delivery).where(c.id == sa.bindparam("row_id"))
    other = delivery.alias("other")
    # Only where the new key is still free: two old rows may map to one new key (the same
    # body under two unsigned ids); the second keeps its old key rather than being merged.
    set_key = (
        sa.update(delivery)
        .where(c.id == sa.bindparam("row_id"))
        .where(~sa.exists().where(other.c.delivery_key == sa.bindparam("new_key")))
        .values(delivery_key=sa.bindparam("new_key"))
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(c.id, c.delivery_key, c.webhook_id, c.signature_scheme, c.raw_body)
            .where(c.id > last)
            .order_by(c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        digests, keys = [], []
        for row in rows:
            digest = _digest(row.delivery_key, row.raw_body)
            if digest is None:
                continue
            digests.append({"row_id": row.id, "body_sha256": digest})
            new_key = _new_key(digest, row)
            if new_key is not None and new_key != row.delivery_key:
                keys.append({"row_id": row.id, "new_key": new_key})
        if digests:
            conn.execute(set_digest.values(body_sha256=sa.bindparam("body_sha256")), digests)
        for params in keys:  # one at a time: each must see the keys taken before it
            conn.execute(set_key, params)
    earlier = sa.exists().where(
        other.c.webhook_id == c.webhook_id,
        other.c.id < c.id,
        other.c.body_sha256 != c.body_sha256,
    )
    conn.execute(
        sa.update(delivery)
        .where(c.webhook_id.is_not(None), c.body_sha256.is_not(None), earlier)
        .values(webhook_id_reused=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_webhook_id"))
        batch_op.drop_column("webhook_id_reused")
        batch_op.drop_column("body_sha256")
