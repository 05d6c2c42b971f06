"""Signature pins: the one signed-message construction accepted per webhook secret.

A pin is claimed with one ``INSERT … ON CONFLICT DO NOTHING`` and read back, so concurrent
first deliveries (several workers, several instances) agree on a single winner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from storage.store._base import StoreBase
from storage.store.tables import PINS

_p = PINS.c


@dataclass(frozen=True, slots=True)
class Pin:
    """A learned pin: the construction a secret (by fingerprint) is held to, and since when."""

    fingerprint: str
    construction: str
    pinned_at: datetime


class PinQueries(StoreBase):
    def claim_pin(self, fingerprint: str, construction: str, *, now: datetime) -> str:
        """Pin ``construction`` for ``fingerprint`` unless a pin exists; returns the pin now
        in force (the caller's when it won, the earlier one otherwise)."""
        self.conn.execute(
            self._insert(PINS)
            .values(fingerprint=fingerprint, construction=construction, pinned_at=now)
            .on_conflict_do_nothing(index_elements=["fingerprint"])
        )
        winner = self.conn.execute(
            sa.select(_p.construction).where(_p.fingerprint == fingerprint)
        ).scalar_one()
        return str(winner)

    def signature_pins(self) -> dict[str, Pin]:
        """Every learned pin, by fingerprint."""
        rows = self.conn.execute(sa.select(_p.fingerprint, _p.construction, _p.pinned_at))
        return {
            row.fingerprint: Pin(row.fingerprint, row.construction, row.pinned_at) for row in rows
        }

    def remove_pins(self, fingerprints: Iterable[str] | None = None) -> list[str]:
        """Delete the pins of ``fingerprints`` (None: every pin); returns those removed."""
        stmt = sa.delete(PINS).returning(_p.fingerprint)
        if fingerprints is not None:
            stmt = stmt.where(_p.fingerprint.in_(list(fingerprints)))
        return sorted(str(name) for name in self.conn.execute(stmt).scalars())
