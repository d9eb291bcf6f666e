"""What counts as a failed try for an app's health (pure:
``parley.actions.app_health.succeeded``), beside the dispatcher's own
reading of the same answers (``app_events.judge``)."""

from __future__ import annotations

import pytest

from parley.actions import app_events as wire
from parley.actions.app_health import succeeded
from parley.ports.outbound import (
    OutboundError,
    OutboundFailed,
    OutboundRefused,
    OutboundResponse,
    OutboundTimeout,
)

NO_RETRY = (("x-slack-no-retry", "1"),)


def _answer(status: int, headers: tuple[tuple[str, str], ...] = ()) -> OutboundResponse:
    return OutboundResponse(status=status, headers=headers, body=b"")


@pytest.mark.parametrize(("result", "ok"), [
    (_answer(200), True),
    (_answer(204), True),
    (_answer(200, NO_RETRY), True),
    (_answer(404), True),  # no listener: a final answer from a running app
    (_answer(500, NO_RETRY), False),  # final (not retried), but a failure
    (_answer(500), False),
    (_answer(302), False),
    (_answer(429), False),
    (OutboundTimeout("slow"), False),
    (OutboundRefused("private address"), False),
    (OutboundFailed("connection reset"), False),
])
def test_what_counts_as_a_success(result: OutboundResponse | OutboundError, ok: bool) -> None:
    assert succeeded(result) is ok
    if ok:  # a success is always final for the dispatcher too
        assert wire.judge(result).final
