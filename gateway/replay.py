"""Resuming a connection: the ``resume`` command, the wait for it, the
replay from PostgreSQL, and going live.  The I/O around ``gateway/resume.py``
(which decides, sans-IO); docs/protocol.md ("Reconnecting and resuming") is
the contract.

Invariant: a resumed connection goes live only through ``go_live`` with a
floor for every channel it replayed or told to resync, so each channel's
stream is either gap-free from the client's cursor or explicitly marked
(``channel.resync_required``) where it is not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gateway import resume
from gateway.protocol import ERR_RESUME_NOT_REQUESTED, ERR_RESUME_TOO_LATE, CloseCode
from gateway.protocol import codec as codecs
from gateway.resume import Phase, Reason
from gateway.router import Router
from parley.actions import delivery
from parley.model import StoreUnavailable
from parley.services import Services

if TYPE_CHECKING:
    from gateway.session import Session

# With ?resume=1, how long after hello live events wait for the resume
# command; then every channel gets channel.resync_required (reason no_resume).
RESUME_WAIT_S = 10.0


class Replays:
    """The resumes of one gateway's sessions."""

    def __init__(self, svc: Services, router: Router, alive: Callable[[Session], bool],
                 spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.svc = svc
        self.router = router
        self._alive = alive
        self._spawn = spawn

    def wait_for_resume(self, session: Session) -> None:
        """HOLDING: hello went out on a ``?resume=1`` connection."""
        session.phase = Phase.HOLDING
        session.resume_timer = asyncio.get_running_loop().call_later(
            RESUME_WAIT_S, self._timeout, session)

    def on_resume(self, session: Session, ref: Any, d: dict[str, Any]) -> None:
        """The ``resume`` command.  A malformed one is refused first, whatever
        the state (a waiting connection keeps waiting; the deadline does not
        move); a well-formed one only on a ``?resume=1`` connection still
        waiting for it."""
        try:
            cursors = resume.parse_cursors(d)
        except codecs.BadEnvelope as exc:
            session.error(ref, exc.code, exc.message)
            return
        if not session.resuming:
            session.error(ref, ERR_RESUME_NOT_REQUESTED,
                          "connect with ?resume=1 to resume; events already flow since hello")
            return
        if session.phase is not Phase.HOLDING:
            session.error(ref, ERR_RESUME_TOO_LATE,
                          "this connection no longer waits for a resume (one was handled, or "
                          f"{RESUME_WAIT_S:g} s passed); reconnect with ?resume=1")
            return
        self._start(session, cursors, Reason.NOT_NAMED, ref, ack=True)

    def _timeout(self, session: Session) -> None:
        """No resume within RESUME_WAIT_S of hello: as if it named no channel."""
        session.resume_timer = None
        if session.phase is Phase.HOLDING and self._alive(session):
            self._start(session, {}, Reason.NO_RESUME, None, ack=False)

    def _start(self, session: Session, cursors: dict[int, int], unnamed: Reason,
               ref: Any, *, ack: bool) -> None:
        session.phase = Phase.REPLAYING
        if session.resume_timer is not None:
            session.resume_timer.cancel()
            session.resume_timer = None
        self._spawn(self._replay(session, cursors, unnamed, ref, ack))

    async def _replay(self, session: Session, cursors: dict[int, int], unnamed: Reason,
                      ref: Any, ack: bool) -> None:
        """REPLAYING: give every channel of the session its ``Decision``
        (replay from the cursor, or ``channel.resync_required``), then ack
        and go live with each channel's floor at what the client was given.

        A channel left meanwhile stops being replayed (its ``channel.left``
        is sent as it arrives and ends it); one joined meanwhile is not part
        of the plan (its ``channel.joined`` says where it starts).
        """
        limit = self.svc.settings.resume_max_events
        wid = session.workspace_id
        plan = resume.plan(cursors, session.channels)
        floors: dict[int, int] = {}
        resync: list[int] = []
        count = 0
        try:
            for cid, cursor in plan.channels:
                if cid not in session.channels:
                    continue
                head = await delivery.channel_position(self.svc, wid, cid)
                decision = resume.decide(cursor, head, limit, unnamed)
                if decision.reason is None:
                    after = decision.from_seq - 1
                    while after < decision.to_seq:
                        page = await delivery.events_after(self.svc, wid, cid, after)
                        if cid not in session.channels or not self._alive(session):
                            break
                        if not page:
                            break
                        for seq, payload in page:
                            session.send_frame(*self.router.frames(payload))
                            after = seq
                        count += len(page)
                    if after >= decision.to_seq:
                        floors[cid] = after
                        continue
                    decision = resume.Decision(after + 1, decision.to_seq, Reason.HISTORY_SHORT)
                if cid in session.channels and self._alive(session):
                    session.send(resume.resync_event(cid, decision))
                    resync.append(cid)
                    floors[cid] = decision.to_seq
        except StoreUnavailable:
            # What was replayed is gap-free up to the client's new cursors, so
            # a later resume from them loses nothing.
            session.conn.close(CloseCode.INTERNAL, "history unavailable; reconnect and resume")
            return
        if not self._alive(session):
            return
        if ack:
            session.reply(ref, {"replayed": count, "resync_required": resync,
                                "ignored": plan.ignored})
        self.go_live(session, floors)

    def go_live(self, session: Session, floors: dict[int, int]) -> None:
        """LIVE: send the held events above each channel's floor, in order;
        from now on events are sent as they arrive (see resume.Hold.release)."""
        held, session.held = session.held, None
        session.phase = Phase.LIVE
        if held is None or held.overflowed:
            return  # closing (4004)
        items, live_floors = held.release(floors, session.channels, self.router.channel_position)
        for binary, text in items:
            session.send_frame(binary, text)
        session.floors = live_floors or None
        self.router.holding_changed(session, session.channels)
