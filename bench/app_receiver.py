"""``python -m bench.app_receiver --port P``: the receiving apps of the
Events API benchmark (``bench.app_events``), every app on one aiohttp
server on loopback, told apart by path: ``POST /apps/{i}/events``.

Its own process, so its CPU is not the server's and it does not share an
event loop with the people's sockets.  Each request is answered as a Bolt
app over HTTP would be:

* ``url_verification``: echo the challenge (Parley checks a request URL
  this way before it sends any event to it);
* ``event_callback``: record (app, ``client_msg_id``, arrival wall time,
  slow) and answer 200 at once, or, for an app in the slow set, after
  sleeping ``sleep_s`` (a slow app: 2 s against Parley's 3 s timeout, so
  the request succeeds late and is never retried).

Signatures are not checked: that costs the app, not Parley.  The
benchmark drives the receiver over two control routes:

* ``POST /control/slow`` ``{"apps": [i, ...], "sleep_s": 2.0}``: the slow set;
* ``GET /control/records``: every event recorded since the last call
  (``[[app, client_msg_id, wall_s, slow], ...]``, then cleared) and the
  count of url_verification requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

Record = tuple[int, str, float, bool]


class Receivers:
    """The state of every app of one receiver process."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.slow: frozenset[int] = frozenset()
        self.sleep_s = 2.0
        self.verifications = 0
        self.undecodable = 0

    async def event(self, request: web.Request) -> web.StreamResponse:
        app = int(request.match_info["app"])
        body = await request.read()
        try:
            payload: dict[str, Any] = json.loads(body)
        except ValueError:
            self.undecodable += 1
            return web.Response(status=400)
        if payload.get("type") == "url_verification":
            self.verifications += 1
            return web.json_response({"challenge": payload.get("challenge")})
        now = time.time()
        event = payload.get("event") or {}
        slow = app in self.slow
        self.records.append((app, str(event.get("client_msg_id", "")), now, slow))
        if slow:
            await asyncio.sleep(self.sleep_s)
        return web.Response(status=200)

    async def set_slow(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.slow = frozenset(int(i) for i in body.get("apps", ()))
        self.sleep_s = float(body.get("sleep_s", self.sleep_s))
        return web.json_response({"slow": sorted(self.slow)})

    async def take_records(self, request: web.Request) -> web.StreamResponse:
        records, self.records = self.records, []
        return web.json_response({"records": records, "verifications": self.verifications,
                                  "undecodable": self.undecodable})


def application() -> web.Application:
    state = Receivers()
    app = web.Application(client_max_size=4 * 2**20)
    app.router.add_post("/apps/{app:[0-9]+}/events", state.event)
    app.router.add_post("/control/slow", state.set_slow)
    app.router.add_get("/control/records", state.take_records)
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.app_receiver", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    # access_log=None: a log line per event would cost more than the answer.
    web.run_app(application(), host="127.0.0.1", port=args.port, access_log=None,
                print=None, loop=loop_factory() if loop_factory else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
