"""The resume contract of docs/protocol.md ("Reconnecting and resuming"),
through real sockets, with both codecs.

Every test ends with the same invariant (tests/fixtures/streams.py): what the
client received of each channel is exactly ``ORDER BY seq`` from the
database after its resume point, in order, none missing, none twice.  And
every channel of the session ends in an explicit outcome: replayed, or
``channel.resync_required`` with a range, never a silent gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from gateway import replay as replay_mod
from gateway import resume as resume_mod
from parley.actions import delivery
from server.runner import Running
from tests.fixtures.parley import Api, WsClient, register_and_login
from tests.fixtures.streams import Received, assert_stream, channel_rows

CODECS = pytest.mark.parametrize("json_mode", [False, True], ids=["msgpack", "json"])


@dataclasses.dataclass
class Team:
    running: Running
    dsn: str
    ada: Api
    bob: Api
    bob_id: int
    wid: str
    general: int
    ops: int
    other: int  # a public channel bob is not in

    async def post(self, cid: int, text: str, api: Api | None = None) -> int:
        body = await (api or self.ada).call(
            "POST", f"/v1/workspaces/{self.wid}/channels/{cid}/messages", 201,
            json={"text": text})
        return int(body["seq"])

    async def connect(self, json_mode: bool, *, resume: bool = False,
                      wait_hello: bool = True) -> WsClient:
        return await WsClient.connect(self.running, self.bob.token or "", self.wid,
                                      json_mode=json_mode, resume=resume,
                                      wait_hello=wait_hello)

    async def rows(self) -> dict[int, list[tuple[int, int]]]:
        return await channel_rows(self.dsn, [self.general, self.ops])

    async def close(self) -> None:
        for api in (self.ada, self.bob):
            await api.close()


async def _team(parley_db: tuple[Running, str]) -> Team:
    running, dsn = parley_db
    ada, _ = await register_and_login(running, "ada@example.com", "Ada")
    bob, bob_user = await register_and_login(running, "bob@example.com", "Bob")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    wid = ws["id"]
    await ada.call("POST", f"/v1/workspaces/{wid}/members", 201,
                   json={"email": "bob@example.com"})
    chans = await ada.call("GET", f"/v1/workspaces/{wid}/channels", 200)
    general = int(chans["channels"][0]["id"])
    ops = int((await ada.call("POST", f"/v1/workspaces/{wid}/channels", 201,
                              json={"name": "ops"}))["id"])
    await bob.call("POST", f"/v1/workspaces/{wid}/channels/{ops}/join", 200)
    other = int((await ada.call("POST", f"/v1/workspaces/{wid}/channels", 201,
                                json={"name": "other"}))["id"])
    return Team(running, dsn, ada, bob, int(bob_user["id"]), wid, general, ops, other)


async def _read_until(c: WsClient, got: Received, done: Callable[[], bool],
                      timeout: float = 10.0) -> None:
    async def loop() -> None:
        while not done():
            got.add(await c.recv(timeout=timeout))

    await asyncio.wait_for(loop(), timeout)


def _resync(got: Received) -> dict[int, dict[str, Any]]:
    return {int(e["d"]["channel_id"]): e["d"] for e in got.of("channel.resync_required")}


def _acks(got: Received) -> list[dict[str, Any]]:
    return [e for e in got.of("ack") if e.get("ref") == "r"]


def _errors(got: Received) -> list[dict[str, Any]]:
    return got.of("error")


# --------------------------------------------------------------------------- early resume


@CODECS
async def test_resume_sent_before_hello_is_handled_after_it(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    """The silent loss of issue 22: a resume sent straight after the upgrade,
    before hello, used to be acknowledged with replayed 0 and nothing replayed."""
    t = await _team(parley_db)
    for i in range(3):
        await t.post(t.general, f"seen {i}")
    for i in range(6):
        await t.post(t.general, f"missed {i}")
    await t.post(t.ops, "missed in ops")
    c = await t.connect(json_mode, resume=True, wait_hello=False)
    await c.send_cmd("resume", {"channels": {t.general: 3, t.ops: 0}}, ref="r")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)))
    assert got.events[0]["t"] == "hello", "nothing may precede hello"
    assert _acks(got)[0]["d"]["replayed"] == 7
    assert _acks(got)[0]["d"]["resync_required"] == []
    for i in range(2):
        await t.post(t.general, f"live {i}")
    await _read_until(c, got, lambda: got.last_seq(t.general) >= 11)
    rows = await t.rows()
    assert_stream(got.messages[t.general], rows[t.general], 3, through=11)
    assert_stream(got.messages[t.ops], rows[t.ops], 0, through=1)
    await c.close()
    await t.close()


@CODECS
async def test_commands_before_hello_are_handled_after_it_in_order(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    t = await _team(parley_db)
    c = await t.connect(json_mode, wait_hello=False)
    await c.send_cmd("send", {"channel_id": t.general, "text": "early"}, ref="s")
    await c.send_cmd("presence.subscribe", {"user_ids": [t.bob_id]}, ref="p")
    await c.send_cmd("heartbeat", {}, ref="h")
    got = Received()

    def replies() -> dict[Any, str]:
        return {e["ref"]: e["t"] for e in got.events if e["t"] in ("ack", "heartbeat_ack", "error")}

    await _read_until(c, got, lambda: len(replies()) == 3)
    assert got.events[0]["t"] == "hello"
    # Each was handled (not dropped, not refused); the send and the presence
    # subscription answer when their I/O is done, so not necessarily in order.
    assert replies() == {"s": "ack", "p": "ack", "h": "heartbeat_ack"}, got.events
    await c.close()
    await t.close()


# --------------------------------------------------------------------------- the resume map


@CODECS
async def test_channel_missing_from_the_resume_map_gets_resync_required(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    t = await _team(parley_db)
    for i in range(4):
        await t.post(t.general, f"g{i}")
        await t.post(t.ops, f"o{i}")
    c = await t.connect(json_mode, resume=True)
    await c.send_cmd("resume", {"channels": {t.general: 1}}, ref="r")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)))
    ack = _acks(got)[0]["d"]
    assert [int(x) for x in ack["resync_required"]] == [t.ops]
    resync = _resync(got)
    assert resync[t.ops] == {"channel_id": resync[t.ops]["channel_id"], "from_seq": 1,
                             "to_seq": 4, "reason": "not_named"}
    for i in range(3):
        await t.post(t.ops, f"live o{i}")
        await t.post(t.general, f"live g{i}")
    await _read_until(c, got, lambda: got.last_seq(t.ops) >= 7 and got.last_seq(t.general) >= 7)
    rows = await t.rows()
    assert_stream(got.messages[t.general], rows[t.general], 1, through=7)
    assert_stream(got.messages[t.ops], rows[t.ops], 4, through=7)  # live after to_seq
    await c.close()
    await t.close()


@CODECS
async def test_cursor_beyond_the_channels_last_seq_is_resync_not_a_skip(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    """A cursor ahead of the server (a client bug, or a database restored from
    a backup) must not make the next messages look already seen."""
    t = await _team(parley_db)
    for i in range(3):
        await t.post(t.general, f"g{i}")
    c = await t.connect(json_mode, resume=True)
    await c.send_cmd("resume", {"channels": {t.general: 8, t.ops: 0}}, ref="r")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)))
    resync = _resync(got)[t.general]
    assert (resync["from_seq"], resync["to_seq"], resync["reason"]) == (1, 3, "cursor_ahead")
    assert [int(x) for x in _acks(got)[0]["d"]["resync_required"]] == [t.general]
    for i in range(6):  # seqs 4..9: on and below the bogus cursor too
        await t.post(t.general, f"after {i}")
    await _read_until(c, got, lambda: got.last_seq(t.general) >= 9)
    rows = await t.rows()
    assert_stream(got.messages[t.general], rows[t.general], 3, through=9)
    await c.close()
    await t.close()


@CODECS
async def test_replay_longer_than_resume_max_events_is_resync_then_live(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    t = await _team(parley_db)
    svc = t.running.rt.services
    svc.settings = dataclasses.replace(svc.settings, resume_max_events=5)
    for i in range(8):
        await t.post(t.general, f"g{i}")
    for i in range(5):
        await t.post(t.ops, f"o{i}")
    c = await t.connect(json_mode, resume=True)
    # Live traffic while the replay runs: nothing of it may be lost or doubled.
    async def live() -> None:
        for i in range(4):
            for cid in (t.general, t.ops):
                await t.post(cid, f"live {i}")

    sender = asyncio.create_task(live())
    await c.send_cmd("resume", {"channels": {t.general: 0, t.ops: 0}}, ref="r")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)))
    await sender
    rows = await t.rows()
    await _read_until(c, got, lambda: got.last_seq(t.general) >= len(rows[t.general])
                      and got.last_seq(t.ops) >= len(rows[t.ops]))
    resync = _resync(got)
    assert set(resync) == {t.general}
    assert resync[t.general]["from_seq"] == 1 and resync[t.general]["reason"] == "too_far_behind"
    to_seq = resync[t.general]["to_seq"]
    assert to_seq >= 8
    assert_stream(got.messages.get(t.general, []), rows[t.general], to_seq,
                  through=len(rows[t.general]))
    assert_stream(got.messages[t.ops], rows[t.ops], 0, through=len(rows[t.ops]))
    await c.close()
    await t.close()


@CODECS
async def test_channel_in_the_map_the_user_is_not_in_is_listed_as_ignored(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    t = await _team(parley_db)
    await t.post(t.other, "not for bob")
    await t.post(t.general, "for bob")
    c = await t.connect(json_mode, resume=True)
    await c.send_cmd("resume", {"channels": {t.general: 0, t.ops: 0, t.other: 0}}, ref="r")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)))
    ack = _acks(got)[0]["d"]
    assert [int(x) for x in ack["ignored"]] == [t.other]
    assert ack["replayed"] == 1 and t.other not in got.messages
    await c.close()
    await t.close()


# ----------------------------------------------------------------- when resume is refused


@CODECS
async def test_resume_without_the_resume_query_is_refused(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    """Without ?resume=1 events already flow after hello; a replay then would
    send some twice, so the command is refused with a typed error."""
    t = await _team(parley_db)
    await t.post(t.general, "old")
    c = await t.connect(json_mode)
    await c.send_cmd("resume", {"channels": {t.general: 0}}, ref="r")
    got = Received()
    await _read_until(c, got, lambda: bool(_errors(got)))
    assert _errors(got)[0]["d"]["code"] == "resume_not_requested"
    assert _errors(got)[0]["ref"] == "r"
    await t.post(t.general, "live")
    await _read_until(c, got, lambda: got.last_seq(t.general) >= 2)
    assert got.messages[t.general] == (await t.rows())[t.general][1:]  # no replay of seq 1
    await c.close()
    await t.close()


@CODECS
async def test_second_resume_is_refused(parley_db: tuple[Running, str], json_mode: bool) -> None:
    t = await _team(parley_db)
    for i in range(3):
        await t.post(t.general, f"g{i}")
    c = await t.connect(json_mode, resume=True)
    await c.send_cmd("resume", {"channels": {t.general: 1, t.ops: 0}}, ref="r")
    await c.send_cmd("resume", {"channels": {t.general: 0, t.ops: 0}}, ref="again")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)) and bool(_errors(got)))
    err = _errors(got)[0]
    assert (err["ref"], err["d"]["code"]) == ("again", "resume_too_late")
    await t.post(t.general, "live")
    await _read_until(c, got, lambda: got.last_seq(t.general) >= 4)
    assert_stream(got.messages[t.general], (await t.rows())[t.general], 1, through=4)
    await c.close()
    await t.close()


@CODECS
async def test_invalid_resume_is_refused_and_the_connection_keeps_waiting(
        parley_db: tuple[Running, str], json_mode: bool) -> None:
    t = await _team(parley_db)
    for i in range(3):
        await t.post(t.general, f"g{i}")
    c = await t.connect(json_mode, resume=True)
    await c.send_cmd("resume", {"channels": {t.general: -1}}, ref="bad")
    got = Received()
    await _read_until(c, got, lambda: bool(_errors(got)))
    assert _errors(got)[0]["d"]["code"] == "invalid_field"
    await t.post(t.general, "while waiting")  # held, not lost
    await c.send_cmd("resume", {"channels": {t.general: 2, t.ops: 0}}, ref="r")
    await _read_until(c, got, lambda: bool(_acks(got)) and got.last_seq(t.general) >= 4)
    assert _acks(got)[0]["d"]["replayed"] >= 1
    assert_stream(got.messages[t.general], (await t.rows())[t.general], 2, through=4)
    await c.close()
    await t.close()


@CODECS
async def test_resume_that_never_comes_ends_in_resync_for_every_channel(
        parley_db: tuple[Running, str], json_mode: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_mod, "RESUME_WAIT_S", 0.3)
    t = await _team(parley_db)
    for i in range(2):
        await t.post(t.general, f"g{i}")
    c = await t.connect(json_mode, resume=True)
    got = Received()
    await _read_until(c, got, lambda: len(_resync(got)) == 2)
    resync = _resync(got)
    assert {r["reason"] for r in resync.values()} == {"no_resume"}
    assert (resync[t.general]["from_seq"], resync[t.general]["to_seq"]) == (1, 2)
    await t.post(t.general, "live")
    await _read_until(c, got, lambda: got.last_seq(t.general) >= 3)
    assert_stream(got.messages[t.general], (await t.rows())[t.general], 2, through=3)
    await c.close()
    await t.close()


@CODECS
async def test_too_much_held_before_going_live_closes_4004_and_resuming_again_loses_nothing(
        parley_db: tuple[Running, str], json_mode: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume_mod, "MAX_HELD_EVENTS", 5)
    t = await _team(parley_db)
    await t.post(t.general, "seen")
    c = await t.connect(json_mode, resume=True)
    for i in range(6):  # held while the connection waits for resume: one too many
        await t.post(t.general, f"held {i}")
    with pytest.raises(ConnectionClosed) as err:
        while True:
            await c.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 4004
    monkeypatch.setattr(resume_mod, "MAX_HELD_EVENTS", 10_000)
    c = await t.connect(json_mode, resume=True)
    await c.send_cmd("resume", {"channels": {t.general: 1, t.ops: 0}}, ref="r")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)))
    assert_stream(got.messages[t.general], (await t.rows())[t.general], 1, through=7)
    await c.close()
    await t.close()


# --------------------------------------------------------------------------- hello comes first


def _slow(monkeypatch: pytest.MonkeyPatch, name: str, delay_s: float,
          when: Callable[..., bool]) -> None:
    """Delay one of the gateway's PostgreSQL reads (the real read still runs):
    widens a window the test needs to hit every time."""
    real: Callable[..., Awaitable[Any]] = getattr(delivery, name)

    async def slow(*args: Any, **kw: Any) -> Any:
        if when(*args, **kw):
            await asyncio.sleep(delay_s)
        return await real(*args, **kw)

    monkeypatch.setattr(delivery, name, slow)


@CODECS
async def test_no_event_reaches_a_socket_before_hello(
        parley_db: tuple[Running, str], json_mode: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """general is already subscribed (ada is connected); bob's own channel
    "quiet" is not, and its position read is slowed, so general's live events
    arrive while bob's connection is still opening.  They must wait for
    hello, and the stream after hello must start right after hello's last_seq."""
    t = await _team(parley_db)
    quiet = int((await t.bob.call("POST", f"/v1/workspaces/{t.wid}/channels", 201,
                                  json={"name": "quiet"}))["id"])
    _slow(monkeypatch, "channel_position", 0.3, lambda svc, wid, cid: cid == quiet)
    a = await WsClient.connect(t.running, t.ada.token or "", t.wid, json_mode=json_mode)
    c = await t.connect(json_mode, wait_hello=False)
    for i in range(5):
        await a.send_cmd("send", {"channel_id": t.general, "text": f"during open {i}"})
        await asyncio.sleep(0.03)
    got = Received()
    await _read_until(c, got, lambda: bool(got.of("hello")))
    assert got.events[0]["t"] == "hello", got.events
    hello_seq = {int(ch["id"]): ch["last_seq"] for ch in got.events[0]["d"]["channels"]}
    for i in range(3):
        await t.post(t.general, f"after {i}")
    await _read_until(c, got, lambda: got.last_seq(t.general) >= 8)
    assert_stream(got.messages[t.general], (await t.rows())[t.general], hello_seq[t.general],
                  through=8)
    for ws in (a, c):
        await ws.close()
    await t.close()


# ----------------------------------------------------------- membership during the replay


@CODECS
async def test_channels_joined_and_left_during_the_replay(
        parley_db: tuple[Running, str], json_mode: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bob is removed from ops and added to other while the replay of general
    runs (slowed).  ops: nothing of it after channel.left; other: its events
    after channel.joined."""
    t = await _team(parley_db)
    for i in range(3):
        await t.post(t.general, f"g{i}")
        await t.post(t.ops, f"o{i}")
    replaying = asyncio.Event()

    def general_page(svc: Any, wid: int, cid: int, after: int, *a: Any) -> bool:
        if cid == t.general:
            replaying.set()
            return True
        return False

    _slow(monkeypatch, "events_after", 0.5, general_page)
    c = await t.connect(json_mode, resume=True)
    await c.send_cmd("resume", {"channels": {t.general: 0, t.ops: 0}}, ref="r")
    await replaying.wait()
    await t.ada.call("DELETE", f"/v1/workspaces/{t.wid}/channels/{t.ops}/members/{t.bob_id}",
                     204)
    await t.ada.call("POST", f"/v1/workspaces/{t.wid}/channels/{t.other}/members", 200,
                     json={"user_ids": [str(t.bob_id)]})
    await t.post(t.ops, "after leaving")
    got = Received()
    await _read_until(c, got, lambda: bool(_acks(got)) and bool(got.of("channel.joined")))
    await asyncio.sleep(0.2)  # the router subscribes bob's socket to other
    await t.post(t.other, "in other")
    await t.post(t.general, "live")
    await _read_until(c, got, lambda: got.last_seq(t.other) >= 1 and got.last_seq(t.general) >= 4)
    kinds = [(e["t"], int(e["d"].get("channel_id") or e["d"].get("id") or 0))
             for e in got.events]
    left = kinds.index(("channel.left", t.ops))
    assert ("message.created", t.ops) not in kinds[left:], "ops after channel.left"
    joined = kinds.index(("channel.joined", t.other))
    assert kinds.index(("message.created", t.other)) > joined
    rows = await channel_rows(t.dsn, [t.general, t.ops, t.other])
    assert_stream(got.messages[t.general], rows[t.general], 0, through=4)
    assert_stream(got.messages.get(t.ops, []), rows[t.ops], 0)  # a prefix, whatever it was
    assert_stream(got.messages[t.other], rows[t.other], 0, through=1)
    await c.close()
    await t.close()
