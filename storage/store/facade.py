"""``Store``: every aggregate's queries over one open connection (and its transaction)."""

from __future__ import annotations

from storage.store.admin import AdminQueries
from storage.store.batches import BatchQueries
from storage.store.changes import ChangeQueries
from storage.store.dashboard import DashboardQueries
from storage.store.groups import GroupQueries
from storage.store.inbox import InboxQueries
from storage.store.pages import PageQueries
from storage.store.pins import PinQueries
from storage.store.results import ResultQueries
from storage.store.runs import RunQueries


# Subclasses precede their bases: DashboardQueries extends PageQueries, which extends
# ResultQueries; GroupQueries extends ResultQueries and InboxQueries.
class Store(
    GroupQueries,
    DashboardQueries,
    PageQueries,
    ResultQueries,
    BatchQueries,
    InboxQueries,
    RunQueries,
    AdminQueries,
    ChangeQueries,
    PinQueries,
):
    """Typed queries over one open connection (and its transaction)."""
