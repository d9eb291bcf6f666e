"""``python -m bench.webapi``: chat.postMessage through the Slack-compatible
Web API against the native REST post, on the same server and run.

What it does: starts ``parley api`` (its own data dir; PostgreSQL from
``--database-url`` / ``--pg-admin-url``, else embedded), creates one owner,
one workspace and one channel per client, creates and installs an app
(``chat:write``, ``channels:join``) whose bot joins those channels, then
runs two closed-loop phases of ``--duration`` seconds each, in the order
given by ``--order``: ``native`` (``POST /v1/workspaces/{w}/channels/{c}/messages``
with the owner's access token) and ``webapi`` (``POST /api/chat.postMessage``
with the bot token, a form body as slack_sdk sends it for most methods;
JSON with ``--json``).  Each client owns one channel, so the Web API's
per-channel limit (raised here through the server settings anyway) never
binds.  Message texts are drawn with a fixed seed from a word list, 6 to 40
words (about 40 to 250 characters), like chat.

Reported per phase: requests/s, latency p50/p90/p99 (client side, request
to response), errors, and CPU per request of the API process and of
PostgreSQL (CPU seconds over the window / requests), plus the generator's
CPU share (a generator near one full core means the client, not the
server, was the limit).  A JSON result goes to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS_DIR, git_revision, latency_summary, machine_info
from bench.provision import Provisioner
from bench.servers import Databases, ParleyProcess, postgres_cpu_s

SEED = 20_240_514
_VOCABULARY = ("the deploy of build finished green on staging and production after review "
               "please check logs metrics dashboard latency error rate release notes ticket "
               "customer incident resolved rollback migration database index query cache "
               "queue worker retry timeout alert page on-call handoff sprint planning standup "
               "today tomorrow thanks looks good to me approved merged shipping now")
WORDS = tuple(w for w in _VOCABULARY.split(" ") if w)  # a chat-like vocabulary
SERVER_SETTINGS = {  # limits out of the way: this measures the request path
    "PARLEY_WEBAPI_TIER_SCALE": "100000",
    "PARLEY_WEBAPI_POST_PER_CHANNEL_PER_S": "100000",
    "PARLEY_WEBAPI_POST_BURST": "100000",
}


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 40))) for _ in range(n)]


async def _client_loop(mode: str, http: httpx.AsyncClient, target: dict[str, Any],
                       deadline: float, bodies: list[str], lat_us: list[float],
                       errors: list[int], as_json: bool) -> None:
    i = 0
    while time.monotonic() < deadline:
        text = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        if mode == "native":
            r = await http.post(target["native_path"], json={"text": text},
                                headers=target["native_headers"])
            ok = r.status_code == 201
        else:
            args = {"channel": target["slack_channel"], "text": text}
            if as_json:
                r = await http.post("/api/chat.postMessage", json=args,
                                    headers=target["bot_headers"])
            else:
                r = await http.post("/api/chat.postMessage", data=args,
                                    headers=target["bot_headers"])
            ok = r.status_code == 200 and r.json().get("ok") is True
        lat_us.append((time.perf_counter() - t0) * 1e6)
        if not ok:
            errors.append(r.status_code)


def _worker(mode: str, api_url: str, targets: list[dict[str, Any]], start_at: float,
            duration: float, seed: int, as_json: bool) -> dict[str, Any]:
    """One generator process: its clients, closed loop, from ``start_at``."""
    import resource

    async def run() -> dict[str, Any]:
        lat: list[float] = []
        errors: list[int] = []
        bodies = texts(500, seed)
        limits = httpx.Limits(max_connections=len(targets) + 2)
        async with httpx.AsyncClient(base_url=api_url, timeout=30, limits=limits) as http:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            deadline = time.monotonic() + duration
            await asyncio.gather(*(_client_loop(mode, http, t, deadline, bodies, lat, errors,
                                                as_json) for t in targets))
        return {"latencies_us": lat, "errors": errors}

    before = resource.getrusage(resource.RUSAGE_SELF)
    out = asyncio.run(run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


async def _provision(api_url: str, clients: int) -> list[dict[str, Any]]:
    p = Provisioner(api_url)
    try:
        owner = await p.account(0)
        ws, _ = await p.workspace(owner, "Bench")
        channels = await p.channels([(owner, ws, f"bench-{i}") for i in range(clients)])
        manifest = {"display_information": {"name": "Bench bot"},
                    "oauth_config": {"scopes": {"bot": ["chat:write", "channels:join"]}}}
        app = await p.call("POST", f"/v1/workspaces/{ws}/apps", owner.token,
                           {"manifest": manifest})
        done = await p.call("POST", f"/v1/workspaces/{ws}/apps/{app['app']['id']}/install",
                            owner.token, {})
        bot = {"authorization": f"Bearer {done['bot_token']}"}
        from parley import slack_ids as ids

        targets = []
        for cid in channels:
            slack_channel = ids.channel("public", cid)
            r = await p.http.post("/api/conversations.join", data={"channel": slack_channel},
                                  headers=bot)
            if not r.json().get("ok"):
                raise RuntimeError(f"conversations.join: {r.text}")
            targets.append({
                "native_path": f"/v1/workspaces/{ws}/channels/{cid}/messages",
                "native_headers": {"authorization": f"Bearer {owner.token}"},
                "slack_channel": slack_channel, "bot_headers": bot})
        return targets
    finally:
        await p.close()


def _phase(mode: str, server: ParleyProcess, targets: list[dict[str, Any]], procs: int,
           duration: float, warmup: float, as_json: bool) -> dict[str, Any]:
    shares = [targets[i::procs] for i in range(procs) if targets[i::procs]]
    with concurrent.futures.ProcessPoolExecutor(len(shares)) as pool:
        if warmup > 0:
            start = time.time() + 1.0
            list(pool.map(_worker, [mode] * len(shares), [server.api_url] * len(shares), shares,
                          [start] * len(shares), [warmup] * len(shares),
                          range(len(shares)), [as_json] * len(shares)))
        start = time.time() + 1.0
        futures = [pool.submit(_worker, mode, server.api_url, share, start, duration,
                               SEED + i, as_json) for i, share in enumerate(shares)]
        time.sleep(max(0.0, start - time.time()))
        cpu0, pg0 = server.cpu_s(), postgres_cpu_s()
        time.sleep(duration)
        cpu1, pg1 = server.cpu_s(), postgres_cpu_s()
        results = [f.result() for f in futures]
    lat = [v for r in results for v in r["latencies_us"]]
    errors = [e for r in results for e in r["errors"]]
    n = len(lat)
    return {
        "mode": mode, "requests": n, "errors": len(errors),
        "error_statuses": sorted(set(errors))[:10], "requests_per_s": round(n / duration, 1),
        "latency": latency_summary(lat),
        "server_cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / n, 3) if n else None,
        "postgres_cpu_ms_per_request": round((pg1 - pg0) * 1000 / n, 3) if n else None,
        "server_cpu_share": round((cpu1 - cpu0) / duration, 2),
        "generator_cpu_share": round(sum(r["cpu_s"] for r in results) / duration, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.webapi", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients (channels)")
    ap.add_argument("--procs", type=int, default=2, help="generator processes")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before each phase")
    ap.add_argument("--order", default="native,webapi", help="phases, comma-separated")
    ap.add_argument("--json", action="store_true", help="JSON bodies instead of forms")
    ap.add_argument("--database-url", default="", help="an external PostgreSQL")
    ap.add_argument("--pg-admin-url", default="",
                    help="an admin DSN: a fresh database is created and dropped")
    ap.add_argument("--out", type=Path, default=None, help="result file (default bench/results/)")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-webapi-"))
    dbs = Databases(database_url=args.database_url, admin_url=args.pg_admin_url,
                    workdir=workdir)
    server = ParleyProcess("api", workdir=workdir, database_url=dbs.url,
                           jwt_secret=secrets.token_urlsafe(32), extra_env=SERVER_SETTINGS)
    try:
        targets = asyncio.run(_provision(server.api_url, args.clients))
        phases = [_phase(mode, server, targets, args.procs, args.duration, args.warmup,
                         args.json) for mode in args.order.split(",")]
    finally:
        server.stop()
        dbs.close()
    print(f"{'phase':8} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'api CPU ms/req':>15} {'pg CPU ms/req':>14} {'gen CPU':>8} {'errors':>7}")
    for p in phases:
        lat = p["latency"]
        print(f"{p['mode']:8} {p['requests_per_s']:9.1f} {lat['p50_ms']:8.2f} "
              f"{lat['p90_ms']:8.2f} {lat['p99_ms']:8.2f} {p['server_cpu_ms_per_request']:15.3f} "
              f"{p['postgres_cpu_ms_per_request']:14.3f} {p['generator_cpu_share']:8.2f} "
              f"{p['errors']:7d}")
    result = {"scenario": "webapi-post", "revision": git_revision(), "machine": machine_info(),
              "parameters": {k: v for k, v in vars(args).items() if k != "out"}
              | {"database": dbs.kind, "seed": SEED}, "phases": phases,
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = args.out or RESULTS_DIR / f"webapi-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"result: {out}", file=sys.stderr)
    return 0 if all(p["errors"] == 0 for p in phases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
