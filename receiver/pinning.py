"""Which signed-message construction each webhook secret may match (NOVA.md, Decision 1).

Pure: the database is the caller's. ``NOVA_SIGNATURE_CONSTRUCTION`` either names one
construction for every secret (``configured``), or is ``auto``: then a secret is held to the
first construction that verified a delivery for it, recorded in the database (``learned``)
and shared by every worker and instance. Until then (``unpinned``) any construction may match,
and the first verified delivery claims the pin before it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from receiver.signatures import CONSTRUCTION_SETTINGS, CONSTRUCTIONS, Construction

PinSource = Literal["configured", "learned", "unpinned"]


@dataclass(frozen=True, slots=True)
class SecretPin:
    """One configured secret's pin, for display (``secrets status``)."""

    fingerprint: str
    construction: Construction | None
    source: PinSource


def learned_construction(value: str) -> Construction | None:
    """A stored construction name, or None for a value this version does not know."""
    for construction in CONSTRUCTIONS:
        if construction == value:
            return construction
    return None


class PinPolicy:
    """The constructions the configured secrets may match, configured or learned so far.

    ``allowed`` is what ``signatures.verify`` takes: per secret (by position) one
    construction or None (any). A process keeps what it learned in memory; the database
    row claimed by ``needs_claim``'s caller is the shared truth.
    """

    def __init__(self, fingerprints: Sequence[str], setting: str) -> None:
        self.fingerprints = tuple(fingerprints)
        self.auto = setting == "auto"
        self._configured = None if self.auto else CONSTRUCTION_SETTINGS[setting]
        self._learned: dict[str, Construction] = {}
        self.allowed: list[Construction | None] = self._allowed()

    def _allowed(self) -> list[Construction | None]:
        if self._configured is not None:
            return [self._configured] * len(self.fingerprints)
        return [self._learned.get(name) for name in self.fingerprints]

    def load(self, pins: Mapping[str, str]) -> None:
        """Take the learned pins (fingerprint → construction) read from the database."""
        for name, value in pins.items():
            construction = learned_construction(value)
            if construction is not None:
                self._learned[name] = construction
        self.allowed = self._allowed()

    def needs_claim(self, index: int) -> bool:
        """Whether a delivery verified by secret ``index`` must claim its pin first."""
        return self.auto and self.fingerprints[index] not in self._learned

    def learn(self, index: int, winner: str) -> bool:
        """Record the pin the database holds for secret ``index``; False if unusable."""
        construction = learned_construction(winner)
        if construction is None:
            return False
        self._learned[self.fingerprints[index]] = construction
        self.allowed = self._allowed()
        return True


def describe(
    fingerprints: Sequence[str], setting: str, learned: Mapping[str, str]
) -> list[SecretPin]:
    """Each secret's pin and how it was set, for ``secrets status``."""
    policy = PinPolicy(fingerprints, setting)
    policy.load(learned)
    source: PinSource
    rows = []
    for name, construction in zip(fingerprints, policy.allowed, strict=True):
        if not policy.auto:
            source = "configured"
        else:
            source = "learned" if construction is not None else "unpinned"
        rows.append(SecretPin(name, construction, source))
    return rows
