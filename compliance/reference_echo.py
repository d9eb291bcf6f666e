"""Known-good RFC 6455 echo server, used ONLY to validate the Autobahn harness.

It is built on the ``websockets`` library (a dev dependency) and mirrors the
command line of ``python -m gateway.echo`` so that ``compliance/autobahn.py``
can drive either one::

    python compliance/reference_echo.py --port 9001 [--host 127.0.0.1]
                                        [--max-message-bytes 1048576]

``--max-message-bytes`` defaults to 1 MiB, like the gateway, so that the 9.*
large-message cases exercise the close-with-1009 path; ``0`` disables the
limit.  websockets also caps a message at 4096 fragments by default (and
closes with 1009 "too many fragments"), which would mask the size limit in
the 9.3/9.4 cases that send 4 MiB in 64..1024-byte fragments, so that cap is
raised to ``--max-fragments`` (default 1 Mi, i.e. off in practice).
Compression is off (cases 1-10 never negotiate permessage-deflate) and
so are keepalive pings, which would only add noise to the fuzzing reports.

Nothing in Parley imports this module; it is not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import websockets.asyncio.messages
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
DEFAULT_MAX_FRAGMENTS = 1 << 20


async def echo(connection: ServerConnection) -> None:
    """Send every message back unchanged, preserving text vs. binary."""
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        # Protocol errors (bad UTF-8, oversized message, ...) end here after
        # websockets has already sent the right close frame.
        pass


async def run(host: str, port: int, max_message_bytes: int | None) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        host,
        port,
        max_size=max_message_bytes,
        compression=None,
        ping_interval=None,
    ):
        limit = "unlimited" if max_message_bytes is None else f"{max_message_bytes} bytes"
        print(f"reference echo listening on ws://{host}:{port} (max message {limit})", flush=True)
        await stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest accepted message (default: 1 MiB); 0 means no limit",
    )
    parser.add_argument(
        "--max-fragments",
        type=int,
        default=DEFAULT_MAX_FRAGMENTS,
        help="largest number of frames in one message (websockets' own default: 4096)",
    )
    args = parser.parse_args(argv)
    # Read by websockets at run time (it is also settable by WEBSOCKETS_MAX_FRAGMENTS,
    # but only before import).
    websockets.asyncio.messages.MAX_FRAGMENTS = args.max_fragments
    limit: int | None = args.max_message_bytes or None
    asyncio.run(run(args.host, args.port, limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
