"""Socket Mode across processes: a slash command or a button press taken
by one process reaches the app's socket held by another, over the hub.

Theory of operation (topics, JSON payloads):

1. The asking process subscribes ``smr:<request>`` and publishes
   ``{"req"}`` to ``sma:<app id>``, which every process holding a socket of
   that app subscribes (while it holds one).
2. Each holder answers ``{"offer": <its node>}`` on ``smr:<request>``; the
   asker takes the first offer (so one socket gets the envelope, however
   many processes hold one) and publishes the envelope to ``smn:<node>``.
3. That node sends it to one of its sockets (``SocketModeLinks.request``)
   and publishes ``{"ack": payload}`` or ``{"error": "timeout" |
   "failed"}`` on ``smr:<request>``.

The hub is at most once: a lost offer, envelope or ack is a timeout for
the asker (``424 app_did_not_respond``, as when the app does not answer),
never a second delivery.  Events do not come this way: the gateway holding
a socket claims them from PostgreSQL (``EventDispatcher(links=...)``).
A process holding a socket of the app itself sends to it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Coroutine, Sequence
from typing import Any

from parley.ports.app_links import AppLinks
from parley.ports.hub import Hub
from parley.ports.outbound import OutboundFailed, OutboundTimeout

log = logging.getLogger("parley.socket_mode")

APP_TOPIC = "sma"  # sma:<app id>: who holds a socket of this app?
NODE_TOPIC = "smn"  # smn:<node>: an envelope for this node's sockets
REPLY_TOPIC = "smr"  # smr:<request>: offers and the ack, for the asker
PREFIXES = (APP_TOPIC, NODE_TOPIC, REPLY_TOPIC)
OFFER_WAIT_S = 1.0  # a holder answers within a hub round trip; else no socket anywhere


class _Asking:
    __slots__ = ("ack", "offer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.offer: asyncio.Future[str] = loop.create_future()
        self.ack: asyncio.Future[dict[str, Any]] = loop.create_future()


class SocketRelay:
    """``Services.app_links`` of a process: its own sockets (``local``, None
    in a process without a gateway) first, else the relay; also the hub
    handler of the three topics."""

    def __init__(self, hub: Hub, local: AppLinks | None = None) -> None:
        self.hub = hub
        self.local = local
        self.node = secrets.token_hex(8)
        self._asking: dict[str, _Asking] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def public_url(self) -> str:
        return self.local.public_url if self.local is not None else ""

    async def start(self) -> None:
        """After the hub started: a node with sockets takes envelopes."""
        if self.local is not None:
            await self.hub.subscribe(f"{NODE_TOPIC}:{self.node}")

    def holding(self, app_id: int, held: bool) -> None:
        """The first socket of the app opened here (``held``) or the last one closed."""
        topic = f"{APP_TOPIC}:{app_id}"
        self._spawn(self.hub.subscribe(topic) if held else self.hub.unsubscribe(topic))

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()

    # -- AppLinks ---------------------------------------------------------------

    def app_ids(self) -> Sequence[int]:
        return self.local.app_ids() if self.local is not None else ()

    async def request(self, app_id: int, kind: str, payload: dict[str, Any], *,
                      timeout_s: float, retry_attempt: int = 0,
                      retry_reason: str | None = None,
                      accepts_response_payload: bool = False) -> dict[str, Any] | None:
        if self.local is not None and app_id in self.local.app_ids():
            return await self.local.request(app_id, kind, payload, timeout_s=timeout_s,
                                            retry_attempt=retry_attempt,
                                            retry_reason=retry_reason,
                                            accepts_response_payload=accepts_response_payload)
        req = secrets.token_hex(12)
        asking = _Asking(asyncio.get_running_loop())
        self._asking[req] = asking
        reply = f"{REPLY_TOPIC}:{req}"
        try:
            await self.hub.subscribe(reply)
            await self.hub.publish(f"{APP_TOPIC}:{app_id}", _encode({"req": req}))
            try:
                node = await asyncio.wait_for(asking.offer, OFFER_WAIT_S)
            except TimeoutError:
                raise OutboundFailed("the app has no open Socket Mode connection") from None
            await self.hub.publish(f"{NODE_TOPIC}:{node}", _encode({
                "req": req, "app": app_id, "kind": kind, "payload": payload,
                "timeout_s": timeout_s, "retry_attempt": retry_attempt,
                "retry_reason": retry_reason, "arp": accepts_response_payload}))
            try:
                answer = await asyncio.wait_for(asking.ack, timeout_s + OFFER_WAIT_S)
            except TimeoutError:
                raise OutboundTimeout(f"no ack within {timeout_s} s") from None
        except ConnectionError as exc:  # the hub is down
            raise OutboundFailed(f"the hub is unavailable ({exc})") from exc
        finally:
            self._asking.pop(req, None)
            with contextlib.suppress(Exception):
                await self.hub.unsubscribe(reply)
        if answer.get("error") == "timeout":
            raise OutboundTimeout(f"no ack within {timeout_s} s")
        if "error" in answer:
            raise OutboundFailed("the app's socket closed before its ack")
        ack = answer.get("ack")
        return ack if isinstance(ack, dict) else None

    # -- HubHandler -------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        prefix, _, key = topic.partition(":")
        try:
            msg = json.loads(payload)
        except ValueError:
            log.warning("undecodable Socket Mode relay payload on %s", topic)
            return
        if not isinstance(msg, dict):
            return
        if prefix == APP_TOPIC:
            req = msg.get("req")
            if (isinstance(req, str) and self.local is not None and key.isdigit()
                    and int(key) in self.local.app_ids()):
                self._spawn(self.hub.publish(f"{REPLY_TOPIC}:{req}",
                                             _encode({"offer": self.node})))
        elif prefix == NODE_TOPIC and key == self.node:
            self._spawn(self._serve(msg))
        elif prefix == REPLY_TOPIC:
            asking = self._asking.get(key)
            if asking is None:
                return
            offer = msg.get("offer")
            if isinstance(offer, str):
                if not asking.offer.done():
                    asking.offer.set_result(offer)
            elif not asking.ack.done():
                asking.ack.set_result(msg)

    def on_reset(self) -> None:
        """Lost payloads are timeouts for their askers; nothing to rebuild."""

    async def _serve(self, msg: dict[str, Any]) -> None:
        """An envelope relayed to this node: send it, publish the outcome."""
        req = msg.get("req")
        app_id, kind, payload = msg.get("app"), msg.get("kind"), msg.get("payload")
        if (not isinstance(req, str) or not isinstance(app_id, int) or not isinstance(kind, str)
                or not isinstance(payload, dict) or self.local is None):
            return
        timeout_s = float(msg.get("timeout_s") or 3.0)
        try:
            ack = await self.local.request(app_id, kind, payload, timeout_s=timeout_s,
                                           retry_attempt=int(msg.get("retry_attempt") or 0),
                                           retry_reason=msg.get("retry_reason"),
                                           accepts_response_payload=bool(msg.get("arp")))
            out: dict[str, Any] = {"ack": ack}
        except OutboundTimeout:
            out = {"error": "timeout"}
        except OutboundFailed:
            out = {"error": "failed"}
        await self.hub.publish(f"{REPLY_TOPIC}:{req}", _encode(out))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("Socket Mode relay: %s", task.exception())


def _encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()
