"""Peer server for the benchmarks, on websockets (see bench/peers/README.md).

One room: a message whose first byte is ``P`` goes to every other
connection (``websockets.broadcast``, which builds the frame once); any
other message is echoed to its sender.
"""

from __future__ import annotations

import argparse

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

SUBPROTOCOL = "parley.msgpack.v1"
ROOM: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    ROOM.add(ws)
    try:
        async for message in ws:
            if message[:1] in (b"P", "P"):
                broadcast([c for c in ROOM if c is not ws], message)
            else:
                await ws.send(message)
    finally:
        ROOM.discard(ws)


async def main(host: str, port: int) -> None:
    async with serve(handler, host, port, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                     compression=None, max_size=16 << 20, ping_interval=None,
                     open_timeout=30, backlog=4096) as server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvloop.run(main(args.host, args.port))
