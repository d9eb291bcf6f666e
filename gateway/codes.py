"""Wire constants of the Parley gateway protocol (docs/protocol.md).

Close codes 4000-4999 are ours (RFC 6455 7.4.2 reserves them for
applications).  A client that receives one knows what to do next.
"""

from __future__ import annotations

from enum import IntEnum

SUBPROTOCOL_MSGPACK = "parley.msgpack.v1"  # binary frames, msgpack envelopes
SUBPROTOCOL_JSON = "parley.json.v1"  # text frames, JSON envelopes, ids as strings
SUBPROTOCOLS = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)

CONNECT_PATH = "/v1/connect"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    AUTH_FAILED = 4001  # token expired or session revoked: get a new token, then reconnect
    SLOW_CONSUMER = 4002  # outbound buffer overflowed: reconnect and resume
    RATE_LIMITED = 4003  # too many commands: back off (reason: retry_after_ms), then reconnect
    RESYNC_REQUIRED = 4004  # the server cannot replay what you missed: refetch history
    SERVER_DRAINING = 4005  # server going away: reconnect after the reason's retry_after_ms
    MEMBERSHIP_ENDED = 4006  # removed or deactivated in this workspace: do not reconnect
    # 4007 is not used: the per-user connection cap is refused at the upgrade
    # (HTTP 429 too_many_connections).  Do not reuse it for something else.


# How often clients should send `heartbeat`, announced in `hello`.
HEARTBEAT_INTERVAL_MS = 30_000
