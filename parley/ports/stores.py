"""The database ports as one bundle (``Services.store``).

A bundle, not an interface: each field is its own small port, implemented
by its own class (``storage/pg_*.py`` for PostgreSQL), so an action names
the aggregate it touches (``svc.store.roster.is_channel_member(...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from parley.ports.accounts import LeaseStore, SessionStore, UserStore
from parley.ports.app_events import AppEventStore
from parley.ports.app_health import AppHealthStore
from parley.ports.apps import AppStore, InstallStore, WebhookStore
from parley.ports.channels import ChannelStore, ReadStore, RosterStore
from parley.ports.files import FileLimitStore, FileShareStore, FileStore
from parley.ports.messages import (
    MessageExtrasStore,
    MessageStore,
    PinStore,
    ReactionStore,
    SearchIndex,
    ThreadStore,
    TimelineIndex,
)
from parley.ports.workspaces import InviteStore, MemberStore, WorkspaceStore


class Health(Protocol):
    """Readiness of the databases behind the stores."""

    async def ping(self) -> bool:
        """True when every database answers and no migration is pending;
        never raises."""


@dataclass(frozen=True, slots=True)
class Stores:
    users: UserStore
    sessions: SessionStore
    leases: LeaseStore
    workspaces: WorkspaceStore
    members: MemberStore
    invites: InviteStore
    channels: ChannelStore
    roster: RosterStore
    reads: ReadStore
    messages: MessageStore
    extras: MessageExtrasStore
    timeline: TimelineIndex
    threads: ThreadStore
    reactions: ReactionStore
    pins: PinStore
    search: SearchIndex
    files: FileStore
    shares: FileShareStore
    file_limits: FileLimitStore
    apps: AppStore
    installs: InstallStore
    webhooks: WebhookStore
    app_events: AppEventStore
    app_health: AppHealthStore
    health: Health
