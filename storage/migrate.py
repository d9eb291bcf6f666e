"""Ordered SQL migrations, applied to the directory and to every shard.

Rules:

* Files are ``migrations/<kind>/NNNN_name.sql``, applied in name order, each
  in its own transaction, and recorded in ``parley_migrations``.
* Safe to run twice and from two processes at once: a session-level advisory
  lock serialises runners on one database, and a file already recorded is
  skipped.
* A file is never edited after it ships; a change is a new file.
"""

from __future__ import annotations

from importlib import resources

import asyncpg

# Arbitrary constant that identifies "Parley migrations" among advisory locks.
_MIGRATION_LOCK_KEY = 0x5041524C  # "PARL"


def migration_files(kind: str) -> list[tuple[str, str]]:
    """(name, sql) pairs for ``kind`` ('directory' or 'shard'), in order."""
    root = resources.files("storage") / "migrations" / kind
    files = sorted((p.name, p.read_text()) for p in root.iterdir() if p.name.endswith(".sql"))
    return files


async def apply_migrations(conn: asyncpg.Connection, kinds: tuple[str, ...], *,
                           stop_before: tuple[str, str] | None = None) -> list[str]:
    """Apply pending migrations of ``kinds`` on ``conn``; return names applied.

    ``stop_before=(kind, name)`` leaves out the files of ``kind`` from ``name``
    on: the schema as an earlier release had it (benchmarks and tests of a
    migration compare the two; a server never passes it)."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS parley_migrations (
                   kind TEXT NOT NULL, name TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                   PRIMARY KEY (kind, name))"""
        )
        for kind in kinds:
            done = {r["name"] for r in await conn.fetch(
                "SELECT name FROM parley_migrations WHERE kind = $1", kind)}
            for name, sql in migration_files(kind):
                if name in done:
                    continue
                if stop_before is not None and kind == stop_before[0] \
                        and name >= stop_before[1]:
                    break
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO parley_migrations (kind, name) VALUES ($1, $2)", kind, name)
                applied.append(f"{kind}/{name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
    return applied


async def pending_migrations(conn: asyncpg.Connection, kinds: tuple[str, ...]) -> list[str]:
    """Names not yet applied (for /readyz)."""
    exists = await conn.fetchval("SELECT to_regclass('parley_migrations') IS NOT NULL")
    done: set[tuple[str, str]] = set()
    if exists:
        done = {(r["kind"], r["name"]) for r in await conn.fetch(
            "SELECT kind, name FROM parley_migrations")}
    return [f"{k}/{n}" for k in kinds for n, _ in migration_files(k) if (k, n) not in done]
