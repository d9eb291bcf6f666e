"""Echo mode: every message comes back as it came (Autobahn conformance runs).

``python -m gateway.echo --port 9001`` serves on uvloop until interrupted.
Any upgrade is accepted; if the client offers Parley subprotocols the first
offered one is selected, otherwise none.  Text is echoed as text, binary as
binary.  Limits default to the gateway's (1 MiB messages): with them,
Autobahn's 9.* cases above 1 MiB end with close code 1009.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import Final

from gateway.handshake import UpgradeRequest
from gateway.transport import Accept, Reject, TransportLimits, WsTransport, serve
from gateway.websocket import WsLimits

__all__ = ["EchoHandler", "main", "run_echo"]

#: Subprotocols echo mode selects when offered (the first offered wins).
ECHO_SUBPROTOCOLS: Final = ("parley.msgpack.v1", "parley.json.v1")
_DEFAULT_FRAGMENTS_PER_MESSAGE: Final = 64


class EchoHandler:
    """A ConnectionHandler that echoes every message back."""

    async def on_upgrade(self, request: UpgradeRequest) -> Accept | Reject:
        offered = [p for p in request.subprotocols if p in ECHO_SUBPROTOCOLS]
        return Accept(subprotocol=offered[0] if offered else None)

    def on_open(self, conn: WsTransport) -> None:
        pass

    def on_message(self, conn: WsTransport, data: bytes | str) -> None:
        conn.send_message(data)

    def on_close(self, conn: WsTransport, code: int, reason: str) -> None:
        pass


def echo_transport_limits(ws_limits: WsLimits) -> TransportLimits:
    """Transport limits for echo mode: room for two echoed maximum messages.

    Otherwise an echo of a message larger than ``max_outbound_bytes`` would be
    treated as a slow consumer.
    """
    default = TransportLimits()
    return TransportLimits(
        max_outbound_bytes=max(default.max_outbound_bytes, 2 * ws_limits.max_message_bytes + 4096)
    )


async def run_echo(host: str, port: int, ws_limits: WsLimits) -> None:
    """Serve echo mode on ``host:port`` until cancelled."""
    server = await serve(EchoHandler(), host, port, echo_transport_limits(ws_limits), ws_limits)
    print(f"echo: listening on {host}:{server.port}", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await server.wait_closed()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = WsLimits()
    ap = argparse.ArgumentParser(prog="python -m gateway.echo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--max-message-bytes", type=int, default=defaults.max_message_bytes,
                    help="largest message (default %(default)s)")
    ap.add_argument("--max-frame-bytes", type=int, default=None,
                    help="largest frame (default: --max-message-bytes)")
    ap.add_argument("--max-fragments", type=int, default=None,
                    help="most fragments per message (default 64 with the default message "
                         "limit, else max-message-bytes / 64)")
    return ap.parse_args(argv)


def limits_from_args(args: argparse.Namespace) -> WsLimits:
    """The WsLimits the command line asks for."""
    message = args.max_message_bytes
    defaults = WsLimits()
    fragments = args.max_fragments
    if fragments is None:
        fragments = (defaults.max_fragments if message == defaults.max_message_bytes
                     else max(defaults.max_fragments, message // _DEFAULT_FRAGMENTS_PER_MESSAGE))
    return WsLimits(
        max_frame_bytes=args.max_frame_bytes if args.max_frame_bytes is not None else message,
        max_message_bytes=message,
        max_fragments=fragments,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(argv)
    limits = limits_from_args(args)
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(run_echo(args.host, args.port, limits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
