"""Reconcile runs and the lease that lets one run at a time work on a database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from storage.store._base import StoreBase
from storage.store.tables import LEASES, RUNS


class RunQueries(StoreBase):
    def start_run(self, *, now: datetime, dry_run: bool) -> int:
        stmt = sa.insert(RUNS).values(started_at=now, dry_run=dry_run).returning(RUNS.c.id)
        run_id: int = self.conn.execute(stmt).scalar_one()
        return run_id

    def finish_run(self, run_id: int, *, now: datetime, summary: dict[str, Any]) -> None:
        columns = {c.name for c in RUNS.c} - {"id", "started_at", "dry_run"}
        values = {k: v for k, v in summary.items() if k in columns}
        self.conn.execute(
            sa.update(RUNS).where(RUNS.c.id == run_id).values(finished_at=now, **values)
        )

    def reconcile_totals(self) -> tuple[int, int]:
        """(number of reconcile runs, results they added or updated)."""
        fixed = sa.func.coalesce(sa.func.sum(RUNS.c.results_added + RUNS.c.results_updated), 0)
        runs, fixes = self.conn.execute(sa.select(sa.func.count(), fixed)).one()
        return int(runs), int(fixes)

    def list_runs(self, *, limit: int = 20) -> list[RowMapping]:
        query = sa.select(RUNS).order_by(RUNS.c.id.desc()).limit(limit)
        return list(self.conn.execute(query).mappings())

    def acquire_lease(self, name: str, *, holder: str, now: datetime, ttl: timedelta) -> str:
        """Take or renew lease ``name``; returns the holder after the attempt.

        One statement: the update only happens when the lease expired or is ours already,
        so two processes can never both come away holding it.
        """
        stmt = self._insert(LEASES).values(name=name, holder=holder, expires_at=now + ttl)
        ex = stmt.excluded
        lc = LEASES.c
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": ex.holder, "expires_at": ex.expires_at},
            where=sa.or_(lc.expires_at < now, lc.holder == holder),
        )
        self.conn.execute(stmt)
        current: str = self.conn.execute(sa.select(lc.holder).where(lc.name == name)).scalar_one()
        return current

    def release_lease(self, name: str, *, holder: str) -> None:
        lc = LEASES.c
        self.conn.execute(sa.delete(LEASES).where(lc.name == name, lc.holder == holder))
