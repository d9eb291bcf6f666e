"""``parley serve --workers N`` as a user runs it (a real process tree):
the workers share both ports, a message posted through one worker reaches
sockets held by the others, SIGTERM drains them all, a dying worker stops
the rest, and ports that cannot be shared are refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgpack
import psutil  # type: ignore[import-untyped]
import pytest
import websockets

from tests.fixtures.redis import free_ports

#: Sockets opened by one user: enough that SO_REUSEPORT's hash puts some on
#: each of two workers (all on one: 2 / 2**12).
SOCKETS = 12
START_TIMEOUT_S = 60.0


def _spawn(tmp_path: Path, pg_dsn: str, api_port: int, gw_port: int, *extra: str,
           redis_url: str | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update({"PARLEY_DATABASE_URL": pg_dsn, "PARLEY_DATA_DIR": str(tmp_path),
                "PARLEY_LOG_LEVEL": "warning"})
    if redis_url:
        env["PARLEY_REDIS_URL"] = redis_url
    return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--api-port",
                             str(api_port), "--gateway-port", str(gw_port), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _workers(proc: subprocess.Popen[bytes], n: int) -> list[psutil.Process]:
    """The supervisor's ``n`` workers, once each listens on both ports."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode()
        kids = [k for k in psutil.Process(proc.pid).children()
                if "server.cli" in " ".join(k.cmdline())]
        listening = [k for k in kids
                     if len([c for c in k.net_connections("tcp") if c.status == "LISTEN"]) >= 2]
        if len(listening) == n:
            return listening
        time.sleep(0.1)
    raise AssertionError(f"{n} workers did not start listening")


def _until_banner(proc: subprocess.Popen[bytes]) -> str:
    """What the supervisor printed up to its banner's last line (printed once
    every worker reported ready)."""
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("Press Ctrl-C"):
        line = proc.stdout.readline().decode()
        assert line, "".join(lines)
        lines.append(line)
    return "".join(lines)


async def _recv(s: websockets.ClientConnection) -> bytes:
    data = await s.recv()
    assert isinstance(data, bytes)
    return data


async def _account(http: httpx.AsyncClient, who: str) -> dict[str, str]:
    body = {"email": f"{who}@example.com", "password": "long enough", "display_name": who}
    (await http.post("/v1/auth/register", json=body)).raise_for_status()
    r = await http.post("/v1/auth/login", json={"email": body["email"],
                                                 "password": body["password"]})
    return {"authorization": f"Bearer {r.json()['access_token']}"}


@pytest.mark.parametrize("hub", ["embedded", "redis"])
async def test_workers_share_the_ports_and_deliver_across_each_other(
        tmp_path: Path, pg_dsn: str, redis_url: str, hub: str) -> None:
    api_port, gw_port = free_ports(2)
    proc = _spawn(tmp_path, pg_dsn, api_port, gw_port, "--workers", "2",
                  redis_url=redis_url if hub == "redis" else None)
    try:
        workers = await asyncio.to_thread(_workers, proc, 2)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                                     timeout=10) as http:
            ada, bob = await _account(http, "ada"), await _account(http, "bob")
            ws = (await http.post("/v1/workspaces", json={"name": "W"}, headers=ada)).json()
            (await http.post(f"/v1/workspaces/{ws['id']}/members",
                             json={"email": "bob@example.com"}, headers=ada)).raise_for_status()
            chans = (await http.get(f"/v1/workspaces/{ws['id']}/channels", headers=ada)).json()
            general = next(c for c in chans["channels"] if c["name"] == "general")
            url = f"ws://127.0.0.1:{gw_port}/v1/connect?workspace_id={ws['id']}"
            socks = [await websockets.connect(url, subprotocols=["parley.msgpack.v1"],  # type: ignore[list-item]
                                              additional_headers=bob)
                     for _ in range(SOCKETS)]
            for s in socks:
                assert msgpack.unpackb(await asyncio.wait_for(_recv(s), 10))["t"] == "hello"
            # The kernel spread the sockets over both workers.
            held = {w.pid: sum(1 for c in w.net_connections("tcp")
                               if c.status == "ESTABLISHED" and c.laddr.port == gw_port)
                    for w in workers}
            assert all(n > 0 for n in held.values()), held
            # Several REST posts (each through whichever worker accepted it),
            # every one reaching every socket, in seq order.
            posted = []
            for i in range(5):
                r = await http.post(
                    f"/v1/workspaces/{ws['id']}/channels/{general['id']}/messages",
                    json={"text": f"hello {i}"}, headers=ada)
                r.raise_for_status()
                posted.append(r.json()["seq"])
            for s in socks:
                seqs: list[int] = []
                while len(seqs) < len(posted):
                    ev = msgpack.unpackb(await asyncio.wait_for(_recv(s), 10))
                    if ev["t"] == "message.created":
                        seqs.append(ev["d"]["seq"])
                assert seqs == posted
            for s in socks:
                await s.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        out = (proc.stdout.read() if proc.stdout else b"").decode()
        assert "2 workers (pids" in out and out.count("stopped.") == 3, out
        assert not any(w.is_running() for w in workers)
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_a_worker_that_dies_stops_the_others(tmp_path: Path, pg_dsn: str,
                                                   redis_url: str) -> None:
    api_port, gw_port = free_ports(2)
    proc = _spawn(tmp_path, pg_dsn, api_port, gw_port, "--workers", "2", redis_url=redis_url)
    try:
        first, second = await asyncio.to_thread(_workers, proc, 2)
        banner = await asyncio.to_thread(_until_banner, proc)
        first.kill()
        assert await asyncio.to_thread(proc.wait, 30) == 1
        out = banner + (proc.stdout.read() if proc.stdout else b"").decode()
        assert "a worker exited; stopping the others" in out, out
        assert not second.is_running()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_port_zero_cannot_be_shared(tmp_path: Path, pg_dsn: str) -> None:
    proc = _spawn(tmp_path, pg_dsn, 0, 0, "--workers", "2")
    assert proc.wait(30) == 2
    out = (proc.stdout.read() if proc.stdout else b"").decode()
    assert "cannot be shared by several workers" in out, out


@pytest.mark.parametrize("value", ["-1", "257"])
def test_a_worker_count_out_of_range_is_refused(tmp_path: Path, pg_dsn: str, value: str) -> None:
    api_port, gw_port = free_ports(2)
    proc = _spawn(tmp_path, pg_dsn, api_port, gw_port, "--workers", value)
    assert proc.wait(30) == 2
    assert b"workers must be between 0" in (proc.stdout.read() if proc.stdout else b"")
