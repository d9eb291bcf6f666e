"""Peer server for the benchmarks, on picows (see bench/peers/README.md).

One room: a message whose first byte is ``P`` goes to every other
connection; any other message is echoed to its sender.
"""

from __future__ import annotations

import argparse

import uvloop
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

SUBPROTOCOL = "parley.msgpack.v1"
ROOM: set[WSTransport] = set()


class Peer(WSListener):  # type: ignore[misc]
    def on_ws_connected(self, transport: WSTransport) -> None:
        ROOM.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        ROOM.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.BINARY or kind == WSMsgType.TEXT:
            data = frame.get_payload_as_bytes()
            if data[:1] == b"P":
                for other in ROOM:
                    if other is not transport:
                        other.send(WSMsgType.BINARY, data)
            else:
                transport.send(kind, data)
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


def factory(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
    offered = request.headers.get("sec-websocket-protocol", "") or ""
    headers = {"Sec-WebSocket-Protocol": SUBPROTOCOL} if SUBPROTOCOL in offered else {}
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(headers), Peer())


async def main(host: str, port: int) -> None:
    server = await ws_create_server(factory, host, port, max_frame_size=16 << 20,
                                    websocket_handshake_timeout=30, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvloop.run(main(args.host, args.port))
