"""The store contract of failing-app detection: per-minute counts of event
delivery tries per app, and the switch that turns an app's events off
(``parley/actions/app_health.py`` has the rule; ``storage/pg_app_health.py``
implements this; ``tests/api/slack/test_app_health.py`` checks it on
PostgreSQL through the API).

Rules:

* Counts are additive: two dispatchers adding counts for the same app and
  minute sum them.  Counts are best effort (a crash loses the last few
  seconds of one process's counts), which only delays a decision.
* ``disable_events`` is a compare-and-set: of several processes that find
  the same failing app, exactly one gets the record back (and tells the
  admins).
* While an app's events are disabled, ``AppEventStore`` claims none of its
  pairs or outbox rows and writes no outbox rows for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from parley.ports.apps import AppRecord


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    """Tries of one app in one minute, counted by one dispatcher."""

    workspace_id: int
    app_id: int
    minute: dt.datetime  # the start of the minute (UTC)
    ok: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailingApp:
    """An app over the failure threshold, with its counts over the window."""

    workspace_id: int
    app_id: int
    ok: int
    failed: int


class AppHealthStore(Protocol):
    async def add_counts(self, counts: Sequence[DeliveryCount]) -> None:
        """Add the counts to the (app, minute) rows, creating missing ones."""

    async def failing_apps(self, since: dt.datetime, min_tries: int,
                           min_failed_ratio: float) -> list[FailingApp]:
        """Installed, live apps whose events are on, with at least
        ``min_tries`` tries in the minutes starting after ``since`` of which
        at least ``min_failed_ratio`` failed, on every shard."""

    async def disable_events(self, workspace_id: int, app_id: int,
                             reason: str) -> AppRecord | None:
        """Turn the app's events off (with ``reason``, for people); the
        app, or None when it is missing or already off (nothing changed)."""

    async def enable_events(self, workspace_id: int, app_id: int) -> AppRecord | None:
        """Turn the app's events on again, in one transaction: its counts
        are cleared (it starts with a clean record), its cursors move past
        every message posted so far and its queued outbox events are
        dropped (events of the time it was off are not delivered, as in
        Slack).  The app, or None when it is missing or its events are on
        (nothing changed)."""

    async def prune(self, before: dt.datetime) -> None:
        """Delete the counts of minutes starting before ``before``."""
