"""Peer server for the benchmarks, on aiohttp (see bench/peers/README.md).

One room: a message whose first byte is ``P`` goes to every other
connection; any other message is echoed to its sender.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiohttp import WSMsgType, web

SUBPROTOCOL = "parley.msgpack.v1"
ROOM: set[web.WebSocketResponse] = set()


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), compress=False,
                               max_msg_size=16 << 20, autoping=True, heartbeat=None)
    await ws.prepare(request)
    ROOM.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
                if data[:1] == b"P":
                    for other in list(ROOM):
                        if other is not ws and not other.closed:
                            await other.send_bytes(data)
                else:
                    await ws.send_bytes(data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
    finally:
        ROOM.discard(ws)
    return ws


async def main(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvloop.run(main(args.host, args.port))
