"""The inbox: one row per delivery, with its raw body, outcome and attempts."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.records import (
    ERASED,
    STORED_UNPARSED,
    InboundDelivery,
)
from storage.store._base import StoreBase
from storage.store.dialect import DELIVERY_COLUMNS, delivery_upsert, hot_sql
from storage.store.tables import DELIVERIES, d


class InboxQueries(StoreBase):
    def record_delivery(self, delivery: InboundDelivery, *, outcome: str, now: datetime) -> bool:
        """Keep one row per delivery key and count attempts; True when the row is new."""
        params = _delivery_params(delivery, outcome, now)
        prior = self.group_prior([], [delivery.webhook_id])
        params["webhook_id_reused"] = _reused([delivery], prior.bodies)[0]
        upsert = delivery_upsert(self._dialect, with_job=delivery.scoring_job_id is not None)
        attempts: int = self.conn.execute(upsert, params).scalar_one()
        return attempts == 1

    def group_prior(
        self,
        application_ids: Iterable[str | None],
        webhook_ids: Iterable[str | None],
        scoring_job_ids: Iterable[str] = (),
    ) -> GroupPrior:
        """What a commit group must know before it writes, in one statement: which of
        ``application_ids`` were erased, the bodies stored under ``webhook_ids``, and on
        SQLite which of ``scoring_job_ids`` are stored (``GroupPrior.stored``)."""
        sql = hot_sql(self._dialect)
        jobs = not sql.returns_inserted  # PostgreSQL's insert says which rows are new
        keys = (
            sorted({a for a in application_ids if a is not None}),
            sorted({w for w in webhook_ids if w is not None}),
            sorted(set(scoring_job_ids)) if jobs else [],
        )
        stored: set[str] = set()
        prior = GroupPrior(erased=set(), bodies={}, stored=stored if jobs else None)
        wanted = (bool(keys[0]), bool(keys[1]), bool(keys[2]))
        if not any(wanted):
            return prior
        params = tuple(self._id_list(ids) for ids in keys if ids)
        cursor = self._driver_sql(sql.prior(wanted), params, replan=True)
        for kind, key, digest in self._rows(cursor):
            if kind == 0:
                prior.erased.add(str(key))
            elif kind == 1:
                prior.bodies.setdefault(str(key), set()).add(digest)
            else:
                stored.add(str(key))
        return prior

    def record_deliveries(
        self,
        deliveries: Sequence[tuple[InboundDelivery, str]],
        *,
        now: datetime,
        prior: GroupPrior | None = None,
    ) -> None:
        """``record_delivery`` for a whole commit group, in one statement.

        ``prior``: what ``group_prior`` read for these deliveries' webhook ids earlier in
        the transaction (read here when not given).
        Repeats of one delivery inside the group (its job and key: the inbox's unique
        indexes) are folded into one row first: a multi-row upsert may not touch the same
        row twice (PostgreSQL refuses it).
        """
        sql = hot_sql(self._dialect)
        stamp = sql.time(now)
        group = [delivery for delivery, _ in deliveries]
        if prior is None:
            prior = self.group_prior([], [delivery.webhook_id for delivery in group])
        reused = _reused(group, prior.bodies)
        folded: dict[tuple[str | None, str], list[Any]] = {}
        for (delivery, outcome), flag in zip(deliveries, reused, strict=True):
            identity = (delivery.scoring_job_id, delivery.delivery_key)
            row = folded.get(identity)
            if row is None:
                folded[identity] = [
                    delivery.delivery_key,
                    delivery.webhook_id,
                    delivery.digest(),
                    flag,
                    delivery.event,
                    delivery.scoring_job_id,
                    delivery.batch_id,
                    outcome,
                    delivery.signature_scheme,
                    delivery.secret_fingerprint,
                    stamp,
                    stamp,
                    1,
                    _kept_body(delivery, outcome),
                ]
            else:
                row[_ATTEMPTS] += 1
        rows = [tuple(row) for row in folded.values()]
        # In index order: concurrent writers (other instances) take row locks alike.
        with_job = sorted((row for row in rows if row[_JOB] is not None), key=_JOB_AND_KEY)
        if with_job:
            self._driver_sql(sql.upsert_deliveries, with_job, many=True)
        without_job = sorted((row for row in rows if row[_JOB] is None), key=_KEY)
        if without_job:  # tests, batch summaries, unparsed bodies: rarely any
            self._driver_sql(sql.upsert_deliveries_without_job, without_job, many=True)

    def update_delivery(
        self,
        delivery_id: int,
        *,
        replay_outcome: str,
        replayed_at: datetime,
        event: str | None,
        scoring_job_id: str | None,
        batch_id: str | None,
    ) -> None:
        """Record what a replay made of a stored delivery; its original ``outcome`` (what
        Nova was answered) stays. Ids found by the newer parser fill the empty ones.

        A job id filled in moves the row to the index of deliveries by job and key
        (``storage.models.Delivery``). Should a retry of the same body have been stored
        there already (it arrived after the upgrade that parses it), the row keeps no job
        id rather than make its key twice there.
        """
        job: Any = sa.func.coalesce(d.scoring_job_id, scoring_job_id)
        if scoring_job_id is not None:
            other = DELIVERIES.alias("other")
            taken = sa.exists().where(
                other.c.scoring_job_id == scoring_job_id,
                other.c.delivery_key == d.delivery_key,
                other.c.id != d.id,
            )
            job = sa.case((taken, d.scoring_job_id), else_=job)
        values = {
            "replay_outcome": replay_outcome,
            "replayed_at": replayed_at,
            "event": sa.func.coalesce(d.event, event),
            "scoring_job_id": job,
            "batch_id": sa.func.coalesce(d.batch_id, batch_id),
        }
        self.conn.execute(sa.update(DELIVERIES).where(d.id == delivery_id).values(values))

    def unparsed_delivery_ids(self) -> list[int]:
        """Deliveries stored unparsed that no replay has parsed yet, with their body."""
        query = sa.select(d.id).where(
            d.outcome == STORED_UNPARSED,
            d.raw_body.is_not(None),
            sa.or_(d.replay_outcome.is_(None), d.replay_outcome == STORED_UNPARSED),
        )
        return [int(i) for i in self.conn.execute(query.order_by(d.id)).scalars()]

    def delivery_body(self, delivery_id: int) -> bytes | None:
        """The raw body of delivery ``delivery_id`` (None when purged or not stored)."""
        query = sa.select(d.raw_body).where(d.id == delivery_id)
        body = self.conn.execute(query).scalar()
        return None if body is None else bytes(body)

    def get_delivery(self, key: str) -> RowMapping | None:
        """By numeric id, webhook id, or delivery key: the first such row.

        No index starts with the key (the one by job and key keeps inserts in order), so
        the key of a delivery with a job is found by reading that index whole, without the
        table: ~0.1 s for a million deliveries on SQLite.
        """
        found = [
            sa.select(d.id).where(d.webhook_id == key),
            sa.select(d.id).where(d.scoring_job_id.is_(None), d.delivery_key == key),
            sa.select(d.id).where(d.scoring_job_id.is_not(None), d.delivery_key == key),
        ]
        if key.isdigit() and len(key) <= _MAX_ID_DIGITS:
            found.append(sa.select(d.id).where(d.id == int(key)))
        first = sa.select(sa.func.min(sa.union_all(*found).subquery().c.id)).scalar_subquery()
        query = sa.select(DELIVERIES).where(d.id == first)
        return self.conn.execute(query).mappings().first()

    def list_deliveries(
        self,
        *,
        event: str | None = None,
        outcome: str | None = None,
        scoring_job_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_id: int | None = None,
        limit: int | None = 50,
    ) -> list[RowMapping]:
        """Newest first, without the raw bodies; ``after_id`` for following new arrivals."""
        columns = [c for c in DELIVERIES.c if c.name != "raw_body"]
        query = sa.select(*columns).order_by(d.id.desc()).limit(limit)
        if event is not None:
            query = query.where(d.event == event)
        if outcome is not None:
            query = query.where(d.outcome == outcome)
        if scoring_job_id is not None:
            query = query.where(d.scoring_job_id == scoring_job_id)
        if since is not None:
            query = query.where(d.received_at >= since)
        if until is not None:
            query = query.where(d.received_at < until)
        if after_id is not None:
            query = query.where(d.id > after_id)
        return list(self.conn.execute(query).mappings())

    def last_delivery_by_fingerprint(self) -> dict[str, datetime]:
        query = sa.select(d.secret_fingerprint, sa.func.max(d.last_received_at)).group_by(
            d.secret_fingerprint
        )
        return {str(fp): when for fp, when in self.conn.execute(query)}


_ATTEMPTS = DELIVERY_COLUMNS.index("attempts")
_MAX_ID_DIGITS = 18  # a 64-bit id; more digits name no row (and overflow the driver)
_JOB = DELIVERY_COLUMNS.index("scoring_job_id")
_KEY_COLUMN = DELIVERY_COLUMNS.index("delivery_key")
_KEY = operator.itemgetter(_KEY_COLUMN)
_JOB_AND_KEY = operator.itemgetter(_JOB, _KEY_COLUMN)


@dataclass(frozen=True, slots=True)
class GroupPrior:
    """What ``group_prior`` read: application ids erased, the body hashes stored under each
    webhook id, and the scoring jobs stored (None: not read, as on PostgreSQL)."""

    erased: set[str]
    bodies: dict[str, set[str | None]]
    stored: set[str] | None = None


def _reused(
    deliveries: Sequence[InboundDelivery], stored: dict[str, set[str | None]]
) -> list[bool]:
    """For each delivery, in order: whether its webhook id came before with another body
    (``stored`` under it, or earlier in ``deliveries``)."""
    seen = {webhook_id: set(bodies) for webhook_id, bodies in stored.items()}
    flags: list[bool] = []
    for delivery in deliveries:
        if delivery.webhook_id is None:
            flags.append(False)
            continue
        digest = delivery.digest()
        bodies = seen.setdefault(delivery.webhook_id, set())
        flags.append(bool(bodies - {digest}))
        bodies.add(digest)
    return flags


def _kept_body(delivery: InboundDelivery, outcome: str) -> bytes | None:
    """The raw body the inbox keeps: none for an erased candidate's (personal data)."""
    return None if outcome == ERASED else delivery.body


def _delivery_params(delivery: InboundDelivery, outcome: str, now: datetime) -> dict[str, Any]:
    return {
        "delivery_key": delivery.delivery_key,
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "scoring_job_id": delivery.scoring_job_id,
        "batch_id": delivery.batch_id,
        "outcome": outcome,
        "signature_scheme": delivery.signature_scheme,
        "secret_fingerprint": delivery.secret_fingerprint,
        "received_at": now,
        "last_received_at": now,
        "attempts": 1,
        "raw_body": _kept_body(delivery, outcome),
        "body_sha256": delivery.digest(),
    }
