"""The numbers, dates and sizes clients send, bounded once for every route.

Rule: a value that the database or Python cannot hold never reaches an
action.  Each type below carries its range, so FastAPI refuses anything
outside it with 400 ``invalid_request`` (``details`` names the parameter,
e.g. ``["query", "since"]``) before the route runs, and the range appears in
/openapi.json (``minimum`` / ``maximum``), where ``tests/api/test_bad_input.py``
checks that every integer a client can send has both and that each is
enforced.  Routes narrow a range (a page size's maximum) with ``Query(le=...)``
but never widen one.

* Ids are snowflakes: 1 .. 2**63 - 1 (PostgreSQL BIGINT).
* Sequence numbers and cursors: 0 .. 2**63 - 1 (0: before the first).
* Timestamps: ISO 8601 with a time zone, and within Python's calendar once
  converted to UTC (years 1 to 9999): ``0001-01-01T00:00:00+14:00`` is a
  moment of year 0, which asyncpg cannot encode (it used to be a 500).
  They reach actions in UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field

INT64_MAX = 2**63 - 1  # PostgreSQL BIGINT

Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
Seq = Annotated[int, Field(ge=0, le=INT64_MAX)]
PageSize = Annotated[int, Field(ge=1)]  # each route adds its maximum: Query(le=...)


def _utc(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("a time needs a time zone (Z or +02:00)")
    try:
        return t.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("a time must fall in the years 1 to 9999 in UTC") from None


Timestamp = Annotated[dt.datetime, AfterValidator(_utc)]

IdPath = Annotated[Id, Path(description="A snowflake id")]
Cursor = Annotated[Seq, Query(description="From next_cursor")]
