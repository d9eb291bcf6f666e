"""The Parley gateway protocol, v1 (docs/protocol.md): every word of it in one place.

This package is the protocol's one room:

* here: the subprotocols, the connect path, every command (``OP_*``) and
  gateway event (``EV_*``; the domain's events are ``parley.events``), the
  gateway's own error codes (``ERR_*``) and the close codes (``CloseCode``);
* ``codec``: the two envelope codecs (msgpack and JSON);
* ``spec``: the command, event and close-code tables as data, from which
  docs/protocol.md's tables are generated (``python -m gateway.protocol.spec
  --write``; ``tests/test_protocol_doc.py`` fails when they differ).

Close codes 4000-4999 are ours (RFC 6455 7.4.2 reserves them for
applications).  A client that receives one knows what to do next.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

SUBPROTOCOL_MSGPACK: Final = "parley.msgpack.v1"  # binary frames, msgpack envelopes
SUBPROTOCOL_JSON: Final = "parley.json.v1"  # text frames, JSON envelopes, ids as strings
SUBPROTOCOLS: Final = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)

CONNECT_PATH: Final = "/v1/connect"

# -- commands (client to server) -------------------------------------------------
OP_SEND: Final = "send"  # post a message (acked after it is durable)
OP_HEARTBEAT: Final = "heartbeat"  # presence activity; liveness is the server's pings
OP_RESUME: Final = "resume"  # on a ?resume=1 connection: replay from the client's cursors
OP_PRESENCE_SUBSCRIBE: Final = "presence.subscribe"  # d: user_ids
OP_PRESENCE_UNSUBSCRIBE: Final = "presence.unsubscribe"  # d: user_ids, or all: true
OP_PRESENCE_SET: Final = "presence.set"  # d: status ("away" | "auto") and/or dnd (bool)
OP_TYPING: Final = "typing"  # d: channel_id
OP_COMMAND: Final = "command"  # d: channel_id, command, text: run an app's slash command
OP_ACTION: Final = "action"  # d: channel_id, message_id, action_id: press a message's button

# -- events the gateway itself builds (the domain's: parley.events) ---------------
EV_HELLO: Final = "hello"  # the first frame of every connection
EV_ACK: Final = "ack"  # a command's result, with its ref
EV_ERROR: Final = "error"  # a command's typed refusal, with its ref
EV_HEARTBEAT_ACK: Final = "heartbeat_ack"  # to a heartbeat that carried a ref
EV_RESYNC_REQUIRED: Final = "channel.resync_required"  # d: channel_id, from_seq, to_seq, reason
EV_PRESENCE_CHANGED: Final = "presence.changed"  # d: user_id, status, dnd
EV_TYPING: Final = "typing"  # d: channel_id, user_id, expires_in_ms

# -- the gateway's own error codes (docs/protocol.md, "Error codes") --------------
ERR_BAD_ENVELOPE: Final = "bad_envelope"
ERR_WRONG_FRAME_TYPE: Final = "wrong_frame_type"
ERR_UNKNOWN_OP: Final = "unknown_op"
ERR_INVALID_FIELD: Final = "invalid_field"
ERR_INVALID_TEXT: Final = "invalid_text"
ERR_RATE_LIMITED: Final = "rate_limited"  # retryable: retry_after_ms
ERR_SERVER_DRAINING: Final = "server_draining"  # retryable: reconnect elsewhere
ERR_STORE_UNAVAILABLE: Final = "store_unavailable"  # retryable: nothing was saved
ERR_INTERNAL: Final = "internal_error"
ERR_RESUME_NOT_REQUESTED: Final = "resume_not_requested"  # connected without ?resume=1
ERR_RESUME_TOO_LATE: Final = "resume_too_late"  # a resume was handled, or the wait ran out
ERR_PRESENCE_SUBSCRIPTION_LIMIT: Final = "presence_subscription_limit"
ERR_PRESENCE_UNAVAILABLE: Final = "presence_unavailable"  # retryable
ERR_USER_NOT_FOUND: Final = "user_not_found"
ERR_CHANNEL_NOT_FOUND: Final = "channel_not_found"


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
HEARTBEAT_INTERVAL_MS: Final = 30_000
