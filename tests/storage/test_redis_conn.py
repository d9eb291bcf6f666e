"""Tests for ``storage.redis_conn``: reply matching and the helpers.

* ``PubSubSession`` (sans-IO) gets example tests: which frame answers which
  command, and what counts as a desync.
* The helpers (backoff, URL redaction, connection settings, dialling,
  cluster node addresses) get example tests, no server.

The pub/sub link itself, against fakes and real servers, is tested in
``test_redis_conn_link.py``; the fakes both use are in ``redis_conn_fakes.py``.
"""

from __future__ import annotations

import asyncio
import random
from typing import cast

import pytest
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.exceptions import AskError, ResponseError

from storage.redis_conn import (
    PLAIN,
    SHARDED,
    Backoff,
    ConnectionFactory,
    NodeAddress,
    Op,
    OpKind,
    ProtocolDesync,
    PubSubSession,
    Reply,
    SubscribeOutcome,
    dial_connection,
    enforced_connection_kwargs,
    redact_url,
    startup_url_kwargs,
)
from tests.storage.redis_conn_fakes import MOVED, NOPERM, Tuning, outcome

# --------------------------------------------------------------------------- session (sans-IO)


def new_waiter() -> asyncio.Future[SubscribeOutcome]:
    return asyncio.get_running_loop().create_future()


def test_commands_are_packed_in_the_dialect() -> None:
    ops = [Op(OpKind.SUBSCRIBE, "t"), Op(OpKind.UNSUBSCRIBE, "t"), Op(OpKind.PING, "")]
    plain, shard = PubSubSession(PLAIN), PubSubSession(SHARDED)
    assert [plain.pack(op) for op in ops] == [("SUBSCRIBE", "t"), ("UNSUBSCRIBE", "t"), ("PING",)]
    assert [shard.pack(op) for op in ops] == [("SSUBSCRIBE", "t"), ("SUNSUBSCRIBE", "t"), ("PING",)]


async def test_each_ack_resolves_the_waiter_of_its_own_command() -> None:
    session = PubSubSession(PLAIN)
    a, b = new_waiter(), new_waiter()
    session.sent([Op(OpKind.SUBSCRIBE, "a", a), Op(OpKind.SUBSCRIBE, "b", b)])
    assert session.on_frame([b"subscribe", b"a", 1]) == (Reply.SUBSCRIBED, "a")
    assert outcome(a) is SubscribeOutcome.ACKED and not b.done()
    assert session.on_frame([b"subscribe", b"b", 2]) == (Reply.SUBSCRIBED, "b")
    assert outcome(b) is SubscribeOutcome.ACKED


@pytest.mark.parametrize(
    ("in_flight", "arrives"),
    [
        ("sub a", [b"subscribe", b"b", 1]),  # answers a command that is not the oldest
        ("sub a", [b"ssubscribe", b"a", 1]),  # another dialect's ack
        ("sub a", [b"unsubscribe"]),  # too short
        ("sub a", [b"subscribe", "a", 1]),  # channel not bytes
        ("sub a", b"OK"),
        ("sub a", 42),
        ("", [b"subscribe", b"a", 1]),  # nothing in flight
        ("", b"PONG"),
        ("", NOPERM),
        ("ping", ResponseError("ERR unknown")),  # PING is never refused
    ],
)
async def test_a_reply_to_nothing_sent_is_a_desync(in_flight: str, arrives: object) -> None:
    session = PubSubSession(PLAIN)
    ops = {"sub a": [Op(OpKind.SUBSCRIBE, "a", new_waiter())], "ping": [Op(OpKind.PING, "")]}
    session.sent(ops.get(in_flight, []))
    with pytest.raises(ProtocolDesync):
        if isinstance(arrives, ResponseError):
            session.on_error(arrives)
        else:
            session.on_frame(arrives)


async def test_both_pong_shapes_answer_ping() -> None:
    session = PubSubSession(SHARDED)
    session.sent([Op(OpKind.PING, ""), Op(OpKind.PING, "")])
    assert session.on_frame(b"PONG") == (Reply.PONG, "")  # not in subscribed mode
    assert session.on_frame([b"pong", b""]) == (Reply.PONG, "")  # in subscribed mode


async def test_an_unsubscribe_frame_nobody_asked_for_is_a_lost_subscription() -> None:
    session = PubSubSession(SHARDED)
    waiter = new_waiter()
    session.sent([Op(OpKind.SUBSCRIBE, "b", waiter), Op(OpKind.UNSUBSCRIBE, "a")])
    # The server dropped "a" itself; the SSUBSCRIBE of "b" is still the oldest.
    assert session.on_frame([b"sunsubscribe", b"a", 0]) == (Reply.LOST, "a")
    assert session.on_frame([b"ssubscribe", b"b", 1]) == (Reply.SUBSCRIBED, "b")
    assert outcome(waiter) is SubscribeOutcome.ACKED
    # The answer to our SUNSUBSCRIBE is matched, not taken for another loss.
    assert session.on_frame([b"sunsubscribe", b"a", 0]) == (Reply.UNSUBSCRIBED, "a")


@pytest.mark.parametrize(
    ("kind", "error", "reply", "expected"),
    [
        (OpKind.SUBSCRIBE, MOVED, Reply.MOVED, SubscribeOutcome.MOVED),
        (OpKind.SUBSCRIBE, AskError("1234 127.0.0.1:7001"), Reply.MOVED, SubscribeOutcome.MOVED),
        (OpKind.SUBSCRIBE, NOPERM, Reply.REFUSED, SubscribeOutcome.REFUSED),
        # E.g. SUNSUBSCRIBE on a node that lost the slot: not subscribed either way.
        (OpKind.UNSUBSCRIBE, MOVED, Reply.UNSUBSCRIBED, None),
    ],
)
async def test_an_error_answers_the_oldest_command(
    kind: OpKind, error: ResponseError, reply: Reply, expected: SubscribeOutcome | None
) -> None:
    session = PubSubSession(SHARDED)
    first, second = new_waiter(), new_waiter()
    waiter = first if kind is OpKind.SUBSCRIBE else None
    session.sent([Op(kind, "a", waiter), Op(OpKind.SUBSCRIBE, "b", second)])
    assert session.on_error(error) == (reply, "a")
    assert outcome(first) is expected and not second.done()


async def test_synced_once_every_resubscribe_is_answered_whatever_the_answer() -> None:
    session = PubSubSession(SHARDED)
    assert session.synced
    session.sent([Op(OpKind.SUBSCRIBE, t, resync=True) for t in "abc"])
    session.sent([Op(OpKind.SUBSCRIBE, "d", new_waiter())])
    session.on_frame([b"ssubscribe", b"a", 1])
    session.on_error(MOVED)  # b
    assert not session.synced
    session.on_error(NOPERM)  # c
    assert session.synced  # "d" is not part of the resync


async def test_drop_releases_every_waiter() -> None:
    session = PubSubSession(PLAIN)
    waiters = [new_waiter(), new_waiter()]
    session.sent([Op(OpKind.SUBSCRIBE, "a", waiters[0], resync=True)])
    session.sent([Op(OpKind.UNSUBSCRIBE, "x"), Op(OpKind.SUBSCRIBE, "b", waiters[1])])
    session.drop()
    assert [outcome(w) for w in waiters] == [SubscribeOutcome.DROPPED] * 2
    assert session.synced
    with pytest.raises(ProtocolDesync):  # nothing is in flight any more
        session.on_frame([b"subscribe", b"b", 1])


# --------------------------------------------------------------------------- helpers


def test_backoff_doubles_up_to_the_cap_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the top of each range
    backoff = Backoff(0.05, 0.3)
    assert [backoff.next_delay_s() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    backoff.reset()
    assert backoff.next_delay_s() == 0.05


def test_backoff_is_jittered_within_its_ceiling() -> None:
    delays = [Backoff(1.0, 4.0).next_delay_s() for _ in range(200)]  # each the first: <= 1
    assert all(0.0 <= d <= 1.0 for d in delays) and len(set(delays)) > 100


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:s3cret@cache:6380", "rediss://app:***@cache:6380"),
        ("redis://app@cache:6379", "redis://app@cache:6379"),  # no password to hide
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("10.0.0.7:7001", NodeAddress("10.0.0.7", 7001)),
        ("[::1]:7002", NodeAddress("::1", 7002)),
        ("redis://:pw@cache-1:7003/0", NodeAddress("cache-1", 7003)),
        ("rediss://cache-2", NodeAddress("cache-2", 6379)),
    ],
)
def test_node_address_parses_host_port_and_urls(text: str, address: NodeAddress) -> None:
    assert NodeAddress.parse(text) == address
    assert str(NodeAddress("::1", 7002)) == "[::1]:7002"


@pytest.mark.parametrize("text", ["cache", "cache:port", "redis://:7000"])
def test_node_address_refuses_what_names_no_node(text: str) -> None:
    with pytest.raises(ValueError):
        NodeAddress.parse(text)


def test_startup_url_kwargs_keep_credentials_and_tls_not_the_address() -> None:
    kwargs = startup_url_kwargs(["rediss://app:pw@n1:7000/0", "n2:7001"])
    assert kwargs["username"] == "app" and kwargs["password"] == "pw"
    assert kwargs["connection_class"] is SSLConnection
    assert not {"host", "port", "path", "db"} & kwargs.keys()
    assert startup_url_kwargs(["n1:7000", "redis://:pw@n2:7001"]) == {}  # only the first counts


def test_enforced_kwargs_pin_what_correctness_depends_on() -> None:
    kwargs = enforced_connection_kwargs(Tuning(client_name="n", connect_timeout_s=1.5))
    assert kwargs["protocol"] == 2
    assert kwargs["decode_responses"] is False
    assert kwargs["retry"].get_retries() == 0 and kwargs["retry_on_error"] == []
    assert kwargs["socket_connect_timeout"] == 1.5 and kwargs["client_name"] == "n"
    assert kwargs["health_check_interval"] == 0


async def test_connection_factory_layers_later_wins_and_enforced_wins_over_all() -> None:
    tuning = Tuning(client_name="hub")
    factory = ConnectionFactory.merge(
        {"password": "from-options", "protocol": 3, "username": "u"},
        {"password": "from-url", "connection_class": SSLConnection},
        None,
        options=tuning,
    )
    assert factory.connection_class is SSLConnection
    assert factory.kwargs["password"] == "from-url" and factory.kwargs["username"] == "u"
    assert factory.kwargs["protocol"] == 2 and factory.kwargs["client_name"] == "hub"
    assert "connection_class" not in factory.kwargs
    plain = ConnectionFactory.merge(parse_url("redis://h:1/2"), options=tuning)
    assert plain.connection_class is Connection and plain.kwargs["db"] == 2
    client = ConnectionFactory.merge(options=tuning).client(host="10.0.0.7", port=7001)
    try:  # a cluster node's address is given per client
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["protocol"]) == ("10.0.0.7", 7001, 2)
    finally:
        await client.aclose()


async def test_dial_gives_up_after_its_timeout_and_closes_the_connection() -> None:
    class Stuck:
        disconnected = False

        async def connect(self) -> None:
            await asyncio.sleep(3600)

        async def disconnect(self, nowait: bool = False) -> None:
            self.disconnected = True

    conn = Stuck()
    with pytest.raises(TimeoutError):
        await dial_connection(cast(AbstractConnection, conn), 0.01)
    assert conn.disconnected
