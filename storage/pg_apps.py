"""The app ports on PostgreSQL (``AppStore``, ``InstallStore``,
``WebhookStore``; see parley/ports/apps.py for the contracts).

Like every store class they share ``PgDatabase``'s pools (``PgPart``) and
own only the app tables of migration shard/0007 plus the bot's account and
membership.

Invariants:

* Install, uninstall and delete are each one shard transaction, so a token
  is never live for an app that is not installed, and an uninstalled app's
  bot is in no channel.
* A token is found by its id (the primary key) and checked by comparing
  the hash of its secret in the caller (constant time), never looked up by
  the secret.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from parley.ports.apps import (
    AppNameTaken,
    AppRecord,
    NewToken,
    TokenGrant,
    TokenRecord,
    Uninstalled,
    WebhookGrant,
    WebhookRecord,
)
from storage.pg_app_events import members_outbox, tokens_revoked_outbox, uninstall_outbox
from storage.pg_common import PgPart, shard_pool, transaction

# A bot account's password hash: not a PHC string, so argon2 verification
# fails (InvalidHashError) and nobody can log in as a bot.
BOT_PASSWORD_HASH = "!bot"  # noqa: S105 - deliberately not a hash

_APP_COLUMNS = ("a.id, a.workspace_id, a.name, a.bot_name, a.manifest::text AS manifest, "
                "a.bot_scopes, a.socket_mode, a.bot_id, a.bot_user_id, a.created_by, "
                "a.created_at, a.updated_at, a.signing_salt, a.prev_signing_salt, "
                "a.prev_signing_until, a.installed_at, a.deleted_at, a.events_verified_url, "
                "a.events_disabled_at, a.events_disabled_reason")
_TOKEN_COLUMNS = (  # column names, not a password
    "t.id, t.workspace_id, t.app_id, t.kind, t.user_id, t.scopes, t.created_at, t.revoked_at")  # noqa: S105
_WEBHOOK_COLUMNS = ("h.id, h.workspace_id, h.app_id, h.channel_id, h.created_by, h.created_at, "
                    "h.revoked_at")


def _app(r: Any) -> AppRecord:
    return AppRecord(
        id=r["id"], workspace_id=r["workspace_id"], name=r["name"], bot_name=r["bot_name"],
        manifest=r["manifest"], bot_scopes=tuple(r["bot_scopes"]), socket_mode=r["socket_mode"],
        bot_id=r["bot_id"], bot_user_id=r["bot_user_id"], created_by=r["created_by"],
        created_at=r["created_at"], updated_at=r["updated_at"], signing_salt=r["signing_salt"],
        prev_signing_salt=r["prev_signing_salt"], prev_signing_until=r["prev_signing_until"],
        installed=r["installed_at"] is not None, deleted=r["deleted_at"] is not None,
        events_verified_url=r["events_verified_url"],
        events_disabled_at=r["events_disabled_at"],
        events_disabled_reason=r["events_disabled_reason"])


# What other stores reading the apps table use (storage/pg_app_health.py).
APP_COLUMNS = _APP_COLUMNS
app_record = _app


def _token(r: Any) -> TokenRecord:
    return TokenRecord(id=r["id"], workspace_id=r["workspace_id"], app_id=r["app_id"],
                       kind=r["kind"], user_id=r["user_id"], scopes=tuple(r["scopes"]),
                       created_at=r["created_at"], revoked=r["revoked_at"] is not None)


def _webhook(r: Any) -> WebhookRecord:
    return WebhookRecord(id=r["id"], workspace_id=r["workspace_id"], app_id=r["app_id"],
                         channel_id=r["channel_id"], created_by=r["created_by"],
                         created_at=r["created_at"], revoked=r["revoked_at"] is not None)


class _AppQueries(PgPart):
    """What the three app stores share: one-statement reads on the shard."""

    async def _fetchrow(self, workspace_id: int, sql: str, *args: Any) -> Any:
        pool = await shard_pool(self, workspace_id)
        return await self._call(pool.fetchrow, sql, *args)

    async def _fetch(self, workspace_id: int, sql: str, *args: Any) -> list[Any]:
        pool = await shard_pool(self, workspace_id)
        rows: list[Any] = await self._call(pool.fetch, sql, *args)
        return rows

    async def _live_app(self, workspace_id: int, app_id: int) -> AppRecord | None:
        row = await self._fetchrow(
            workspace_id,
            f"""SELECT {_APP_COLUMNS} FROM apps a
                WHERE a.id = $1 AND a.workspace_id = $2 AND a.deleted_at IS NULL""",  # noqa: S608
            app_id, workspace_id)
        return None if row is None else _app(row)


class PgApps(_AppQueries):
    """``AppStore`` on PostgreSQL."""


    async def create_app(self, app: AppRecord) -> AppRecord:
        try:
            row = await self._fetchrow(
                app.workspace_id,
                f"""INSERT INTO apps AS a (id, workspace_id, name, bot_name, manifest, bot_scopes,
                                       socket_mode, bot_id, bot_user_id, created_by,
                                       signing_salt)
                    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11)
                    RETURNING {_APP_COLUMNS}""",  # noqa: S608
                app.id, app.workspace_id, app.name, app.bot_name, app.manifest,
                list(app.bot_scopes), app.socket_mode, app.bot_id, app.bot_user_id,
                app.created_by, app.signing_salt)
        except asyncpg.exceptions.UniqueViolationError as exc:
            raise AppNameTaken(app.name) from exc
        return _app(row)

    async def app(self, workspace_id: int, app_id: int) -> AppRecord | None:
        return await self._live_app(workspace_id, app_id)

    async def apps(self, workspace_id: int) -> list[AppRecord]:
        rows = await self._fetch(
            workspace_id,
            f"""SELECT {_APP_COLUMNS} FROM apps a
                WHERE a.workspace_id = $1 AND a.deleted_at IS NULL ORDER BY a.id""",  # noqa: S608
            workspace_id)
        return [_app(r) for r in rows]

    async def app_by_bot(self, workspace_id: int, bot_id: int) -> AppRecord | None:
        row = await self._fetchrow(
            workspace_id,
            f"SELECT {_APP_COLUMNS} FROM apps a WHERE a.bot_id = $1 AND a.workspace_id = $2",  # noqa: S608
            bot_id, workspace_id)
        return None if row is None else _app(row)

    async def app_by_bot_user(self, workspace_id: int, user_id: int) -> AppRecord | None:
        row = await self._fetchrow(
            workspace_id,
            f"""SELECT {_APP_COLUMNS} FROM apps a
                WHERE a.bot_user_id = $1 AND a.workspace_id = $2""",  # noqa: S608
            user_id, workspace_id)
        return None if row is None else _app(row)

    async def update_app(self, workspace_id: int, app_id: int, *, name: str, bot_name: str,
                         manifest: str, bot_scopes: Sequence[str],
                         socket_mode: bool) -> AppRecord | None:
        pool = await shard_pool(self, workspace_id)
        try:
            async with transaction(pool) as conn:
                row = await conn.fetchrow(
                    f"""UPDATE apps a SET name = $3, bot_name = $4, manifest = $5::jsonb,
                               bot_scopes = $6, socket_mode = $7, updated_at = now()
                        WHERE a.id = $1 AND a.workspace_id = $2 AND a.deleted_at IS NULL
                        RETURNING {_APP_COLUMNS}""",  # noqa: S608
                    app_id, workspace_id, name, bot_name, manifest, list(bot_scopes),
                    socket_mode)
                if row is not None:  # the bot's display name follows the manifest
                    await conn.execute(
                        """UPDATE workspace_members SET display_name = $3
                           WHERE workspace_id = $1 AND user_id = $2""",
                        workspace_id, row["bot_user_id"], bot_name)
        except asyncpg.exceptions.UniqueViolationError as exc:
            raise AppNameTaken(name) from exc
        return None if row is None else _app(row)

    async def rotate_signing_salt(self, workspace_id: int, app_id: int, salt: str,
                                  previous_valid_until: dt.datetime) -> AppRecord | None:
        row = await self._fetchrow(
            workspace_id,
            f"""UPDATE apps a SET prev_signing_salt = a.signing_salt, signing_salt = $3,
                       prev_signing_until = $4, updated_at = now()
                WHERE a.id = $1 AND a.workspace_id = $2 AND a.deleted_at IS NULL
                RETURNING {_APP_COLUMNS}""",  # noqa: S608
            app_id, workspace_id, salt, previous_valid_until)
        return None if row is None else _app(row)



class PgInstalls(_AppQueries):
    """``InstallStore`` on PostgreSQL."""


    async def install(self, workspace_id: int, app_id: int, *, bot_email: str,
                      tokens: Sequence[NewToken]) -> AppRecord | None:
        app = await self._live_app(workspace_id, app_id)
        if app is None:
            return None
        # The account first (directory), idempotent by id: see the contract.
        await self._call(
            self._db.directory.execute,
            """INSERT INTO users (id, email, email_norm, display_name, password_hash, is_bot)
               VALUES ($1, $2, lower($2), $3, $4, true)
               ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name""",
            app.bot_user_id, bot_email, app.bot_name, BOT_PASSWORD_HASH)
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            row = await conn.fetchrow(
                f"""UPDATE apps a SET installed_at = now()
                    WHERE a.id = $1 AND a.workspace_id = $2 AND a.deleted_at IS NULL
                    RETURNING {_APP_COLUMNS}""", app_id, workspace_id)  # noqa: S608
            if row is None:  # deleted meanwhile
                return None
            await conn.execute(
                """INSERT INTO workspace_members (workspace_id, user_id, role, display_name,
                                                  is_bot)
                   VALUES ($1, $2, 'member', $3, true)
                   ON CONFLICT (workspace_id, user_id) DO UPDATE
                   SET deactivated_at = NULL, ended_reason = NULL, role = 'member',
                       display_name = EXCLUDED.display_name, is_bot = true""",
                workspace_id, row["bot_user_id"], row["bot_name"])
            await conn.execute(
                """UPDATE app_tokens SET revoked_at = now()
                   WHERE app_id = $1 AND workspace_id = $2 AND revoked_at IS NULL""",
                app_id, workspace_id)
            await conn.executemany(
                """INSERT INTO app_tokens (id, workspace_id, app_id, kind, user_id, secret_hash,
                                           scopes)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                [(t.id, workspace_id, app_id, t.kind, t.user_id, t.secret_hash, list(t.scopes))
                 for t in tokens])
        return _app(row)

    async def _uninstall(self, conn: asyncpg.Connection, workspace_id: int, app_id: int,
                         delete: bool) -> Uninstalled | None:
        was_installed = await conn.fetchval(
            """SELECT installed_at IS NOT NULL FROM apps
               WHERE id = $1 AND workspace_id = $2 FOR UPDATE""", app_id, workspace_id)
        row = await conn.fetchrow(
            f"""UPDATE apps a SET installed_at = NULL,
                       deleted_at = CASE WHEN $3 THEN now() ELSE a.deleted_at END
                WHERE a.id = $1 AND a.workspace_id = $2 AND a.deleted_at IS NULL
                RETURNING {_APP_COLUMNS}""", app_id, workspace_id, delete)  # noqa: S608
        if row is None:
            return None
        tokens = await conn.fetch(
            """UPDATE app_tokens SET revoked_at = now()
               WHERE app_id = $1 AND workspace_id = $2 AND revoked_at IS NULL
               RETURNING id, kind, user_id""", app_id, workspace_id)
        hooks = await conn.fetch(
            """UPDATE app_webhooks SET revoked_at = now()
               WHERE app_id = $1 AND workspace_id = $2 AND revoked_at IS NULL
               RETURNING id""", app_id, workspace_id)
        bot = row["bot_user_id"]
        channels: list[Any] = []
        if await conn.fetchval(
                """UPDATE workspace_members SET deactivated_at = now(), ended_reason = 'deactivated'
                   WHERE workspace_id = $1 AND user_id = $2 AND deactivated_at IS NULL
                   RETURNING user_id""", workspace_id, bot) is not None:
            channels = await conn.fetch(
                """DELETE FROM channel_members WHERE workspace_id = $1 AND user_id = $2
                   RETURNING channel_id""", workspace_id, bot)
            await conn.execute(
                "DELETE FROM thread_follows WHERE workspace_id = $1 AND user_id = $2",
                workspace_id, bot)
            for r in channels:  # other apps in those channels see the bot leave
                await members_outbox(conn, workspace_id, r["channel_id"], "member_left_channel",
                                     [bot])
        if was_installed:  # the Events API's outbox, in this transaction (not on a repeat)
            await uninstall_outbox(conn, workspace_id, app_id,
                                   [(r["kind"], r["user_id"]) for r in tokens])
        return Uninstalled(app=_app(row), revoked_tokens=tuple(sorted(r["id"] for r in tokens)),
                           revoked_webhooks=tuple(sorted(r["id"] for r in hooks)),
                           channel_ids=tuple(sorted(r["channel_id"] for r in channels)))

    async def uninstall(self, workspace_id: int, app_id: int) -> Uninstalled | None:
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            return await self._uninstall(conn, workspace_id, app_id, False)

    async def delete_app(self, workspace_id: int, app_id: int) -> Uninstalled | None:
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            return await self._uninstall(conn, workspace_id, app_id, True)


    async def token_grant(self, workspace_id: int, token_id: int) -> TokenGrant | None:
        row = await self._fetchrow(
            workspace_id,
            f"""SELECT {_TOKEN_COLUMNS}, t.secret_hash, a.bot_id,
                       a.installed_at IS NOT NULL AND a.deleted_at IS NULL AS app_live,
                       coalesce(m.deactivated_at IS NULL, false) AS user_active
                FROM app_tokens t JOIN apps a ON a.id = t.app_id
                LEFT JOIN workspace_members m ON m.workspace_id = t.workspace_id
                                             AND m.user_id = t.user_id
                WHERE t.id = $1 AND t.workspace_id = $2""",  # noqa: S608
            token_id, workspace_id)
        if row is None:
            return None
        return TokenGrant(token=_token(row), secret_hash=row["secret_hash"], bot_id=row["bot_id"],
                          app_live=row["app_live"], user_active=row["user_active"])

    async def tokens(self, workspace_id: int, app_id: int) -> list[TokenRecord]:
        rows = await self._fetch(
            workspace_id,
            f"""SELECT {_TOKEN_COLUMNS} FROM app_tokens t
                WHERE t.app_id = $1 AND t.workspace_id = $2 ORDER BY t.id""",  # noqa: S608
            app_id, workspace_id)
        return [_token(r) for r in rows]

    async def revoke_token(self, workspace_id: int, token_id: int) -> TokenRecord | None:
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            was = await conn.fetchrow(
                """SELECT revoked_at IS NULL AS live FROM app_tokens
                   WHERE id = $1 AND workspace_id = $2 FOR UPDATE""", token_id, workspace_id)
            if was is None:
                return None
            row = await conn.fetchrow(
                f"""UPDATE app_tokens t SET revoked_at = coalesce(t.revoked_at, now())
                    WHERE t.id = $1 AND t.workspace_id = $2
                    RETURNING {_TOKEN_COLUMNS}""", token_id, workspace_id)  # noqa: S608
            token = _token(row)
            if was["live"] and token.kind in {"bot", "user"}:
                # The Events API's tokens_revoked, in this transaction (not
                # on a repeat; app-level tokens are neither kind Slack names).
                await tokens_revoked_outbox(conn, workspace_id, token.app_id,
                                            [(token.kind, token.user_id)])
        return token



class PgWebhooks(_AppQueries):
    """``WebhookStore`` on PostgreSQL."""


    async def create_webhook(self, webhook: WebhookRecord, secret_hash: str) -> WebhookRecord:
        row = await self._fetchrow(
            webhook.workspace_id,
            f"""INSERT INTO app_webhooks AS h (id, workspace_id, app_id, channel_id, secret_hash,
                                           created_by)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_WEBHOOK_COLUMNS}""",  # noqa: S608
            webhook.id, webhook.workspace_id, webhook.app_id, webhook.channel_id, secret_hash,
            webhook.created_by)
        return _webhook(row)

    async def webhooks(self, workspace_id: int, app_id: int) -> list[WebhookRecord]:
        rows = await self._fetch(
            workspace_id,
            f"""SELECT {_WEBHOOK_COLUMNS} FROM app_webhooks h
                WHERE h.app_id = $1 AND h.workspace_id = $2 AND h.revoked_at IS NULL
                ORDER BY h.id""", app_id, workspace_id)  # noqa: S608
        return [_webhook(r) for r in rows]

    async def webhook_grant(self, workspace_id: int, webhook_id: int) -> WebhookGrant | None:
        row = await self._fetchrow(
            workspace_id,
            f"""SELECT {_WEBHOOK_COLUMNS}, h.secret_hash, a.bot_id, a.bot_user_id,
                       a.installed_at IS NOT NULL AND a.deleted_at IS NULL AS app_live
                FROM app_webhooks h JOIN apps a ON a.id = h.app_id
                WHERE h.id = $1 AND h.workspace_id = $2""",  # noqa: S608
            webhook_id, workspace_id)
        if row is None:
            return None
        return WebhookGrant(webhook=_webhook(row), secret_hash=row["secret_hash"],
                            bot_id=row["bot_id"], bot_user_id=row["bot_user_id"],
                            app_live=row["app_live"])

    async def revoke_webhook(self, workspace_id: int, app_id: int, webhook_id: int) -> bool:
        pool = await shard_pool(self, workspace_id)
        status = await self._call(
            pool.execute,
            """UPDATE app_webhooks SET revoked_at = now()
               WHERE id = $1 AND app_id = $2 AND workspace_id = $3 AND revoked_at IS NULL""",
            webhook_id, app_id, workspace_id)
        return bool(status == "UPDATE 1")
