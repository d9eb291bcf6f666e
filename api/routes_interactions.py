"""Interactivity: a member presses a button in an app's message (the app
gets Slack's signed ``block_actions`` payload; parley/actions/interactions.py
has the rules)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Mutator, Svc
from api.params import IdPath
from api.schemas import ErrorEnvelope
from parley.actions import interactions

router = APIRouter(tags=["interactivity"])
MESSAGE = "/v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}"


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action_id: str = Field(min_length=1, max_length=interactions.ACTION_ID_MAX,
                           description="The button's `action_id`")
    block_id: str | None = Field(
        default=None, min_length=1, max_length=interactions.ACTION_ID_MAX,
        description="The block holding it, when several buttons share the `action_id` "
                    "(a block without one is named `b<index>`)")
    value: str | None = Field(
        default=None, min_length=1, max_length=interactions.VALUE_MAX,
        description="Picks the button with this `value` among those with the `action_id`; "
                    "the app always receives the button's own value")


class ActionOut(BaseModel):
    ok: bool = Field(description="Always true: the app acknowledged")


@router.post(MESSAGE + "/actions", response_model=ActionOut, responses={
    404: {"model": ErrorEnvelope,
          "description": "`channel_not_found` (also for a channel you cannot see), "
                         "`message_not_found`, `action_not_found` (no such button), "
                         "`app_not_installed` (the app that posted it was uninstalled)"},
    409: {"model": ErrorEnvelope,
          "description": "`app_not_interactive`: the app has no interactivity request URL "
                         "(or no app posted the message)"},
    424: {"model": ErrorEnvelope,
          "description": "The app did not answer 2xx in time (`app_did_not_respond`); retry"}})
async def press_button(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath,
                       body: ActionIn, me: Mutator, s: Svc, request: Request) -> ActionOut:
    """Press a button in the blocks of a message an app posted, in a channel
    you can see.  The app gets Slack's signed `block_actions` payload and has
    3 s to acknowledge; what it does then (replace or delete the message,
    post in the channel, show you an ephemeral message) arrives as events.
    `400 unsupported_element` for an element other than a button."""
    base = str(request.base_url).rstrip("/")
    await interactions.press(s, me, workspace_id, channel_id, message_id, body.action_id,
                             block_id=body.block_id, value=body.value, base_url=base)
    return ActionOut(ok=True)
