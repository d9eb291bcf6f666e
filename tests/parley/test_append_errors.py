"""What a client is told when the writer refuses a message.

Every code the appender port documents (parley/ports/appender.py) maps to one
typed error with a fixed status and retry flag, and the mapping matches the
error table of docs/protocol.md, which is what clients are written from.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from parley.actions.messages import _append_error
from parley.model import AppendRejected, StoreUnavailable

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# code from the writer -> (code the client sees, HTTP status, retryable)
CASES = {
    # Never reveal that a private channel exists to a non-member.
    "not_in_channel": ("channel_not_found", 404, False),
    "channel_archived": ("channel_archived", 403, False),
    "invalid_text": ("invalid_text", 400, False),
    "invalid_message": ("invalid_message", 400, False),
    # The first send under this client_msg_id in the batch failed: nothing is
    # stored under the key, so a retry is a fresh attempt and must be allowed.
    "duplicate_in_flight": ("duplicate_in_flight", 503, True),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_rejection_has_one_typed_answer(code: str) -> None:
    err = _append_error(AppendRejected(code, "x"))
    assert (err.code, err.status, err.retryable) == CASES[code]


def test_store_outage_is_retryable_and_says_nothing_was_saved() -> None:
    err = _append_error(StoreUnavailable("down"))
    assert (err.code, err.status, err.retryable) == ("store_unavailable", 503, True)


def _doc_row(code: str) -> list[str]:
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and re.fullmatch(rf"(`[a-z_]+`, )*`{code}`(, `[a-z_]+`)*", cells[0]):
            return cells
    raise AssertionError(f"{code} is not in the error table of docs/protocol.md")


@pytest.mark.parametrize("code", sorted(CASES))
def test_the_protocol_doc_says_the_same(code: str) -> None:
    client_code, status, retryable = CASES[code]
    row = _doc_row(client_code)
    assert str(status) in row[2]
    assert row[3].startswith("yes" if retryable else "no")
