"""``AppEventStore`` on PostgreSQL (contract: parley/ports/app_events.py;
tables: migrations shard/0009-0012), and the outbox writers the other
stores call inside their own transactions.

Invariants:

* Nothing here runs on the message commit path: the cursors are read and
  written by dispatchers only, in short statements (no transaction is held
  while an app is being called, so a slow app holds no pool connection).
* The outbox writers (``reaction_outbox``, ``channel_outbox``,
  ``members_outbox``, ``uninstall_outbox``) run in the caller's
  transaction, so a row commits with its change or not at all; who gets a
  row is decided in one place, ``_audience``.
* A claim is a lease row-locked with ``FOR UPDATE SKIP LOCKED``: two
  dispatchers scanning at once take disjoint pairs, and one whose lease
  ran out loses every later write (``lease_owner`` no longer matches).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from parley.model import MessageExtras
from parley.ports.app_events import (
    EventClaim,
    OutboxEvent,
    PendingMessage,
    ResponseUrl,
    UrlToVerify,
)
from storage.pg_common import MESSAGE_COLUMNS, PgPart, message_from_row, shard_pool

_URL = "a.manifest #>> '{settings,event_subscriptions,request_url}'"
_BOT_EVENTS = "(a.manifest #> '{settings,event_subscriptions,bot_events}')"
# An app that can be sent events: live, and either a Socket Mode app or one
# whose request URL is verified.
_EVENT_APP = f"""a.deleted_at IS NULL AND (a.socket_mode OR a.events_verified_url = {_URL})"""
# ... and installed, its events not turned off for failing (shard/0013): the
# app that gets events.
_DELIVERING = f"a.installed_at IS NOT NULL AND a.events_disabled_at IS NULL AND {_EVENT_APP}"
# Which of those a dispatcher claims: $4 NULL, the HTTP apps (the API
# process's dispatcher); else the Socket Mode apps among $4 (a gateway's,
# for the apps with a socket on it).
_TRANSPORT = """(CASE WHEN $4::bigint[] IS NULL THEN NOT a.socket_mode
                      ELSE a.socket_mode AND a.id = ANY($4::bigint[]) END)"""

# ... and subscribes to an event that messages yield (else it needs no cursor).
_MESSAGE_EVENTS = f"""{_BOT_EVENTS}
                     ?| array['message.channels', 'message.groups', 'message.im',
                              'message.mpim', 'app_mention']"""

_START_CURSORS = f"""
INSERT INTO app_event_cursors AS cur (app_id, channel_id, workspace_id, joined_at, delivered)
SELECT a.id, cm.channel_id, a.workspace_id, cm.joined_at,
       2 * parley_seq_at(cm.channel_id, cm.joined_at) - 1
FROM apps a
JOIN channel_members cm ON cm.workspace_id = a.workspace_id AND cm.user_id = a.bot_user_id
WHERE {_DELIVERING} AND {_MESSAGE_EVENTS}
  AND NOT EXISTS (SELECT 1 FROM app_event_cursors c
                  WHERE c.app_id = a.id AND c.channel_id = cm.channel_id
                    AND c.joined_at = cm.joined_at)
ON CONFLICT (app_id, channel_id) DO UPDATE
SET joined_at = EXCLUDED.joined_at, delivered = EXCLUDED.delivered, attempts = 0,
    retry_reason = NULL, not_before = NULL, lease_owner = NULL, leased_until = NULL
WHERE cur.joined_at <> EXCLUDED.joined_at
"""  # noqa: S608 - no user input in the SQL text

_CLAIM = f"""
UPDATE app_event_cursors cur
SET lease_owner = $1, leased_until = now() + $2 * interval '1 second'
FROM (SELECT c.app_id, c.channel_id, ch.kind, c.lease_owner IS NOT NULL AS taken_over,
             a.xmin::text AS app_version
      FROM app_event_cursors c
      JOIN apps a ON a.id = c.app_id
      JOIN channel_members cm ON cm.channel_id = c.channel_id AND cm.user_id = a.bot_user_id
                             AND cm.joined_at = c.joined_at
      JOIN channel_counters cc ON cc.channel_id = c.channel_id
      JOIN channels ch ON ch.id = c.channel_id
      WHERE {_DELIVERING} AND {_MESSAGE_EVENTS} AND {_TRANSPORT}
        AND 2 * cc.last_seq + 1 > c.delivered
        AND (c.not_before IS NULL OR c.not_before <= now())
        AND (c.leased_until IS NULL OR c.leased_until < now())
      ORDER BY c.not_before NULLS FIRST, c.app_id, c.channel_id
      LIMIT $3
      FOR UPDATE OF c SKIP LOCKED) due
WHERE cur.app_id = due.app_id AND cur.channel_id = due.channel_id
RETURNING cur.workspace_id, cur.app_id, cur.channel_id, due.kind, cur.delivered, cur.attempts,
          cur.retry_reason, due.taken_over, due.app_version
"""  # noqa: S608


def _audience(channel: str, kind: str, *, anyone: str = "false") -> str:
    """The one rule of who gets an outbox event, as a SQL condition on
    ``apps a``: the app gets events (``_DELIVERING``), its manifest's
    ``bot_events`` has ``kind``, and its bot is a member of ``channel`` now
    (unless ``anyone``, for events every subscribed app of the workspace
    gets).  ``channel``, ``kind`` and ``anyone`` are SQL expressions (a
    parameter or a column), never user input."""
    return f"""({_DELIVERING} AND {_BOT_EVENTS} ? {kind}
        AND ({anyone} OR EXISTS (SELECT 1 FROM channel_members cm
                                 WHERE cm.channel_id = {channel} AND cm.user_id = a.bot_user_id
                                   AND cm.workspace_id = a.workspace_id)))"""  # noqa: S608


# One row per payload ($4, a JSON array) and app of workspace $1 that gets
# event $3 of channel $2 ($5: no membership needed).
_CHANNEL_OUTBOX = f"""
INSERT INTO app_event_outbox (workspace_id, app_id, channel_id, kind, payload)
SELECT a.workspace_id, a.id, $2::bigint, $3::text, p.payload
FROM apps a CROSS JOIN jsonb_array_elements($4::jsonb) AS p(payload)
WHERE a.workspace_id = $1 AND {_audience("$2::bigint", "$3::text", anyone="$5::boolean")}
ORDER BY a.id
"""  # noqa: S608 - no user input in the SQL text

# A reaction's facts come from its message, whose channel decides the audience.
_REACTION_OUTBOX = f"""
INSERT INTO app_event_outbox (workspace_id, app_id, channel_id, kind, payload)
SELECT a.workspace_id, a.id, m.channel_id, $5::text,
       jsonb_build_object('user_id', $3::bigint, 'emoji', $4::text, 'message_id', m.id,
                          'item_user_id', m.user_id, 'item_seq', m.seq,
                          'item_created_at', extract(epoch FROM m.created_at))
FROM messages m JOIN apps a ON a.workspace_id = m.workspace_id
WHERE m.id = $2 AND m.workspace_id = $1 AND {_audience("m.channel_id", "$5::text")}
"""  # noqa: S608

# The app being uninstalled (so not _DELIVERING: installed_at was just
# cleared in this transaction) is told so, at its request URL, when it
# subscribes; the only events an uninstalled app gets.
_UNINSTALL_OUTBOX = f"""
INSERT INTO app_event_outbox (workspace_id, app_id, channel_id, kind, payload)
SELECT a.workspace_id, a.id, NULL, e.kind, e.payload
FROM apps a CROSS JOIN jsonb_to_recordset($3::jsonb) AS e(kind text, payload jsonb)
WHERE a.id = $2 AND a.workspace_id = $1 AND {_EVENT_APP} AND {_BOT_EVENTS} ? e.kind
"""  # noqa: S608

_CLAIM_OUTBOX = f"""
UPDATE app_event_outbox o
SET lease_owner = $1, leased_until = now() + $2 * interval '1 second'
FROM (SELECT x.id, ch.kind, x.lease_owner IS NOT NULL AS taken_over
      FROM app_event_outbox x LEFT JOIN channels ch ON ch.id = x.channel_id
      JOIN apps a ON a.id = x.app_id
      WHERE {_TRANSPORT}
        AND (x.not_before IS NULL OR x.not_before <= now())
        AND (x.leased_until IS NULL OR x.leased_until < now())
        -- rows written before the app's events were turned off wait (and
        -- are dropped when they are turned on again: AppHealthStore)
        AND NOT EXISTS (SELECT 1 FROM apps a WHERE a.id = x.app_id
                                             AND a.events_disabled_at IS NOT NULL)
      ORDER BY x.id LIMIT $3
      FOR UPDATE OF x SKIP LOCKED) due
WHERE o.id = due.id
RETURNING o.id, o.workspace_id, o.app_id, o.channel_id, due.kind, o.kind AS event_kind,
          o.payload::text AS payload, o.created_at, o.attempts, o.retry_reason, due.taken_over
"""  # noqa: S608

# -- outbox writers: each runs in the caller's transaction, the change's ------------


async def reaction_outbox(conn: asyncpg.Connection, workspace_id: int, message_id: int,
                          user_id: int, emoji: str, kind: str) -> None:
    """``reaction_added`` / ``reaction_removed`` rows for the apps whose
    bot is in the message's channel (see parley/ports/app_events.py)."""
    await conn.execute(_REACTION_OUTBOX, workspace_id, message_id, user_id, emoji, kind)


async def channel_outbox(conn: asyncpg.Connection, workspace_id: int, channel_id: int,
                         kind: str, payloads: Sequence[dict[str, Any]], *,
                         anyone: bool = False) -> None:
    """Rows of event ``kind`` in a channel, one per payload (Parley's facts,
    native ids, shaped by parley/actions/app_events.py) and app that gets
    it (``_audience``: its bot a member of the channel now, unless
    ``anyone``)."""
    if payloads:
        await conn.execute(_CHANNEL_OUTBOX, workspace_id, channel_id, kind,
                           json.dumps(list(payloads)), anyone)


async def members_outbox(conn: asyncpg.Connection, workspace_id: int, channel_id: int,
                         kind: str, user_ids: Sequence[int],
                         inviter_id: int | None = None) -> None:
    """``member_joined_channel`` (written after the join: a bot that joined
    is told too) or ``member_left_channel`` (after the leave: only bots
    still in the channel are told) for each of ``user_ids``, in public and
    private channels (Slack sends none for DMs)."""
    if await conn.fetchval("SELECT kind FROM channels WHERE id = $1 AND workspace_id = $2",
                           channel_id, workspace_id) not in {"public", "private"}:
        return
    await channel_outbox(conn, workspace_id, channel_id, kind,
                         [{"user_id": u} if inviter_id in {None, u}
                          else {"user_id": u, "inviter_id": inviter_id} for u in user_ids])


def _revoked_row(revoked: Sequence[tuple[str, int]]) -> dict[str, Any] | None:
    oauth = sorted({u for k, u in revoked if k == "user"})
    bot = sorted({u for k, u in revoked if k == "bot"})  # app-level tokens are neither
    if not (oauth or bot):
        return None
    return {"kind": "tokens_revoked", "payload": {"oauth": oauth, "bot": bot}}


async def uninstall_outbox(conn: asyncpg.Connection, workspace_id: int, app_id: int,
                           revoked: Sequence[tuple[str, int]]) -> None:
    """``app_uninstalled`` and (when ``revoked``, (token kind, user id)
    pairs, is not empty) ``tokens_revoked`` for the app just uninstalled."""
    rows: list[dict[str, Any]] = [{"kind": "app_uninstalled", "payload": {}}]
    if (row := _revoked_row(revoked)) is not None:
        rows.append(row)
    await conn.execute(_UNINSTALL_OUTBOX, workspace_id, app_id, json.dumps(rows))


async def tokens_revoked_outbox(conn: asyncpg.Connection, workspace_id: int, app_id: int,
                                revoked: Sequence[tuple[str, int]]) -> None:
    """``tokens_revoked`` for tokens of a still installed app (``auth.revoke``,
    an admin revoking one token): the same row, by the same rule of who
    gets it, as an uninstall's."""
    if (row := _revoked_row(revoked)) is not None:
        await conn.execute(_UNINSTALL_OUTBOX, workspace_id, app_id, json.dumps([row]))


class PgAppEvents(PgPart):
    """``AppEventStore`` on PostgreSQL."""

    __slots__ = ()

    async def claim(self, owner: str, lease_s: float, limit: int,
                    socket_apps: Sequence[int] | None = None) -> list[EventClaim]:
        out: list[EventClaim] = []
        apps = None if socket_apps is None else list(socket_apps)
        for pool in list(self.pools.values()):
            if len(out) >= limit:
                break
            await self._call(pool.execute, _START_CURSORS)
            rows = await self._call(pool.fetch, _CLAIM, owner, lease_s, limit - len(out), apps)
            out += [EventClaim(workspace_id=r["workspace_id"], app_id=r["app_id"],
                               channel_id=r["channel_id"], channel_kind=r["kind"],
                               delivered=r["delivered"], attempts=r["attempts"],
                               retry_reason=r["retry_reason"], owner=owner,
                               taken_over=r["taken_over"],
                               app_version=r["app_version"]) for r in rows]
        return out

    async def pending(self, claim: EventClaim, limit: int) -> list[PendingMessage]:
        pool = await shard_pool(self, claim.workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {MESSAGE_COLUMNS}, x.message_id AS x_id, x.blocks, x.attachments,
                       x.bot_id, x.app_id, x.subtype, r.created_at AS root_created_at,
                       r.seq AS root_seq, r.user_id AS root_user_id
                FROM messages m
                LEFT JOIN message_extras x ON x.message_id = m.id
                LEFT JOIN messages r ON r.id = m.thread_root_id
                WHERE m.channel_id = $1 AND m.workspace_id = $2 AND m.seq >= $3
                ORDER BY m.seq LIMIT $4""",  # noqa: S608
            claim.channel_id, claim.workspace_id, (claim.delivered + 1) // 2, limit)
        return [PendingMessage(message=message_from_row(r), extras=_extras(r),
                               root_created_at=r["root_created_at"], root_seq=r["root_seq"],
                               root_user_id=r["root_user_id"]) for r in rows]

    async def advance(self, claim: EventClaim, delivered: int, lease_s: float, *,
                      release: bool = False) -> bool:
        pool = await shard_pool(self, claim.workspace_id)
        status = await self._call(
            pool.execute,
            """UPDATE app_event_cursors
               SET delivered = greatest(delivered, $4), attempts = 0, retry_reason = NULL,
                   not_before = NULL,
                   lease_owner = CASE WHEN $7 THEN NULL ELSE lease_owner END,
                   leased_until = CASE WHEN $7 THEN NULL
                                       ELSE now() + $5 * interval '1 second' END
               WHERE app_id = $1 AND channel_id = $2 AND workspace_id = $3
                 AND lease_owner = $6""",
            claim.app_id, claim.channel_id, claim.workspace_id, delivered, lease_s, claim.owner,
            release)
        return bool(status == "UPDATE 1")

    async def defer(self, claim: EventClaim, attempts: int, reason: str,
                    not_before: dt.datetime) -> bool:
        pool = await shard_pool(self, claim.workspace_id)
        status = await self._call(
            pool.execute,
            """UPDATE app_event_cursors
               SET attempts = $4, retry_reason = $5, not_before = $6,
                   lease_owner = NULL, leased_until = NULL
               WHERE app_id = $1 AND channel_id = $2 AND workspace_id = $3
                 AND lease_owner = $7""",
            claim.app_id, claim.channel_id, claim.workspace_id, attempts, reason, not_before,
            claim.owner)
        return bool(status == "UPDATE 1")

    async def release(self, claim: EventClaim) -> None:
        pool = await shard_pool(self, claim.workspace_id)
        await self._call(
            pool.execute,
            """UPDATE app_event_cursors SET lease_owner = NULL, leased_until = NULL
               WHERE app_id = $1 AND channel_id = $2 AND workspace_id = $3
                 AND lease_owner = $4""",
            claim.app_id, claim.channel_id, claim.workspace_id, claim.owner)

    async def claim_outbox(self, owner: str, lease_s: float, limit: int,
                           socket_apps: Sequence[int] | None = None) -> list[OutboxEvent]:
        out: list[OutboxEvent] = []
        apps = None if socket_apps is None else list(socket_apps)
        for pool in list(self.pools.values()):
            if len(out) >= limit:
                break
            rows = await self._call(pool.fetch, _CLAIM_OUTBOX, owner, lease_s, limit - len(out),
                                    apps)
            out += [_outbox(r, owner) for r in rows]
        return out

    async def outbox_done(self, event: OutboxEvent) -> bool:
        pool = await shard_pool(self, event.workspace_id)
        status = await self._call(
            pool.execute,
            """DELETE FROM app_event_outbox
               WHERE id = $1 AND workspace_id = $2 AND lease_owner = $3""",
            event.id, event.workspace_id, event.owner)
        return bool(status == "DELETE 1")

    async def outbox_defer(self, event: OutboxEvent, attempts: int, reason: str,
                           not_before: dt.datetime) -> bool:
        pool = await shard_pool(self, event.workspace_id)
        status = await self._call(
            pool.execute,
            """UPDATE app_event_outbox
               SET attempts = $4, retry_reason = $5, not_before = $6,
                   lease_owner = NULL, leased_until = NULL
               WHERE id = $1 AND workspace_id = $2 AND lease_owner = $3""",
            event.id, event.workspace_id, event.owner, attempts, reason, not_before)
        return bool(status == "UPDATE 1")

    async def urls_to_verify(self, retry_after_s: float, limit: int) -> list[UrlToVerify]:
        out: list[UrlToVerify] = []
        for pool in list(self.pools.values()):
            rows = await self._call(
                pool.fetch,
                f"""SELECT a.workspace_id, a.id, {_URL} AS url FROM apps a
                    WHERE a.deleted_at IS NULL AND NOT a.socket_mode AND {_URL} IS NOT NULL
                      AND a.events_verified_url IS DISTINCT FROM {_URL}
                      AND (a.events_verify_failed_url IS DISTINCT FROM {_URL}
                           OR a.events_verify_failed_at
                              < now() - $1 * interval '1 second')
                    ORDER BY a.id LIMIT $2""",  # noqa: S608
                retry_after_s, limit)
            out += [UrlToVerify(r["workspace_id"], r["id"], r["url"]) for r in rows]
        return out[:limit]

    async def set_verified(self, workspace_id: int, app_id: int, url: str, ok: bool) -> None:
        pool = await shard_pool(self, workspace_id)
        if ok:
            sql = f"""UPDATE apps a SET events_verified_url = $3
                      WHERE a.id = $1 AND a.workspace_id = $2 AND {_URL} = $3"""  # noqa: S608
        else:
            sql = f"""UPDATE apps a SET events_verify_failed_url = $3,
                                        events_verify_failed_at = now()
                      WHERE a.id = $1 AND a.workspace_id = $2 AND {_URL} = $3"""  # noqa: S608
        await self._call(pool.execute, sql, app_id, workspace_id, url)

    async def create_response_url(self, url: ResponseUrl) -> None:
        pool = await shard_pool(self, url.workspace_id)
        await self._call(
            pool.execute,
            """INSERT INTO command_responses (id, workspace_id, app_id, channel_id, user_id,
                                              secret_hash, expires_at, max_uses, message_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            url.id, url.workspace_id, url.app_id, url.channel_id, url.user_id, url.secret_hash,
            url.expires_at, url.max_uses, url.message_id)

    async def use_response_url(self, workspace_id: int, url_id: int,
                               secret_hash: str) -> ResponseUrl | None:
        pool = await shard_pool(self, workspace_id)
        r = await self._call(
            pool.fetchrow,
            """UPDATE command_responses SET uses = uses + 1
               WHERE id = $1 AND workspace_id = $2 AND secret_hash = $3
                 AND expires_at > now() AND uses < max_uses
               RETURNING *""",
            url_id, workspace_id, secret_hash)
        if r is None:
            return None
        return ResponseUrl(id=r["id"], workspace_id=r["workspace_id"], app_id=r["app_id"],
                           channel_id=r["channel_id"], user_id=r["user_id"],
                           secret_hash=r["secret_hash"], expires_at=r["expires_at"],
                           max_uses=r["max_uses"], message_id=r["message_id"])

    async def set_response_url_message(self, workspace_id: int, url_id: int,
                                       message_id: int) -> None:
        pool = await shard_pool(self, workspace_id)
        await self._call(
            pool.execute,
            """UPDATE command_responses SET message_id = $3
               WHERE id = $1 AND workspace_id = $2 AND message_id IS NULL""",
            url_id, workspace_id, message_id)


def _outbox(r: Any, owner: str) -> OutboxEvent:
    return OutboxEvent(id=r["id"], workspace_id=r["workspace_id"], app_id=r["app_id"],
                       channel_id=r["channel_id"], channel_kind=r["kind"],
                       kind=r["event_kind"], payload=json.loads(r["payload"]),
                       created_at=r["created_at"], attempts=r["attempts"],
                       retry_reason=r["retry_reason"], owner=owner,
                       taken_over=r["taken_over"])


def _extras(r: Any) -> MessageExtras | None:
    if r["x_id"] is None:
        return None
    return MessageExtras(blocks=r["blocks"], attachments=r["attachments"], bot_id=r["bot_id"],
                         app_id=r["app_id"], subtype=r["subtype"])
