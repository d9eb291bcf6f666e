"""Property-based fuzzing of the JSON gateway path against a served Parley.

Hypothesis draws commands: every op the gateway accepts (``send``,
``heartbeat``, ``resume``, the presence ops) and unknown ones, each field
present or not and of any shape (strings from all of Unicode, surrogates and
NUL included; wrong types; huge integers; nested junk), odd refs, and frames
that are not commands at all.  The invariant, for each well-framed command:
exactly one reply, a success or a typed error whose code and ``retryable``
are documented (docs/protocol.md, *Error codes*), never ``internal_error``,
never a closed socket or silence; and another client's sends, made all the
while in another workspace, are all acknowledged, gap-free.

Hypothesis runs in a thread with a blocking client (``websockets.sync``)
while the server, and the other client, run on the test's event loop: so
failures shrink like any Hypothesis test.  Bounded for CI: EXAMPLES
examples of up to 4 commands each, one socket per example, one command in
flight at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from server.runner import Running
from tests.fixtures.parley import WsClient, register_and_login

EXAMPLES = 300
REPLY_TIMEOUT_S = 5.0  # a command without a reply by then is a hang
OTHER_SEND_EVERY_S = 0.005
DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented_codes() -> dict[str, bool]:
    """code -> retryable, from the *Error codes* table of docs/protocol.md."""
    text = DOCS.read_text()
    table = text[text.index("## Error codes"):]
    table = table[:table.index("\n## ", 5)]
    out: dict[str, bool] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            for code in re.findall(r"`([a-z_]+)`", cells[0]):
                out[code] = cells[3].startswith("yes")
    return out


# -- strategies ------------------------------------------------------------------------

ANY_CHAR = st.characters(codec=None, exclude_categories=())  # surrogates, NUL, unassigned
# All of Unicode is vast: mix in the characters that matter here often enough.
EDGY = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\U0001f600",
                        "\u00b2", "@", "<", "\\", '"', "a", " "])
# Joined lists, not st.text: st.text never yields a surrogate, whatever its alphabet.
TEXT = (st.lists(ANY_CHAR, max_size=24).map("".join)
        | st.lists(EDGY | ANY_CHAR, min_size=1, max_size=12).map("".join))
HUGE = st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, -1, 0, 10**30, 10**4000])
SCALAR = st.none() | st.booleans() | st.integers() | HUGE | st.floats() | TEXT
JUNK = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)


@dataclasses.dataclass(frozen=True)
class Ids:
    """Real ids of the fuzzed session's world, so commands reach the actions."""

    channel: int  # the fuzzing user's channel
    other_channel: int  # a channel of the other workspace
    message: int  # a message in ``channel``
    user: int
    other_user: int


def _often(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times out of four: commands must get past the type
    checks often enough to reach the actions."""
    return st.sampled_from((True, True, True, False)).flatmap(lambda ok: good if ok else bad)


def _id(ids: Ids) -> st.SearchStrategy[Any]:
    real = st.sampled_from([ids.channel, ids.other_channel, ids.message, ids.user,
                            ids.other_user])
    return _often(real | real.map(str),
                  st.sampled_from(["0", "-1", "\u00b2", "1e3", "12abc", ""]) | HUGE | JUNK)


def _commands(ids: Ids) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    an_id = _id(ids)
    channel = _often(st.sampled_from([ids.channel, str(ids.channel)]), an_id)
    text = _often(TEXT.filter(str.strip), st.just("x" * 40_001) | st.just(f"<@{ids.user}> hi")
                  | st.just("@channel") | JUNK)
    boolean = _often(st.booleans(), JUNK)
    # Per op: the fields a well-formed command has, then the optional ones.
    fields: dict[str, tuple[dict[str, st.SearchStrategy[Any]], dict[str, st.SearchStrategy[Any]]]]
    fields = {
        "send": ({"channel_id": channel, "text": text},
                 {"client_msg_id": _often(TEXT, JUNK),
                  "thread_root_id": _often(st.just(ids.message), an_id),
                  "also_in_channel": boolean,
                  "file_ids": _often(st.just([]), st.lists(an_id, max_size=3) | JUNK)}),
        "heartbeat": ({}, {"active": boolean}),
        "resume": ({"channels": _often(st.dictionaries(
            _often(st.just(str(ids.channel)), an_id.map(str)),
            _often(st.integers(0, 5), JUNK), max_size=3), JUNK)}, {}),
        "presence.subscribe": ({"user_ids": _often(st.lists(an_id, min_size=1, max_size=4),
                                                   JUNK | st.just(list(range(1, 502))))}, {}),
        "presence.unsubscribe": ({}, {"user_ids": _often(st.lists(an_id, max_size=4), JUNK),
                                      "all": boolean}),
        "presence.set": ({}, {"status": _often(st.sampled_from(["away", "auto"]), JUNK),
                              "dnd": boolean}),
        "typing": ({"channel_id": channel}, {}),
    }

    def data(op: str) -> st.SearchStrategy[dict[str, Any]]:
        required, optional = fields[op]
        return _often(st.fixed_dictionaries(required, optional=optional),
                      st.fixed_dictionaries({}, optional={**required, **optional}))

    ops = [*sorted(fields), "send", "send"]  # the command that stores: drawn 3 times as often
    known = st.sampled_from(ops).flatmap(lambda op: st.tuples(st.just(op), data(op)))
    unknown = st.tuples(TEXT, st.dictionaries(TEXT, JUNK, max_size=3))
    return _often(known, unknown)


# A command: ("cmd", op, ref, d or a junk d) or ("raw", frame text).
REFS = itertools.count(1)
_DEEP = "[" * 100_000 + "]" * 100_000
RAW_FRAMES = st.sampled_from(["", "null", "[]", "1e999", '"op"', "{", _DEEP,
                              '{"op":"heartbeat","ref":1,"d":' + _DEEP + "}",
                              '{"op":"send","ref":"\\ud800"}', '{"op":"\\udfff","ref":3}'])


def _frames(ids: Ids) -> st.SearchStrategy[Any]:
    weird_ref = (JUNK | HUGE).filter(lambda r: r is not None)
    cmd = st.tuples(st.just("cmd"), _commands(ids), _often(st.just("counter"), weird_ref),
                    _often(st.just("map"), st.sampled_from(["junk", "absent"])), JUNK)
    return _often(cmd, st.tuples(st.just("raw"), RAW_FRAMES))


def _echoable(ref: Any) -> bool:
    """An independent statement of the protocol rule (docs/protocol.md *Envelopes*)."""
    if isinstance(ref, bool) or ref is None:
        return ref is None
    if isinstance(ref, int):
        return -(2**63) <= ref < 2**64
    if isinstance(ref, str) and len(ref) <= 64:
        try:
            ref.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return False


# -- the fuzzing client (in a thread) --------------------------------------------------


def _fuzz(url: str, token: str, ids: Ids, codes: dict[str, bool], seen: set[str]) -> None:
    """Run the Hypothesis test, one socket per example (so a failure, a
    closed socket included, shrinks to the example that caused it); ``seen``
    collects the codes and the ``op:t`` of the successes, so the caller can
    check the strategies reached the actions at all."""

    def reply_to(ws: ClientConnection, frame: str) -> dict[str, Any]:
        ws.send(frame)
        while True:
            ev = json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))  # closed: ConnectionClosed
            if "ref" in ev:  # replies carry a ref (maybe null); events never do
                return dict(ev)

    def check(ws: ClientConnection, item: Any) -> None:
        if item[0] == "raw":
            frame, want_ref = item[1], ...
        else:
            _, (op, d), ref, d_kind, junk_d = item
            env: dict[str, Any] = {"op": op, "ref": next(REFS) if ref == "counter" else ref}
            if d_kind == "map":
                env["d"] = d
            elif d_kind == "junk":
                env["d"] = junk_d
            frame = json.dumps(env)  # ensure_ascii: surrogates and NUL as escapes
            # What the server reads (two surrogate code points in a row are
            # written as an escaped pair, which decodes as one character).
            sent = json.loads(frame)["ref"]
            want_ref = sent if _echoable(sent) else None
        note(f"sent {frame[:300]!r}")  # shown with the failing example
        ev = reply_to(ws, frame)
        note(f"got {str(ev)[:300]}")
        if want_ref is not ...:
            assert ev["ref"] == want_ref, (frame[:300], ev)
        assert ev["t"] in {"ack", "error", "heartbeat_ack"}, ev
        if ev["t"] != "error":
            if item[0] == "cmd":
                seen.add(f"{item[1][0]}:{ev['t']}")
            return
        code, retryable = ev["d"]["code"], ev["d"]["retryable"]
        seen.add(code)
        assert code != "internal_error", (frame[:300], ev)
        assert code in codes, f"undocumented error code {code!r}"
        assert retryable is codes[code], (code, retryable)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(_frames(ids), min_size=1, max_size=4))
    def commands_get_typed_answers(frames: list[Any]) -> None:
        with connect(url, subprotocols=["parley.json.v1"],  # type: ignore[list-item]
                     additional_headers={"authorization": f"Bearer {token}"},
                     max_size=None, open_timeout=10) as ws:
            while json.loads(ws.recv(timeout=10)).get("t") != "hello":
                pass
            for item in frames:
                check(ws, item)
            check(ws, ("cmd", ("heartbeat", {}), "counter", "map", None))  # still open

    commands_get_typed_answers()


# -- the test ----------------------------------------------------------------------------


async def _other_client_sends(client: WsClient, channel: str, stop: asyncio.Event,
                              results: dict[int, dict[str, Any]]) -> int:
    """Send plain messages until ``stop``; every reply lands in ``results``."""

    async def read() -> None:
        while True:
            ev = await client.recv(timeout=30)
            if "ref" in ev:
                results[ev["ref"]] = ev

    reader = asyncio.create_task(read())
    sent = 0
    while not stop.is_set():
        sent += 1
        await client.send_cmd("send", {"channel_id": channel, "text": f"steady {sent}"},
                              ref=sent)
        await asyncio.sleep(OTHER_SEND_EVERY_S)
    for _ in range(200):
        if len(results) >= sent:
            break
        await asyncio.sleep(0.05)
    reader.cancel()
    return sent


@pytest.mark.timeout(240)
async def test_fuzzed_json_commands_get_typed_answers_and_never_touch_another_client(
        parley: Running) -> None:
    svc = parley.rt.services
    # The fuzzer sends as fast as replies come: lift the command rate limit
    # (rate_limited is a documented, typed answer, but 50 in a row close 4003).
    svc.settings = dataclasses.replace(svc.settings, ws_commands_per_s=1e6,
                                       ws_command_burst=1e6)
    (ada, ada_user), (bob, bob_user) = await asyncio.gather(
        register_and_login(parley, "ada@example.com", "Ada"),
        register_and_login(parley, "bob@example.com", "Bob"))
    ws1 = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Fuzzed"})
    ws2 = await bob.call("POST", "/v1/workspaces", 201, json={"name": "Steady"})
    ch1 = (await ada.call("GET", f"/v1/workspaces/{ws1['id']}/channels", 200))["channels"][0]
    ch2 = (await bob.call("GET", f"/v1/workspaces/{ws2['id']}/channels", 200))["channels"][0]
    msg = await ada.call("POST", f"/v1/workspaces/{ws1['id']}/channels/{ch1['id']}/messages",
                         201, json={"text": "a thread root"})
    ids = Ids(int(ch1["id"]), int(ch2["id"]), int(msg["id"]), int(ada_user["id"]),
              int(bob_user["id"]))
    codes = documented_codes()
    assert "invalid_text" in codes and "internal_error" in codes

    other = await WsClient.connect(parley, bob.token or "", ws2["id"])  # msgpack
    stop = asyncio.Event()
    results: dict[int, dict[str, Any]] = {}
    steady = asyncio.create_task(_other_client_sends(other, ch2["id"], stop, results))
    # ?resume=1: a connection takes one resume (later ones: resume_too_late).
    url = f"ws://127.0.0.1:{parley.gateway_port}/v1/connect?workspace_id={ws1['id']}&resume=1"
    seen: set[str] = set()
    try:
        await asyncio.to_thread(_fuzz, url, ada.token or "", ids, codes, seen)
    finally:
        stop.set()
        sent = await steady
    # The strategies reached the actions, not only the type checks.
    assert {"invalid_text", "invalid_field", "bad_envelope", "send:ack", "resume:ack",
            "typing:ack", "heartbeat:heartbeat_ack"} <= seen, seen
    assert sent > 10 and [results[i]["t"] for i in range(1, sent + 1)] == ["ack"] * sent
    assert [results[i]["d"]["seq"] for i in range(1, sent + 1)] == list(range(1, sent + 1))
    await other.close()
    for api in (ada, bob):
        await api.close()
