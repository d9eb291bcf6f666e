"""The SSRF guard of outbound requests (storage/outbound.py): every refused
address class, literal and resolved; redirects never followed; a DNS
answer that changes between the check and the connection; bounded
answers and time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from parley.ports.outbound import OutboundFailed, OutboundRefused, OutboundTimeout
from storage.outbound import AddressPolicy, GuardedHttp

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
