"""The SSRF guard of outbound requests (storage/outbound.py): every refused
address class, literal and resolved; redirects never followed; a DNS
answer that changes between the check and the connection; bounded
answers and time.  Then the keep-alive pool, against an h11 server on
loopback that counts its connections: reuse per key, what is never kept
(``Connection: close``, a cut answer, a timeout), the stale retry, and the
pool's bounds."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import h11
import pytest
from aiohttp import web

from parley.ports.outbound import OutboundFailed, OutboundRefused, OutboundTimeout
from storage.outbound import SWEEP_GRANULARITY_S, AddressPolicy, GuardedHttp

REFUSED = [
    ("127.0.0.1", "loopback"), ("127.10.0.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.10.1", "link_local"), ("fe80::1", "link_local"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("100.64.0.1", "cgnat"), ("100.127.255.254", "cgnat"),
    ("224.0.0.1", "multicast"), ("239.1.2.3", "multicast"), ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "ipv4_mapped"), ("::ffff:8.8.8.8", "ipv4_mapped"),
    ("2002:7f00:1::1", "6to4"), ("2002:808:808::1", "6to4"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"), ("64:ff9b::a00:1", "nat64"),
    ("0.0.0.0", "reserved"), ("240.0.0.1", "reserved"), ("192.0.2.1", "private"),
]


@pytest.mark.parametrize("address,why", REFUSED)
def test_each_refused_class_is_named(address: str, why: str) -> None:
    assert AddressPolicy().refusal(address) == why


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_unicast_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(address) is None


def test_allowed_cidrs_open_private_ranges_but_never_embedded_ipv4() -> None:
    policy = AddressPolicy(["127.0.0.0/8", "10.0.0.0/8"])
    assert policy.refusal("127.0.0.1") is None and policy.refusal("10.9.9.9") is None
    assert policy.refusal("192.168.0.1") == "private"
    assert policy.refusal("169.254.169.254") == "metadata"
    assert policy.refusal("::ffff:127.0.0.1") == "ipv4_mapped"


def resolver_of(*answers: list[str]) -> tuple[Callable[[str, int], Awaitable[list[str]]],
                                              list[str]]:
    """A resolver that gives ``answers`` in turn (the last one from then on)."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    return resolve, asked


@pytest.fixture
async def app_server() -> AsyncIterator[tuple[int, list[web.Request]]]:
    seen: list[web.Request] = []

    async def ok(request: web.Request) -> web.Response:
        seen.append(request)
        await request.read()
        return web.Response(text="ok", headers={"X-Got": request.headers["Host"]})

    async def redirect(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(status=302, headers={"Location": "http://169.254.169.254/latest/"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1_000_000)

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/slow", slow)
    app.router.add_post("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def test_loopback_is_refused_without_the_allowance(
        app_server: tuple[int, list[web.Request]]) -> None:
    port, seen = app_server
    http = GuardedHttp(AddressPolicy())
    with pytest.raises(OutboundRefused, match="loopback"):
        await http.post(f"http://127.0.0.1:{port}/ok", b"{}", [], timeout_s=2)
    resolve, _ = resolver_of(["127.0.0.1"])
    with pytest.raises(OutboundRefused, match="loopback"):
        await GuardedHttp(AddressPolicy(), resolver=resolve).post(
            f"http://app.example:{port}/ok", b"{}", [], timeout_s=2)
    assert seen == []


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254", "100.64.1.1", "224.0.0.5",
                                     "::ffff:127.0.0.1", "2002:7f00:1::1", "fe80::1"])
async def test_a_name_resolving_to_a_refused_address_is_never_contacted(address: str) -> None:
    resolve, asked = resolver_of([address])
    http = GuardedHttp(AddressPolicy(["127.0.0.0/8"]), resolver=resolve)
    with pytest.raises(OutboundRefused):
        await http.post("http://app.example/events", b"{}", [], timeout_s=2)
    assert asked == ["app.example"]


async def test_every_answer_is_checked_and_an_allowed_one_is_used(
        app_server: tuple[int, list[web.Request]]) -> None:
    port, seen = app_server
    resolve, _ = resolver_of(["10.0.0.1", "127.0.0.1"])
    http = GuardedHttp(AddressPolicy(["127.0.0.0/8"]), resolver=resolve)
    resp = await http.post(f"http://app.example:{port}/ok", b"{}", [], timeout_s=2)
    assert resp.status == 200 and resp.header("x-got") == f"app.example:{port}"
    assert len(seen) == 1


async def test_a_dns_answer_that_changes_after_the_check_is_not_followed(
        app_server: tuple[int, list[web.Request]]) -> None:
    """Rebinding: the first answer passes, every later one is the metadata
    address.  The connection goes to the checked address; the name is
    resolved once."""
    port, seen = app_server
    resolve, asked = resolver_of(["127.0.0.1"], ["169.254.169.254"])
    http = GuardedHttp(AddressPolicy(["127.0.0.0/8"]), resolver=resolve)
    resp = await http.post(f"http://rebind.example:{port}/ok", b"{}", [], timeout_s=2)
    assert resp.status == 200 and resp.header("x-got") == f"rebind.example:{port}"
    assert asked == ["rebind.example"] and len(seen) == 1  # resolved once, for the check
    # The next request resolves again, gets the new answer, and is refused.
    with pytest.raises(OutboundRefused, match="metadata"):
        await http.post(f"http://rebind.example:{port}/ok", b"{}", [], timeout_s=2)
    assert len(asked) == 2 and len(seen) == 1
    # And the other way round: a refused first answer is final, however the
    # name would resolve a moment later.
    resolve, asked = resolver_of(["169.254.169.254"], ["127.0.0.1"])
    with pytest.raises(OutboundRefused, match="metadata"):
        await GuardedHttp(AddressPolicy(["127.0.0.0/8"]), resolver=resolve).post(
            f"http://rebind.example:{port}/ok", b"{}", [], timeout_s=2)
    assert asked == ["rebind.example"] and len(seen) == 1


async def test_a_redirect_to_a_refused_address_is_not_followed(
        app_server: tuple[int, list[web.Request]]) -> None:
    port, seen = app_server
    http = GuardedHttp(AddressPolicy(["127.0.0.0/8"]))
    resp = await http.post(f"http://127.0.0.1:{port}/redirect", b"{}", [], timeout_s=2)
    assert resp.status == 302 and resp.header("location") == "http://169.254.169.254/latest/"
    assert len(seen) == 1  # one request, to the URL given


async def test_answers_are_bounded_in_time_and_size(
        app_server: tuple[int, list[web.Request]]) -> None:
    port, _ = app_server
    http = GuardedHttp(AddressPolicy(["127.0.0.0/8"]), max_response_bytes=1024)
    with pytest.raises(OutboundTimeout):
        await http.post(f"http://127.0.0.1:{port}/slow", b"{}", [], timeout_s=0.3)
    resp = await http.post(f"http://127.0.0.1:{port}/big", b"{}", [], timeout_s=2)
    assert resp.status == 200 and len(resp.body) == 1024


async def test_connection_failures_are_typed() -> None:
    http = GuardedHttp(AddressPolicy(["127.0.0.0/8"]))
    with pytest.raises(OutboundFailed):
        await http.post("http://127.0.0.1:1/none", b"{}", [], timeout_s=2)
    with pytest.raises(OutboundFailed):
        await http.post("ftp://127.0.0.1/none", b"{}", [], timeout_s=2)


# -- keep-alive ---------------------------------------------------------------

LOOPBACK = AddressPolicy(["127.0.0.0/8"])


class CountingServer:
    """HTTP/1.1 on loopback (h11, keep-alive) that counts connections.

    Paths: ``/ok`` 200; ``/close`` 200 with ``Connection: close``; ``/big``
    a 1 MB body; ``/slow`` answers after 5 s; ``/hold`` after 0.1 s;
    ``/drop`` closes without an answer; ``/drop-reused`` and
    ``/partial-reused`` answer the first request of a connection and, on a
    later one, close without an answer or after half a status line;
    ``/drop-then-stall`` drops a reused one and stalls 5 s on the next
    connection.  With
    ``idle_close_s`` a connection idle that long is closed (a server's
    keep-alive timeout)."""

    def __init__(self, idle_close_s: float | None = None) -> None:
        self.idle_close_s = idle_close_s
        self.peers: list[str] = []  # our address that each connection reached
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self.closed = 0  # connections that ended
        self.port = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = asyncio.Condition()  # notified when ``closed`` grows
        self.stall = False  # /drop-then-stall dropped one: stall the next

    @property
    def connections(self) -> int:
        return len(self.peers)

    async def start(self, *hosts: str, tls: ssl.SSLContext | None = None) -> None:
        for host in hosts or ("127.0.0.1",):  # the same port on each address
            server = await asyncio.start_server(self._accept, host, self.port, ssl=tls)
            self.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def until_closed(self, n: int) -> None:
        async with asyncio.timeout(2), self._ended:
            await self._ended.wait_for(lambda: self.closed >= n)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("sockname")[0])
        conn = h11.Connection(h11.SERVER)
        try:
            for n in range(1_000_000):
                idle = self.idle_close_s if n else None
                try:
                    event = await self._next(conn, reader, idle)
                except TimeoutError:
                    return  # the keep-alive timeout
                if not isinstance(event, h11.Request):
                    return
                while not isinstance(await self._next(conn, reader, None), h11.EndOfMessage):
                    pass
                path = event.target.decode()
                self.requests.append((path, {k.decode(): v.decode() for k, v in event.headers}))
                if not await self._answer(conn, writer, path, reused=n > 0):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        finally:
            writer.close()
            async with self._ended:
                self.closed += 1
                self._ended.notify_all()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader,
                    idle_s: float | None) -> object:
        while (event := conn.next_event()) is h11.NEED_DATA:
            async with asyncio.timeout(idle_s):
                conn.receive_data(await reader.read(65536))
        return event

    async def _answer(self, conn: h11.Connection, writer: asyncio.StreamWriter, path: str,
                      *, reused: bool) -> bool:
        """Send the answer; False when the connection ends instead."""
        body, headers = b"ok", []
        if path == "/close":
            headers = [("Connection", "close")]
        elif path == "/big":
            body = b"x" * 1_000_000
        elif path == "/slow":
            await asyncio.sleep(5)
        elif path == "/hold":
            await asyncio.sleep(0.1)
        elif path == "/drop" or (path == "/drop-reused" and reused):
            return False
        elif path == "/drop-then-stall":
            if reused:
                self.stall = True
                return False
            if self.stall:  # the retry's fresh connection
                await asyncio.sleep(5)
        elif path == "/partial-reused" and reused:
            writer.write(b"HTTP/1.1 200 O")
            await writer.drain()
            return False
        writer.write(conn.send(h11.Response(status_code=200, headers=[
            ("Content-Length", str(len(body))), *headers])) or b"")
        writer.write(conn.send(h11.Data(data=body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        return True


@pytest.fixture
async def server() -> AsyncIterator[CountingServer]:
    s = CountingServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def post(http: GuardedHttp, url: str, timeout_s: float = 2) -> bytes:
    resp = await http.post(url, b"{}", [], timeout_s=timeout_s)
    assert resp.status == 200
    return resp.body


async def test_posts_to_one_url_share_one_connection(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    url = f"http://127.0.0.1:{server.port}/ok"
    for _ in range(3):
        assert await post(http, url) == b"ok"
    assert server.connections == 1 and len(server.requests) == 3 and http.idle == 1
    assert all("Connection" not in h and "connection" not in h for _, h in server.requests)
    await http.close()


async def test_a_connection_is_reused_only_for_its_scheme_host_and_port(
        server: CountingServer) -> None:
    """Same address, another name: another key, another connection."""
    resolve, _ = resolver_of(["127.0.0.1"])
    http = GuardedHttp(LOOPBACK, resolver=resolve)
    await post(http, f"http://127.0.0.1:{server.port}/ok")
    await post(http, f"http://app.example:{server.port}/ok")
    await post(http, f"http://app.example:{server.port}/ok")
    assert server.connections == 2 and http.idle == 2
    await http.close()


async def test_a_pooled_connection_is_used_only_for_an_address_the_check_allowed() -> None:
    """The name now resolves to another (allowed) address: the pooled
    connection to the old one is not used for it, and is closed."""
    s = CountingServer()
    await s.start("127.0.0.1", "127.0.0.2")
    try:
        resolve, asked = resolver_of(["127.0.0.1"], ["127.0.0.2"])
        http = GuardedHttp(LOOPBACK, resolver=resolve)
        await post(http, f"http://moved.example:{s.port}/ok")
        await post(http, f"http://moved.example:{s.port}/ok")
        assert s.peers == ["127.0.0.1", "127.0.0.2"] and len(asked) == 2
        assert http.idle == 1
        await s.until_closed(1)
        await http.close()
    finally:
        await s.stop()


async def test_keep_alive_off_sends_connection_close_each_time(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK, keep_alive=False)
    for _ in range(2):
        await post(http, f"http://127.0.0.1:{server.port}/ok")
    assert server.connections == 2 and http.idle == 0
    assert [h.get("connection") for _, h in server.requests] == ["close", "close"]


async def test_an_answer_with_connection_close_is_not_kept(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    for _ in range(3):
        await post(http, f"http://127.0.0.1:{server.port}/close")
    assert server.connections == 3 and http.idle == 0


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    s = CountingServer(idle_close_s=0.05)
    await s.start()
    try:
        http = GuardedHttp(LOOPBACK)
        await post(http, f"http://127.0.0.1:{s.port}/ok")
        await s.until_closed(1)
        await asyncio.sleep(0.05)  # the client's loop sees the EOF
        await post(http, f"http://127.0.0.1:{s.port}/ok")
        assert s.connections == 2 and len(s.requests) == 2
        await http.close()
    finally:
        await s.stop()


async def test_a_stale_reused_connection_is_retried_once_on_a_fresh_one(
        server: CountingServer) -> None:
    """The server drops the second request of a connection without a byte
    of answer (its close crossed our request): it is sent again on a new
    connection, and the server saw it twice (at least once)."""
    http = GuardedHttp(LOOPBACK)
    url = f"http://127.0.0.1:{server.port}/drop-reused"
    await post(http, url)
    await post(http, url)
    assert server.connections == 2 and len(server.requests) == 3
    await http.close()


async def test_a_fresh_post_takes_no_kept_connection_and_is_never_resent(
        server: CountingServer) -> None:
    """A slash command (``fresh=True``) has no id an app could drop a copy
    by: it goes on a new connection, so a stale one can never make it twice."""
    http = GuardedHttp(LOOPBACK)
    url = f"http://127.0.0.1:{server.port}/drop-reused"
    await post(http, url)  # kept alive now
    resp = await http.post(url, b"{}", [], timeout_s=2, fresh=True)
    assert resp.status == 200
    assert server.connections == 2 and len(server.requests) == 2  # sent once, on its own
    await http.close()


async def test_the_retry_is_within_the_same_time_limit(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    url = f"http://127.0.0.1:{server.port}/drop-then-stall"
    await post(http, url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OutboundTimeout):
        await http.post(url, b"{}", [], timeout_s=0.5)
    assert loop.time() - started < 1.5 and server.connections == 2 and http.idle == 0


async def test_a_fresh_connection_that_fails_is_not_retried(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    with pytest.raises(OutboundFailed, match="closed before an answer"):
        await http.post(f"http://127.0.0.1:{server.port}/drop", b"{}", [], timeout_s=2)
    assert server.connections == 1 and http.idle == 0


async def test_a_reused_connection_that_fails_mid_answer_is_not_retried(
        server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    url = f"http://127.0.0.1:{server.port}/partial-reused"
    await post(http, url)
    with pytest.raises(OutboundFailed):
        await http.post(url, b"{}", [], timeout_s=2)
    assert server.connections == 1 and len(server.requests) == 2 and http.idle == 0


async def test_an_answer_cut_at_max_response_bytes_is_not_kept(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK, max_response_bytes=1024)
    await post(http, f"http://127.0.0.1:{server.port}/ok")
    assert len(await post(http, f"http://127.0.0.1:{server.port}/big")) == 1024  # reused, cut
    assert http.idle == 0
    await post(http, f"http://127.0.0.1:{server.port}/ok")
    assert server.connections == 2
    await http.close()


async def test_a_timed_out_post_is_not_kept(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    await post(http, f"http://127.0.0.1:{server.port}/ok")
    with pytest.raises(OutboundTimeout):
        await http.post(f"http://127.0.0.1:{server.port}/slow", b"{}", [], timeout_s=0.3)
    assert http.idle == 0
    await post(http, f"http://127.0.0.1:{server.port}/ok")
    assert server.connections == 2
    await http.close()


async def test_an_idle_connection_expires_after_its_lifetime(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK, idle_lifetime_s=0.2)
    url = f"http://127.0.0.1:{server.port}/ok"
    await post(http, url)
    await asyncio.sleep(0.3)  # expired, not yet swept: never reused
    await post(http, url)
    assert server.connections == 2 and http.idle == 1
    await asyncio.sleep(0.2 + SWEEP_GRANULARITY_S + 0.2)  # swept: closed without a request
    assert http.idle == 0
    await server.until_closed(2)


async def test_the_pool_keeps_at_most_idle_per_key(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK, idle_per_key=2)
    url = f"http://127.0.0.1:{server.port}/hold"
    await asyncio.gather(*(post(http, url) for _ in range(3)))  # three at once
    assert server.connections == 3 and http.idle == 2
    await server.until_closed(1)
    await asyncio.gather(*(post(http, url) for _ in range(3)))
    assert server.connections == 4 and http.idle == 2
    await http.close()


async def test_the_pool_keeps_at_most_idle_total(server: CountingServer) -> None:
    """Full, the connection idle the longest makes room."""
    resolve, _ = resolver_of(["127.0.0.1"])
    http = GuardedHttp(LOOPBACK, resolver=resolve, idle_total=2)
    for name in ("a", "b", "c"):
        await post(http, f"http://{name}.example:{server.port}/ok")
    assert server.connections == 3 and http.idle == 2
    await post(http, f"http://c.example:{server.port}/ok")
    assert server.connections == 3
    await post(http, f"http://a.example:{server.port}/ok")  # a's was closed
    assert server.connections == 4
    await http.close()


async def test_close_closes_idle_connections_and_later_posts_are_not_kept(
        server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    await post(http, f"http://127.0.0.1:{server.port}/ok")
    await http.close()
    assert http.idle == 0
    await server.until_closed(1)
    await post(http, f"http://127.0.0.1:{server.port}/ok")
    assert server.connections == 2 and http.idle == 0
    await server.until_closed(2)
    await http.close()  # idempotent


def tls_pair(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: a self-signed certificate for ``name``
    that the client trusts.  ``cryptography`` comes with moto (dev extras)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_connections_are_reused_and_verify_the_name(tmp_path: Path) -> None:
    server_tls, client_tls = tls_pair(tmp_path, "app.example")
    s = CountingServer(idle_close_s=0.1)
    await s.start(tls=server_tls)
    try:
        resolve, _ = resolver_of(["127.0.0.1"])
        http = GuardedHttp(LOOPBACK, resolver=resolve, ssl_context=client_tls)
        for _ in range(3):
            assert await post(http, f"https://app.example:{s.port}/ok") == b"ok"
        assert s.connections == 1 and http.idle == 1
        await s.until_closed(1)  # the server's keep-alive timeout
        await asyncio.sleep(0.05)
        await post(http, f"https://app.example:{s.port}/ok")
        assert s.connections == 2
        with pytest.raises(OutboundFailed):  # the certificate names app.example only
            await http.post(f"https://other.example:{s.port}/ok", b"{}", [], timeout_s=2)
        await http.close()
    finally:
        await s.stop()


async def test_a_header_h11_refuses_is_a_typed_failure(server: CountingServer) -> None:
    http = GuardedHttp(LOOPBACK)
    with pytest.raises(OutboundFailed, match="bad request"):
        await http.post(f"http://127.0.0.1:{server.port}/ok", b"{}", [("X-Bad", "a\r\nb")],
                        timeout_s=2)
    assert server.connections == 0
