"""The outbound client's cost per request, with and without keep-alive.

``python -m bench.micro.outbound_keepalive [--posts N] [--rounds R] [--modes close,reuse]
[--concurrency C] [--loop uvloop|asyncio]``

One ``GuardedHttp`` (storage/outbound.py) POSTs ``--posts`` event-sized
bodies (600 bytes of JSON, the Events API's three signing headers) to an
aiohttp server on loopback that answers 200 with an empty body, the way a
Bolt app acknowledges an event.  The server is a child process, so the
client's ``time.process_time()`` is the client's CPU alone; the server's
CPU (from /proc) is reported beside it.  Modes, alternated ``--rounds``
times in the order given so that the machine's load drifts over all of
them alike:

  close       ``keep_alive=False``: ``Connection: close``, a new TCP
              connection per request (the behaviour before issue 15)
  reuse       keep-alive, the pooled connection reused
  close-name  as ``close``, the URL naming ``localhost`` (the system
              resolver on every request, as for an app's real host name)
  reuse-name  as ``reuse``, naming ``localhost``

Each mode first sends 200 requests that are not measured (warm-up, and the
pool's first connection).  Reported per mode and round: posts/s, client
CPU microseconds per post, server CPU microseconds per post; then the
median over the rounds.  ``--concurrency`` runs that many posters at once
(the dispatcher sends up to 4 per app at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from storage.outbound import AddressPolicy, GuardedHttp

WARMUP_POSTS = 200
BODY = json.dumps({"token": "x", "team_id": "T0001", "api_app_id": "A0001",
                   "type": "event_callback", "event_id": "Ev0001", "event_time": 1_764_000_000,
                   "event": {"type": "message", "channel": "C0001", "user": "U0001",
                             "text": "the launch is on track for friday " * 10,
                             "ts": "1764000000.000100"}}).encode()[:600]
HEADERS = [("Content-Type", "application/json"),
           ("X-Slack-Request-Timestamp", "1764000000"),
           ("X-Slack-Signature", "v0=" + "0" * 64)]
MODES = ("close", "reuse", "close-name", "reuse-name")


def serve() -> None:
    """The child: an aiohttp server on 127.0.0.1 that acknowledges every
    POST; prints its port, then runs until its stdin closes."""
    import uvloop
    from aiohttp import web

    async def ack(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/events", ack)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    uvloop.run(main())


def cpu_s_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_mode(mode: str, port: int, server_pid: int, posts: int,
                   concurrency: int) -> dict[str, Any]:
    host = "localhost" if mode.endswith("-name") else "127.0.0.1"
    http = GuardedHttp(AddressPolicy(["127.0.0.0/8"]), keep_alive=mode.startswith("reuse"))
    url = f"http://{host}:{port}/events"

    async def poster(n: int) -> None:
        for _ in range(n):
            resp = await http.post(url, BODY, HEADERS, timeout_s=5)
            assert resp.status == 200, resp

    try:
        await asyncio.gather(*(poster(WARMUP_POSTS // concurrency) for _ in range(concurrency)))
        server0, cpu0, t0 = cpu_s_of(server_pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(poster(posts // concurrency) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        cpu, server = time.process_time() - cpu0, cpu_s_of(server_pid) - server0
    finally:
        await http.close()
    done = posts // concurrency * concurrency
    return {"mode": mode, "posts": done, "posts_per_s": done / wall,
            "client_cpu_us_per_post": cpu / done * 1e6,
            "server_cpu_us_per_post": server / done * 1e6}


async def bench(args: argparse.Namespace, port: int, server_pid: int) -> list[dict[str, Any]]:
    rows = []
    for r in range(args.rounds):
        for mode in args.modes:
            row = await run_mode(mode, port, server_pid, args.posts, args.concurrency)
            row["round"] = r + 1
            rows.append(row)
            print(f"round {r + 1} {mode:<10} {row['posts_per_s']:8,.0f} posts/s  "
                  f"client {row['client_cpu_us_per_post']:6.0f} CPU-us/post  "
                  f"server {row['server_cpu_us_per_post']:6.0f} CPU-us/post", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="close,reuse",
                        type=lambda s: [m for m in s.split(",") if m])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    child = subprocess.Popen([sys.executable, "-m", "bench.micro.outbound_keepalive", "--serve"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        if args.loop == "uvloop":
            import uvloop

            rows = uvloop.run(bench(args, port, child.pid))
        else:
            rows = asyncio.run(bench(args, port, child.pid))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=10)
    print(f"\nmedian of {args.rounds} rounds, {args.posts} posts each, "
          f"concurrency {args.concurrency}, {args.loop}:")
    print("| mode | posts/s | client CPU us/post | server CPU us/post |")
    print("|---|---|---|---|")
    for mode in args.modes:
        mine = [r for r in rows if r["mode"] == mode]
        med = {k: statistics.median(r[k] for r in mine)
               for k in ("posts_per_s", "client_cpu_us_per_post", "server_cpu_us_per_post")}
        print(f"| {mode} | {med['posts_per_s']:,.0f} | {med['client_cpu_us_per_post']:,.0f} | "
              f"{med['server_cpu_us_per_post']:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
