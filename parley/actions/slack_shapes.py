"""Parley's records in Slack's shapes: messages, conversations, users,
files, the team and bots (pure functions of what the actions returned).
The Web API (api/slack) answers with them, and the domain sends them too
(an interaction payload carries its message as conversations.history
shows it), so they live here rather than in an adapter.

Where Slack has a field Parley has no data for, it gets Slack's neutral
value (``"is_shared": false``, an empty ``profile.image_*`` set) rather
than being left out, since apps index into these objects without checks.
What is left out on purpose is listed in docs/apps.md.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from collections.abc import Mapping, Sequence
from typing import Any

from parley import slack_ids as ids
from parley.actions.app_events import extras_fields
from parley.actions.channels import DEFAULT_CHANNEL
from parley.actions.messages import MessageView
from parley.ids import IdAllocator
from parley.model import Channel, FileRecord, Member, Message, Workspace
from parley.permissions import Role
from parley.ports.apps import AppRecord


def _secs(t: dt.datetime) -> int:
    return int(t.timestamp())


def message_ts(m: Message) -> str:
    return ids.ts(m.created_at, m.seq)


def message(v: MessageView, *, channel: Channel | None = None,
            roots: Mapping[int, Message] | None = None,
            base_url: str = "", channel_ref: str | None = None) -> dict[str, Any]:
    """A message object (``conversations.history`` and friends).  ``roots``:
    the thread roots of replies on the page, for their ``thread_ts``;
    ``channel`` (or ``channel_ref``, its Web API id) names it in ``pinned_to``."""
    m = v.message
    out: dict[str, Any] = {"type": "message", "ts": message_ts(m), "user": ids.user(m.user_id),
                           "text": ids.text_out(m.text), "team": ids.team(m.workspace_id)}
    if m.client_msg_id is not None:
        out["client_msg_id"] = m.client_msg_id
    out.update(extras_fields(v.extras))
    if m.deleted:
        out.update(subtype="tombstone", text="This message was deleted.", hidden=True)
    if m.edited_at is not None:
        out["edited"] = {"user": ids.user(m.user_id), "ts": ids.time_ts(m.edited_at)}
    if m.thread_root_id is not None:
        root = (roots or {}).get(m.thread_root_id)
        if root is not None:
            out["thread_ts"] = message_ts(root)
            out["parent_user_id"] = ids.user(root.user_id)
        if m.also_in_channel:
            out.setdefault("subtype", "thread_broadcast")
    elif v.thread is not None and v.thread.reply_count:
        out.update(thread_ts=out["ts"], reply_count=v.thread.reply_count,
                   reply_users=[ids.user(u) for u in v.thread.replier_ids],
                   reply_users_count=len(v.thread.replier_ids))
    if v.reactions:
        out["reactions"] = [{"name": r.emoji, "users": [ids.user(u) for u in r.user_ids],
                             "count": len(r.user_ids)} for r in v.reactions]
    if v.pinned:
        ref = channel_ref or (ids.channel(channel.kind, channel.id) if channel else None)
        out["pinned_to"] = [ref] if ref else []
    if v.files and not m.deleted:
        out["files"] = [file(f, base_url) for f in v.files]
        out["upload"] = False
    return out


def text_field(value: str, creator: int | None) -> dict[str, Any]:
    return {"value": value, "creator": ids.user(creator) if creator and value else "",
            "last_set": 0}


def conversation(c: Channel, *, is_member: bool | None = None, num_members: int | None = None,
                 dm_user: int | None = None, unread: int | None = None) -> dict[str, Any]:
    created = _secs(IdAllocator.timestamp(c.id))
    is_dm = c.kind == "dm"
    out: dict[str, Any] = {
        "id": ids.channel(c.kind, c.id), "created": created, "is_archived": c.archived,
        "is_im": is_dm, "is_mpim": c.kind == "group_dm",
        "is_private": c.kind != "public", "context_team_id": ids.team(c.workspace_id),
        "is_shared": False, "is_org_shared": False, "is_ext_shared": False,
        "is_pending_ext_shared": False,
    }
    if is_dm:
        if dm_user is not None:
            out["user"] = ids.user(dm_user)
        out["is_user_deleted"] = False
    else:
        name = c.name or ("mpdm-" + ids.enc(c.id).lower())
        out.update(name=name, name_normalized=name, is_channel=c.kind in {"public", "private"},
                   is_group=False, is_general=c.name == DEFAULT_CHANNEL,
                   creator=ids.user(c.created_by), unlinked=0,
                   topic=text_field(c.topic, c.created_by),
                   purpose=text_field(c.purpose, c.created_by), previous_names=[])
    if is_member is not None:
        out["is_member"] = is_member
    if num_members is not None:
        out["num_members"] = num_members
    if unread is not None:
        out["unread_count"] = unread
        out["unread_count_display"] = unread
    return out


def handle(display_name: str, user_id: int) -> str:
    """A ``name`` (Slack's legacy handle): lower-case, no spaces, unique
    enough for display; apps must use ids, as Slack tells them to."""
    base = "".join(ch if ch.isalnum() or ch in "._-" else "." for ch in display_name.lower())
    return base.strip(".") or ids.user(user_id).lower()


def user(m: Member, *, email: str | None = None, app: AppRecord | None = None) -> dict[str, Any]:
    role = Role(m.role)
    profile: dict[str, Any] = {
        "display_name": m.display_name, "display_name_normalized": m.display_name,
        "real_name": m.display_name, "real_name_normalized": m.display_name,
        "first_name": "", "last_name": "", "title": "", "phone": "", "skype": "",
        "status_text": "", "status_emoji": "", "team": ids.team(m.workspace_id),
        "avatar_hash": "", "image_24": "", "image_48": "", "image_72": "", "image_192": "",
    }
    if email is not None:
        profile["email"] = email
    if app is not None:
        profile.update(bot_id=ids.bot(app.bot_id), api_app_id=ids.app(app.id),
                       always_active=False)
    return {
        "id": ids.user(m.user_id), "team_id": ids.team(m.workspace_id),
        "name": handle(m.display_name, m.user_id), "deleted": not m.active,
        "real_name": m.display_name, "tz": "UTC", "tz_label": "Coordinated Universal Time",
        "tz_offset": 0, "is_admin": role in {Role.OWNER, Role.ADMIN},
        "is_owner": role is Role.OWNER, "is_primary_owner": role is Role.OWNER,
        "is_restricted": role is Role.GUEST, "is_ultra_restricted": False,
        "is_bot": m.is_bot, "is_app_user": False, "updated": 0, "is_email_confirmed": True,
        "profile": profile,
    }


def file(f: FileRecord, base_url: str, *, title: str | None = None,
         shares: Sequence[Channel] = ()) -> dict[str, Any]:
    name = f.name
    mimetype = f.content_type or f.declared_type
    ext = (mimetypes.guess_extension(mimetype) or "").lstrip(".") or name.rpartition(".")[2]
    fid = ids.file(f.id)
    private = f"{base_url}/files-pri/{ids.team(f.workspace_id)}-{fid}/{name}"
    out: dict[str, Any] = {
        "id": fid, "created": _secs(f.created_at), "timestamp": _secs(f.created_at),
        "name": name, "title": title if title is not None else name, "mimetype": mimetype,
        "filetype": ext.lower(), "pretty_type": ext.upper(), "user": ids.user(f.uploader_id),
        "user_team": ids.team(f.workspace_id), "editable": False, "size": f.size,
        "mode": "hosted", "is_external": False, "external_type": "", "is_public": False,
        "public_url_shared": False, "display_as_bot": False, "username": "",
        "url_private": private, "url_private_download": private + "?download=1",
        "permalink": f"{base_url}/files/{ids.user(f.uploader_id)}/{fid}/{name}",
        "file_access": "visible",
    }
    if f.state != "ready":
        out["file_access"] = "file_not_found" if f.state == "deleted" else "check_file_info"
    if f.width is not None and f.height is not None:
        out.update(original_w=f.width, original_h=f.height)
    if f.thumbnail_key is not None:
        out["thumb_360"] = private + "?thumb=1"
    if shares:
        out["channels"] = [ids.channel(c.kind, c.id) for c in shares if c.kind == "public"]
        out["groups"] = [ids.channel(c.kind, c.id) for c in shares if c.kind == "private"]
        out["ims"] = [ids.channel(c.kind, c.id) for c in shares if c.kind in {"dm", "group_dm"}]
    return out


def team(w: Workspace, base_url: str) -> dict[str, Any]:
    domain = handle(w.name, w.id)
    return {"id": ids.team(w.id), "name": w.name, "url": f"{base_url}/", "domain": domain,
            "email_domain": "", "icon": {"image_default": True}, "avatar_base_url": "",
            "is_verified": False}


def bot(app: AppRecord) -> dict[str, Any]:
    return {"id": ids.bot(app.bot_id), "deleted": app.deleted or not app.installed,
            "name": app.bot_name, "updated": _secs(app.updated_at), "app_id": ids.app(app.id),
            "user_id": ids.user(app.bot_user_id), "icons": {}}
