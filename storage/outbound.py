"""``OutboundHttp`` with an SSRF guard: requests to URLs that apps choose.

Rules of this file (the port's contract, parley/ports/outbound.py):

* ``AddressPolicy`` is the one place that says which addresses may be
  reached.  An address is allowed when an allowed CIDR (the
  ``outbound_allowed_cidrs`` setting) holds it, or when it is a global
  unicast address of no special class.  IPv6 forms that embed an IPv4
  address (IPv4-mapped ``::ffff:0:0/96``, 6to4 ``2002::/16``, Teredo
  ``2001::/32``, NAT64 ``64:ff9b::/96``) are refused outright: whether the
  embedded address is safe depends on routing we cannot see.
* Theory of operation: each request resolves the name once and checks
  every answer.  It then takes an idle keep-alive connection of the same
  (scheme, host, port) whose address is among the answers this check
  allowed, or else connects to the first allowed answer by address (TLS
  still verifies the name) and checks the connected peer again.  It sends
  one request (HTTP/1.1, keep-alive), parses the answer with h11 (sans-IO)
  reading at most ``max_response_bytes`` of body.  A DNS answer that
  changes after the check cannot redirect a connection: the name is never
  resolved a second time for it, and a connection never changes its peer.
* A connection goes back to the pool only when h11 has both sides ``IDLE``
  after ``start_next_cycle()`` and no received byte is left unparsed: the
  answer was read to its end (not cut at ``max_response_bytes``), neither
  side asked to close, no error, no timeout.  Anything else closes it.
  Known limit: bytes a server sends on an idle connection before closing
  it (an unsolicited ``408``) are not seen until the next request, which
  then gets them as its answer (a failed try; the event is retried).
* The pool is bounded (``IDLE_PER_KEY``, ``IDLE_TOTAL``) and an idle
  connection lives at most ``IDLE_LIFETIME_S``; ``close()`` closes them.
* A reused connection that fails before any byte of the answer arrived
  (the server closed it while it was idle) is retried once on a fresh
  connection within the same time limit.  The server may, rarely, have
  received the first copy: delivery is at least once, and the Events API's
  stable ``event_id`` makes such a duplicate harmless to the app.
* Redirects are answers like any other (never followed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

from parley.ports.outbound import (
    OutboundFailed,
    OutboundRefused,
    OutboundResponse,
    OutboundTimeout,
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_RESPONSE_BYTES = 64 * 1024  # of body; an app's answer to an event is a few bytes
MAX_HEADER_BYTES = 16 * 1024
READ_CHUNK_BYTES = 16 * 1024
# The pool's bounds.  Per key: the dispatcher has at most
# ``app_events_concurrency_per_app`` (default 4) requests in flight per app,
# so 8 idle connections cover an app's bursts.  In all: as many as the
# dispatcher has pairs in flight (app_dispatch.MAX_IN_FLIGHT, 1,024), so a
# busy dispatcher keeps a connection for each of them; 1,024 descriptors of
# the 20,000 open-file limit (the dispatcher's own process by default; an
# API process with the dispatcher inline also serves people's sockets).
IDLE_PER_KEY = 8  # connections
IDLE_TOTAL = 1024  # connections
# An idle connection is never reused after this.  Servers close idle
# connections after their own timeout (gunicorn 2 s, uvicorn, Node.js and
# Apache 5 s, nginx 75 s); one the server closed while idle is noticed (EOF)
# before reuse and dropped, and the rare close that crosses our request is
# covered by the stale retry, so this bounds descriptors held for quiet
# apps rather than racing those timeouts (aiohttp's client keeps 15 s,
# httpx 5 s).
IDLE_LIFETIME_S = 30.0
# Expired idle connections are closed in batches this far apart (one timer
# per batch, not one per connection); take() never reuses an expired one.
SWEEP_GRANULARITY_S = 1.0
# close() waits at most this for idle connections to finish closing (a TLS
# peer may never answer our close_notify; shutdown must not wait on apps).
CLOSE_WAIT_S = 1.0
USER_AGENT = "ParleyEvents/1.0"
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"),
                                ipaddress.ip_address("fd00:ec2::254")})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_EMBEDDING_V6 = (
    ("ipv4_mapped", ipaddress.ip_network("::ffff:0:0/96")),
    ("6to4", ipaddress.ip_network("2002::/16")),
    ("teredo", ipaddress.ip_network("2001::/32")),
    ("nat64", ipaddress.ip_network("64:ff9b::/96")),
)


class AddressPolicy:
    """Which addresses outbound requests may reach (see the file's rules)."""

    __slots__ = ("_allowed",)

    def __init__(self, allowed_cidrs: Sequence[str] = ()) -> None:
        self._allowed = tuple(ipaddress.ip_network(c, strict=False) for c in allowed_cidrs)

    def refusal(self, address: str | IpAddress) -> str | None:
        """Why ``address`` is refused (a class name), or None when allowed."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address):
            for name, net in _EMBEDDING_V6:
                if ip in net:
                    return name
        if any(ip.version == net.version and ip in net for net in self._allowed):
            return None
        if ip in METADATA_ADDRESSES:
            return "metadata"
        if ip.is_loopback:
            return "loopback"
        if ip.is_link_local:
            return "link_local"
        if ip.is_multicast:
            return "multicast"
        if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
            return "cgnat"
        if ip.is_unspecified or ip.is_reserved:
            return "reserved"
        if ip.is_private or not ip.is_global:  # RFC 1918, ULA, documentation, benchmarking
            return "private"
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


PoolKey = tuple[str, str, int]  # (scheme, host, port) as the URL gives them


@dataclass(frozen=True, slots=True)
class _Target:
    """What one request's URL names."""

    key: PoolKey
    host: str  # the name (or literal) to resolve and to verify TLS against
    port: int
    path: str  # with the query
    host_header: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in {"http", "https"} or not host:
            raise OutboundFailed("not an absolute http(s) URL")
        default_port = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default_port
        except ValueError as exc:
            raise OutboundFailed("bad port") from exc
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
        host_header = shown if port == default_port else f"{shown}:{port}"
        return cls((parts.scheme, host, port), host, port, path, host_header)


@dataclass(eq=False, slots=True)  # identity hash: a key of GuardedHttp._ages
class _Conn:
    """One connection to an address that passed the policy, with its h11
    state (which outlives a request/response cycle on a kept connection)."""

    key: PoolKey
    address: str  # the checked address it was opened to
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    proto: h11.Connection = field(default_factory=lambda: h11.Connection(
        h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES))
    idle_since: float = 0.0  # loop.time() when it last went back to the pool
    answer_started: bool = False  # a byte of the current answer arrived

    def usable(self) -> bool:
        """False once the peer closed or the transport failed (seen while
        idle: a server's keep-alive timeout)."""
        return not (self.writer.is_closing() or self.reader.at_eof()
                    or self.reader.exception() is not None)

    def close_now(self) -> None:
        self.writer.close()  # the transport finishes closing on its own

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class GuardedHttp:
    """``OutboundHttp`` over asyncio streams and h11, with a bounded pool of
    idle keep-alive connections (see the file's rules).

    ``keep_alive=False`` keeps the old behaviour (``Connection: close``, a
    connection per request), for A/B measurements.  The bounds are
    constructor arguments so that tests can make them small."""

    def __init__(self, policy: AddressPolicy, *, resolver: Resolver = system_resolver,
                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                 ssl_context: ssl.SSLContext | None = None, keep_alive: bool = True,
                 idle_per_key: int = IDLE_PER_KEY, idle_total: int = IDLE_TOTAL,
                 idle_lifetime_s: float = IDLE_LIFETIME_S) -> None:
        self.policy = policy
        self._resolve = resolver
        self._max = max_response_bytes
        self._ssl = ssl_context
        self._keep_alive = keep_alive
        self._per_key = idle_per_key
        self._total = idle_total
        self._lifetime_s = idle_lifetime_s
        # Idle connections: per key, oldest first (the newest is reused
        # first, the oldest expires first); and all of them in the order they
        # went idle (dict order), for the total bound and the sweep.
        self._idle: dict[PoolKey, list[_Conn]] = {}
        self._ages: dict[_Conn, None] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def idle(self) -> int:
        """Idle connections held now (for metrics and tests)."""
        return len(self._ages)

    async def close(self) -> None:
        """Close every idle connection; idempotent.  Requests after this
        still work, each on a connection of its own that is not kept."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        conns = list(self._ages)
        self._idle.clear()
        self._ages.clear()
        for c in conns:
            c.close_now()
        with contextlib.suppress(TimeoutError):  # closed either way; only the wait is cut
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.gather(*(c.close() for c in conns))

    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]], *,
                   timeout_s: float, fresh: bool = False) -> OutboundResponse:
        try:
            async with asyncio.timeout(timeout_s):  # the retry included
                return await self._post(url, body, headers, fresh)
        except TimeoutError as exc:
            raise OutboundTimeout(f"no answer within {timeout_s} s") from exc

    async def _post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]],
                    fresh: bool) -> OutboundResponse:
        target = _Target.parse(url)
        allowed = await self._checked_addresses(target.host, target.port)
        head = [("Host", target.host_header), ("User-Agent", USER_AGENT),
                ("Content-Length", str(len(body)))]
        if not self._keep_alive:
            head.append(("Connection", "close"))
        try:
            request = h11.Request(method="POST", target=target.path, headers=[*head, *headers])
        except h11.LocalProtocolError as exc:  # a header h11 will not send
            raise OutboundFailed(f"bad request: {exc}") from exc
        # ``fresh``: a request that must not be sent twice (a slash command
        # has no event_id to drop a copy by) takes no kept connection, so
        # it is never resent after a stale one.
        conn = None if fresh else self._take(target.key, allowed)
        if conn is not None:
            try:
                return await self._use(conn, request, body)
            except OutboundFailed:
                if conn.answer_started:
                    raise
                # Stale: the server closed it while idle and we had not seen
                # it yet.  Once more, on a fresh connection.
        conn = await self._connect(target, allowed[0])
        return await self._use(conn, request, body)

    async def _checked_addresses(self, host: str, port: int) -> list[str]:
        """The answers for ``host`` that the policy allows, in the resolver's
        order; ``OutboundRefused`` when there is none."""
        try:
            literal: IpAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            answers = [str(literal)]
        else:
            try:
                answers = await self._resolve(host, port)
            except OSError as exc:
                raise OutboundFailed(f"cannot resolve {host}: {exc}") from exc
        allowed: list[str] = []
        reasons = []
        for a in answers:
            why = self.policy.refusal(a)
            if why is None:
                allowed.append(a)
            else:
                reasons.append(f"{a} ({why})")
        if not allowed:
            raise OutboundRefused(
                f"{host}: no allowed address: {', '.join(reasons) or 'none'}")
        return allowed

    async def _connect(self, target: _Target, address: str) -> _Conn:
        tls: ssl.SSLContext | None = None
        if target.key[0] == "https":
            tls = self._ssl or ssl.create_default_context()
        try:
            reader, writer = await asyncio.open_connection(
                address, target.port, ssl=tls, server_hostname=target.host if tls else None,
                limit=MAX_HEADER_BYTES)
        except (OSError, ssl.SSLError) as exc:
            raise OutboundFailed(f"connection to {address} failed: {exc}") from exc
        conn = _Conn(target.key, address, reader, writer)
        peer = writer.get_extra_info("peername")
        why = self.policy.refusal(str(peer[0])) if peer else "unknown peer"
        if why is not None:  # the connect-time check: the socket's real peer
            await conn.close()
            raise OutboundRefused(f"connected peer refused ({why})")
        return conn

    async def _use(self, conn: _Conn, request: h11.Request, body: bytes) -> OutboundResponse:
        """One exchange on ``conn``; then back to the pool, or closed."""
        keep = False
        try:
            response, keep = await self._exchange(conn, request, body)
            return response
        finally:  # an error, a timeout (cancellation) or a cut answer: closed
            if keep:
                self._put(conn)
            else:
                await conn.close()

    async def _exchange(self, conn: _Conn, request: h11.Request,
                        body: bytes) -> tuple[OutboundResponse, bool]:
        """The answer, and whether the connection may be kept."""
        h = conn.proto
        conn.answer_started = False
        out = (h.send(request) or b"") + (h.send(h11.Data(data=body)) or b"")
        out += h.send(h11.EndOfMessage()) or b""
        status = 0
        got: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        size = 0
        complete = False
        try:
            conn.writer.write(out)
            await conn.writer.drain()
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.reader.read(READ_CHUNK_BYTES)
                    conn.answer_started = conn.answer_started or bool(data)
                    h.receive_data(data)  # b"" is the end of the stream
                    continue
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    got = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                           for k, v in event.headers]
                elif isinstance(event, h11.Data):
                    take = event.data[:self._max - size]
                    chunks.append(bytes(take))
                    size += len(take)
                    if size >= self._max:
                        break  # bounded: the rest is never read (nor the connection kept)
                elif isinstance(event, h11.EndOfMessage):
                    complete = True
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    break
        except h11.ProtocolError as exc:
            if not conn.answer_started:  # h11's word for an EOF before any byte
                raise OutboundFailed("closed before an answer") from exc
            raise OutboundFailed(f"malformed answer: {exc}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise OutboundFailed(f"connection failed: {exc}") from exc
        if status == 0:
            raise OutboundFailed("closed before an answer")
        keep = False
        if complete and h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
            keep = (h.states == {h11.CLIENT: h11.IDLE, h11.SERVER: h11.IDLE}
                    and h.trailing_data == (b"", False))
        return OutboundResponse(status=status, headers=tuple(got),
                                body=b"".join(chunks)), keep

    # -- the pool -------------------------------------------------------------

    def _take(self, key: PoolKey, allowed: list[str]) -> _Conn | None:
        """The newest usable idle connection of ``key`` to an address this
        request's check allowed, removed from the pool; None when there is
        none.  Connections passed over on the way are closed: expired, closed
        by the server, or to an address the name no longer resolves to."""
        stack = self._idle.get(key)
        if not stack:
            return None
        now = asyncio.get_running_loop().time()
        found = None
        while stack and found is None:
            conn = stack.pop()
            del self._ages[conn]
            if (now - conn.idle_since < self._lifetime_s and conn.usable()
                    and conn.address in allowed):
                found = conn
            else:
                conn.close_now()
        if not stack:
            del self._idle[key]
        return found

    def _put(self, conn: _Conn) -> None:
        """Back to the pool after a complete exchange, within the bounds
        (the oldest idle connection of the key, or of all, makes room)."""
        if self._closed or not self._keep_alive or self._per_key < 1 or self._total < 1:
            conn.close_now()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        stack = self._idle.setdefault(conn.key, [])
        if len(stack) >= self._per_key:
            self._drop(stack[0])
        if len(self._ages) >= self._total:
            self._drop(next(iter(self._ages)))
        stack = self._idle.setdefault(conn.key, [])  # _drop may have removed it
        stack.append(conn)
        self._ages[conn] = None
        self._arm_sweep(loop)

    def _drop(self, conn: _Conn) -> None:
        """Remove an idle connection from the pool and close it."""
        stack = self._idle[conn.key]
        stack.remove(conn)
        if not stack:
            del self._idle[conn.key]
        del self._ages[conn]
        conn.close_now()

    def _arm_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None and self._ages:
            oldest = next(iter(self._ages))
            self._sweeper = loop.call_at(
                oldest.idle_since + self._lifetime_s + SWEEP_GRANULARITY_S, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the idle connections that expired (they went idle in
        order, so they are the first ones of ``_ages``)."""
        self._sweeper = None
        now = loop.time()
        while self._ages:
            oldest = next(iter(self._ages))
            if now - oldest.idle_since < self._lifetime_s:
                break
            self._drop(oldest)
        self._arm_sweep(loop)
