"""``OutboundHttp`` with an SSRF guard: requests to URLs that apps choose.

Rules of this file (the port's contract, parley/ports/outbound.py):

* ``AddressPolicy`` is the one place that says which addresses may be
  reached.  An address is allowed when an allowed CIDR (the
  ``outbound_allowed_cidrs`` setting) holds it, or when it is a global
  unicast address of no special class.  IPv6 forms that embed an IPv4
  address (IPv4-mapped ``::ffff:0:0/96``, 6to4 ``2002::/16``, Teredo
  ``2001::/32``, NAT64 ``64:ff9b::/96``) are refused outright: whether the
  embedded address is safe depends on routing we cannot see.
* Theory of operation: resolve once, check every answer, connect to the
  first allowed one by address (TLS still verifies the name), check the
  connected peer again, send one request with ``Connection: close``, parse
  the answer with h11 (sans-IO) reading at most ``max_response_bytes`` of
  body.  A DNS answer that changes after the check cannot redirect the
  connection: the name is never resolved a second time.
* Redirects are answers like any other (never followed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
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


class GuardedHttp:
    """``OutboundHttp`` over asyncio streams and h11, one connection per
    request (apps are many and each gets few requests a second)."""

    def __init__(self, policy: AddressPolicy, *, resolver: Resolver = system_resolver,
                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self._resolve = resolver
        self._max = max_response_bytes
        self._ssl = ssl_context

    async def close(self) -> None:
        return None

    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]], *,
                   timeout_s: float) -> OutboundResponse:
        try:
            async with asyncio.timeout(timeout_s):
                return await self._post(url, body, headers)
        except TimeoutError as exc:
            raise OutboundTimeout(f"no answer within {timeout_s} s") from exc

    async def _post(self, url: str, body: bytes,
                    headers: Sequence[tuple[str, str]]) -> OutboundResponse:
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in {"http", "https"} or not host:
            raise OutboundFailed("not an absolute http(s) URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise OutboundFailed("bad port") from exc
        address = await self._checked_address(host, port)
        tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            tls = self._ssl or ssl.create_default_context()
        try:
            reader, writer = await asyncio.open_connection(
                address, port, ssl=tls, server_hostname=host if tls else None,
                limit=MAX_HEADER_BYTES)
        except (OSError, ssl.SSLError) as exc:
            raise OutboundFailed(f"connection to {address} failed: {exc}") from exc
        try:
            peer = writer.get_extra_info("peername")
            why = self.policy.refusal(str(peer[0])) if peer else "unknown peer"
            if why is not None:  # the connect-time check: the socket's real peer
                raise OutboundRefused(f"connected peer refused ({why})")
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            default_port = 443 if parts.scheme == "https" else 80
            host_header = host if port == default_port else f"{host}:{port}"
            if ":" in host and not host.startswith("["):
                host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
            return await self._exchange(reader, writer, target, host_header, body, headers)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _checked_address(self, host: str, port: int) -> str:
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
        reasons = []
        for a in answers:
            why = self.policy.refusal(a)
            if why is None:
                return a
            reasons.append(f"{a} ({why})")
        raise OutboundRefused(f"{host}: no allowed address: {', '.join(reasons) or 'none'}")

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        target: str, host: str, body: bytes,
                        headers: Sequence[tuple[str, str]]) -> OutboundResponse:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        out = conn.send(h11.Request(method="POST", target=target, headers=[
            ("Host", host), ("User-Agent", USER_AGENT), ("Content-Length", str(len(body))),
            ("Connection", "close"), *headers]))
        out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
        out += conn.send(h11.EndOfMessage()) or b""
        try:
            writer.write(out)
            await writer.drain()
            status = 0
            got: list[tuple[str, str]] = []
            chunks: list[bytes] = []
            size = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(16 * 1024))
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
                        break  # bounded: the rest is never read
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
                if status == 0 and isinstance(event, h11.ConnectionClosed):
                    break
            if status == 0:
                raise OutboundFailed("closed before an answer")
            return OutboundResponse(status=status, headers=tuple(got), body=b"".join(chunks))
        except h11.ProtocolError as exc:
            raise OutboundFailed(f"malformed answer: {exc}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise OutboundFailed(f"connection failed: {exc}") from exc
