"""What a commit group of webhook deliveries writes first: its new results, knowing what
it must before it writes the rest (``receiver.ingest.ingest_group``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from storage.records import ScoringResult
from storage.store.dialect import hot_sql
from storage.store.inbox import GroupPrior, InboxQueries
from storage.store.results import ResultQueries


class GroupQueries(ResultQueries, InboxQueries):
    """The start of a commit group: results and inbox queries in the order each dialect
    needs them."""

    def open_group(
        self,
        results: Sequence[ScoringResult],
        webhook_ids: Iterable[str | None],
        *,
        now: datetime,
    ) -> tuple[GroupPrior, set[str]]:
        """Read what the group must know (``group_prior``) and insert its delivered results
        new to the store, except erased candidates'; returns both (the ids inserted).

        On PostgreSQL the insert leaves out erased candidates itself, so it is sent before
        the look-up, and on the writer lane's pipelined connection the two wait for the
        server once. SQLite's insert needs the look-up's answer first (which results are
        stored: an executemany returns no rows).
        """
        applications = [result.application_id for result in results]
        if hot_sql(self._dialect).returns_inserted:
            inserted = self.send_new_results(results, source="webhook", now=now, delivered=True)
            return self.group_prior(applications, webhook_ids), inserted()
        jobs = (result.scoring_job_id for result in results)
        prior = self.group_prior(applications, webhook_ids, jobs)
        spared = [result for result in results if result.application_id not in prior.erased]
        created = self.insert_new_results(
            spared, source="webhook", now=now, delivered=True, stored=prior.stored
        )
        return prior, created
