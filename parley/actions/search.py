"""Full-text search over the messages the caller may read.

Readable means: messages of the channels the caller is a member of, and of
public channels when their role may browse them (the same rule as
``parley.actions.channels.visible_channel``), never deleted ones.  The
filter runs inside the one SQL query, so a page never holds, and a count
never reflects, a message the caller cannot see.
"""

from __future__ import annotations

import datetime as dt

from parley.actions import validate
from parley.actions.channels import readable_channel
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import InvalidInput
from parley.model import Message
from parley.permissions import Perm, allowed, require
from parley.services import Services

PAGE_MAX = 100


async def search(svc: Services, ident: Identity, workspace_id: int, query: str, *,
                 channel_id: int | None = None, author_id: int | None = None,
                 since: dt.datetime | None = None, until: dt.datetime | None = None,
                 before_id: int | None = None, limit: int = 20) -> list[Message]:
    """Newest first; page with ``before_id`` = the last id of the previous page."""
    query = validate.search_query(query)
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    if channel_id is not None:
        await readable_channel(svc, ident, workspace_id, channel_id)
    for t in (since, until):
        if t is not None and t.tzinfo is None:
            raise InvalidInput("invalid_date", "dates need a time zone (e.g. Z or +02:00)")
    return await svc.store.search.search(
        workspace_id, ident.user_id, query,
        # An app's bot reads only the channels it is in (channels.readable_channel).
        include_public=allowed(member, Perm.BROWSE_PUBLIC_CHANNELS) and ident.app_id is None,
        channel_id=channel_id,
        author_id=author_id, since=since, until=until, before_id=before_id,
        limit=max(1, min(limit, PAGE_MAX)))
