"""The heartbeat fast path (``GatewayApp.on_message`` + ``codec.heartbeats``)
agrees with the generic path: replies, errors, rate limiting, strikes,
draining and presence, command for command.

Three layers: the tables themselves; a differential test that feeds one
seeded random command stream to a GatewayApp with the fast path and to one
without it (the tables emptied), on a fake clock, and compares everything
observable after every command; and real sockets for the protocol rules
(no reply to a ref-less heartbeat, an ack to one with a ref).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed

from gateway import session as session_mod
from gateway.protocol import CloseCode
from gateway.protocol import codec as codecs
from gateway.session import GatewayApp, Session
from parley.auth import Identity
from server.composition import Runtime
from server.runner import Running
from tests.fixtures.parley import WsClient, register_and_login

CODECS: tuple[type[codecs.MsgpackCodec] | type[codecs.JsonCodec], ...] = (
    codecs.MsgpackCodec, codecs.JsonCodec)


@pytest.fixture(params=["fast", "generic"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with the fast path, then with every heartbeat on the generic path."""
    if request.param == "generic":
        for codec in CODECS:
            monkeypatch.setattr(codec, "heartbeats", {})
    yield request.param


# --- the tables ---------------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_every_table_entry_decodes_to_that_heartbeat(
        codec: type[codecs.MsgpackCodec] | type[codecs.JsonCodec]) -> None:
    assert len(codec.heartbeats) >= 7
    for frame, active in codec.heartbeats.items():
        assert isinstance(frame, bytes if codec.binary else str)
        assert len(frame) <= codecs.HEARTBEAT_MAX_LEN  # longer frames are not looked up
        op, ref, d = codec.decode(frame)
        assert (op, ref) == ("heartbeat", None)
        assert d.get("active", True) is active


def test_the_tables_hold_what_clients_send() -> None:
    for d in (None, {}, {"active": True}, {"active": False}):
        env: dict[str, Any] = {"op": "heartbeat"} if d is None else {"op": "heartbeat", "d": d}
        active = (d or {}).get("active", True)
        assert codecs.MsgpackCodec.heartbeats[msgpack.packb(env)] is active
        assert codecs.JsonCodec.heartbeats[json.dumps(env)] is active
        assert codecs.JsonCodec.heartbeats[json.dumps(env, separators=(",", ":"))] is active
    # A frame of the other dialect never matches (the generic path refuses it).
    assert msgpack.packb({"op": "heartbeat"}) not in codecs.JsonCodec.heartbeats
    assert json.dumps({"op": "heartbeat"}) not in codecs.MsgpackCodec.heartbeats


# --- differential: the fast path against the generic path ---------------------------------

class FakeClock:
    """``gateway.session.time`` for the test: monotonic and wall time we set."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now


class FakeConn:
    """What a Session uses of its WsTransport; records what it is asked to do."""

    def __init__(self) -> None:
        self.out: list[Any] = []
        self.closed = False

    def send_message(self, data: bytes | str) -> bool:
        self.out.append(msgpack.unpackb(data) if isinstance(data, bytes) else json.loads(data))
        return True

    def send(self, frame: bytes) -> bool:
        self.out.append(("frame", frame))
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.out.append(("close", code, reason))
        self.closed = True


def _stream(seed: int, n: int = 400) -> list[tuple[str, Any]]:
    """A seeded random mix of heartbeats (every table encoding and some that
    are not in it), other commands, clock steps and drain/idle toggles."""
    rnd = random.Random(seed)
    frames: list[tuple[int, bytes | str]] = [
        (i, f) for i, c in enumerate(CODECS) for f in c.heartbeats]
    odd: list[tuple[int, bytes | str]] = [
        (0, msgpack.packb({"op": "heartbeat", "ref": None})),
        (0, msgpack.packb({"op": "heartbeat", "d": {"active": "yes"}})),
        (0, msgpack.packb({"op": "heartbeat", "d": {"active": None}})),
        (0, msgpack.packb({"op": "heartbeat", "d": None})),
        (0, msgpack.packb({"op": "nope"})),
        (0, b"\xc1"),
        (0, '{"op": "heartbeat"}'),  # wrong frame type
        (1, '{"op": "heartbeat"} '),
        (1, '{"op":"heartbeat","d":{"active":1}}'),
        (1, msgpack.packb({"op": "heartbeat"})),  # wrong frame type
    ]
    # Every odd frame once, with tokens to spare, then the random mix.
    out: list[tuple[str, Any]] = []
    for frame in odd:
        out += [("advance", 1.0), ("frame", frame)]
    for _ in range(n):
        r = rnd.random()
        if r < 0.55:
            out.append(("frame", rnd.choice(frames)))
        elif r < 0.65:
            which = rnd.randrange(2)
            env = {"op": "heartbeat", "ref": rnd.randrange(1, 100),
                   "d": rnd.choice([{}, {"active": True}, {"active": False}])}
            out.append(("frame", (which, CODECS[which].encode(env))))
        elif r < 0.72:
            out.append(("frame", rnd.choice(odd)))
        elif r < 0.93:
            out.append(("advance", rnd.choice([0.0, 0.01, 0.05, 0.2, 1.0])))
        elif r < 0.96:
            out.append(("drain", rnd.random() < 0.5))
        else:
            out.append(("idle", rnd.randrange(2)))
    # Then a flood on both sockets, with the clock stopped: strikes, then 4003.
    for which, codec in enumerate(CODECS):
        out += [("frame", (which, rnd.choice(list(codec.heartbeats))))] * 20
    return out


def _replay(rt: Runtime, stream: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch,
            fast: bool) -> list[Any]:
    """Feed ``stream`` to a fresh GatewayApp with two sessions (msgpack, JSON);
    return everything observable after each step."""
    with monkeypatch.context() as mp:
        clock = FakeClock()
        mp.setattr(session_mod, "time", clock)
        if not fast:
            for c in CODECS:
                mp.setattr(c, "heartbeats", {})
        app = GatewayApp(rt.services)
        conns = [FakeConn(), FakeConn()]
        sessions = []
        for i, (conn, codec) in enumerate(zip(conns, CODECS, strict=True)):
            s = Session(app, conn, Identity(1000 + i, 1, 2e9), 1, codec)  # type: ignore[arg-type]
            app.sessions[conn] = s  # type: ignore[index]
            app.presence.on_open(s, now=clock.now)
            sessions.append(s)
        trace: list[Any] = []
        for kind, arg in stream:
            if kind == "advance":
                clock.now += arg
            elif kind == "drain":
                app.draining = arg
            elif kind == "idle":
                app.presence.local.users[1000 + arg].idle = True
            else:
                which, frame = arg
                conn = conns[which]
                if not conn.closed:  # a closing transport dispatches nothing
                    app.on_message(conn, frame)  # type: ignore[arg-type,unused-ignore]
            users = app.presence.local.users
            trace.append((
                [list(c.out) for c in conns],
                [(s.tokens, s.at, s.strikes) for s in sessions],
                [(users[u].last_active, users[u].idle) for u in (1000, 1001)],
                sorted(u.user_id for u in app.presence.local._dirty),
            ))
        return trace


@pytest.mark.parametrize("seed", range(4))
async def test_fast_and_generic_paths_agree(runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
                                            seed: int) -> None:
    # A small bucket, so rate limiting, strikes and the 4003 close all happen.
    runtime.services.settings = dataclasses.replace(
        runtime.services.settings, ws_commands_per_s=20.0, ws_command_burst=4.0)
    monkeypatch.setattr(session_mod, "RATE_STRIKES_TO_CLOSE", 6)
    stream = _stream(seed)
    fast = _replay(runtime, stream, monkeypatch, fast=True)
    generic = _replay(runtime, stream, monkeypatch, fast=False)
    for step, (a, b) in enumerate(zip(fast, generic, strict=True)):
        assert a == b, f"step {step}: {stream[step]}"
    outputs = [o for conn in fast[-1][0] for o in conn]
    kinds = {o["t"] if isinstance(o, dict) else o[0] for o in outputs}
    assert {"heartbeat_ack", "error"} <= kinds  # the stream exercised both
    codes = {o["d"]["code"] for o in outputs if isinstance(o, dict) and o["t"] == "error"}
    assert {"rate_limited", "invalid_field", "bad_envelope", "wrong_frame_type"} <= codes
    for conn_out in fast[-1][0]:
        assert conn_out[-1] == ("close", CloseCode.RATE_LIMITED, '{"retry_after_ms":5000}')


# --- real sockets ----------------------------------------------------------------------------

async def _client(parley: Running, json_mode: bool) -> tuple[WsClient, int]:
    api, user = await register_and_login(parley, "ada@example.com", "Ada")
    ws = await api.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    await api.close()
    c = await WsClient.connect(parley, api.token or "", ws["id"], json_mode=json_mode)
    return c, int(user["id"])


@pytest.mark.parametrize("json_mode", [False, True], ids=["msgpack", "json"])
async def test_a_refless_heartbeat_gets_no_reply_but_counts(parley: Running, path: str,
                                                           json_mode: bool) -> None:
    c, uid = await _client(parley, json_mode)
    app = parley.gateway_app
    assert app is not None
    user = app.presence.local.users[uid]
    user.last_active = 0.0
    frames = list(codecs.JsonCodec.heartbeats if json_mode else codecs.MsgpackCodec.heartbeats)
    if path == "generic":  # the tables are empty here: send what they hold normally
        frames = [json.dumps({"op": "heartbeat"}) if json_mode else msgpack.packb(
            {"op": "heartbeat"})]
    for frame in frames:
        await c.conn.send(frame)
    await c.send_cmd("heartbeat", {"active": False}, ref="last")
    ack = await c.recv()  # nothing came before it: the ref-less ones were silent
    assert ack["t"] == "heartbeat_ack" and ack["ref"] == "last"
    assert isinstance(ack["d"]["ts"], int)
    assert user.last_active > 0.0  # the active ones counted
    await c.close()


async def test_bad_active_is_an_error_with_or_without_ref(parley: Running, path: str) -> None:
    c, _ = await _client(parley, False)
    await c.conn.send(msgpack.packb({"op": "heartbeat", "d": {"active": "yes"}}))
    err = await c.recv()
    assert err["t"] == "error" and err["ref"] is None
    assert err["d"]["code"] == "invalid_field"
    await c.send_cmd("heartbeat", {"active": 1}, ref=7)
    err = await c.recv()
    assert (err["t"], err["ref"], err["d"]["code"]) == ("error", 7, "invalid_field")
    await c.close()


@pytest.mark.parametrize("json_mode", [False, True], ids=["msgpack", "json"])
async def test_refless_heartbeats_are_rate_limited_then_closed(
        parley: Running, path: str, json_mode: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = parley.rt.services
    svc.settings = dataclasses.replace(svc.settings, ws_command_burst=10.0,
                                       ws_commands_per_s=0.01)
    monkeypatch.setattr(session_mod, "RATE_STRIKES_TO_CLOSE", 20)
    c, _ = await _client(parley, json_mode)
    frame = json.dumps({"op": "heartbeat"}) if json_mode else msgpack.packb({"op": "heartbeat"})
    for _ in range(12):
        await c.conn.send(frame)
    await c.send_cmd("heartbeat", {}, ref="check")
    replies = [await c.recv() for _ in range(3)]
    assert [(r["t"], r["ref"], r["d"]["code"]) for r in replies] == [
        ("error", None, "rate_limited"), ("error", None, "rate_limited"),
        ("error", "check", "rate_limited")]
    assert replies[0]["d"]["retryable"] is True and replies[0]["d"]["retry_after_ms"] > 0
    with pytest.raises(ConnectionClosed) as err:
        for _ in range(100):
            await c.conn.send(frame)
        while True:
            await c.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 4003


async def test_draining_still_absorbs_heartbeats(parley: Running, path: str) -> None:
    c, uid = await _client(parley, False)
    app = parley.gateway_app
    assert app is not None
    app.draining = True
    user = app.presence.local.users[uid]
    user.last_active = 0.0
    await c.conn.send(msgpack.packb({"op": "heartbeat"}))
    cid = c.hello["d"]["channels"][0]["id"]
    await c.send_cmd("send", {"channel_id": cid, "text": "late"}, ref="s")
    err = await c.recv()
    assert (err["t"], err["ref"], err["d"]["code"]) == ("error", "s", "server_draining")
    assert user.last_active > 0.0
    await c.send_cmd("heartbeat", {}, ref="h")
    assert (await c.recv())["t"] == "heartbeat_ack"
    app.draining = False
    await c.close()
