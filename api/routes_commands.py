"""Slash commands: a member runs ``/command text`` in a channel (the app's
immediate answer comes back; parley/actions/commands.py has the rules)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Mutator, Svc
from api.params import IdPath
from api.schemas import ErrorEnvelope, MessageOut
from parley.actions import commands

router = APIRouter(tags=["commands"])
CHANNEL = "/v1/workspaces/{workspace_id}/channels/{channel_id}"


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=2, max_length=32, description="e.g. `/echo`")
    text: str = Field(default="", max_length=commands.TEXT_MAX,
                      description="What follows the command")


class CommandOut(BaseModel):
    response_type: Literal["ephemeral", "in_channel"] | None = Field(
        description="null: the app only acknowledged (it may answer later through its "
                    "response_url)")
    text: str = Field(description="The app's reply (ephemeral: shown to you only)")
    blocks: list[dict[str, Any]] | None = None
    message: MessageOut | None = Field(
        default=None, description="in_channel: the message the app's bot posted")
    warning: str | None = Field(
        default=None, description="`not_in_channel`: an in_channel reply was shown to you "
                                  "only, since the app's bot is not in the channel")


@router.post(CHANNEL + "/commands", response_model=CommandOut, responses={
    424: {"model": ErrorEnvelope,
          "description": "The app did not answer 2xx in time (`app_did_not_respond`); retry"}})
async def run_command(workspace_id: IdPath, channel_id: IdPath, body: CommandIn, me: Mutator,
                      s: Svc, request: Request) -> CommandOut:
    """Run a slash command of an installed app in a channel you can see.
    The app gets Slack's signed, form-encoded request and has 3 s to answer:
    its ephemeral reply is in this answer (and on your sockets), an
    in_channel one is posted in the channel as its bot.  `404
    unknown_command`; `424 app_did_not_respond` when it did not answer (nothing else
    happened)."""
    base = str(request.base_url).rstrip("/")
    reply = await commands.invoke(s, me, workspace_id, channel_id, body.command, body.text,
                                  base_url=base)
    msg = None
    if reply.message is not None:
        msg = MessageOut.of(reply.message, (), reply.extras)
    return CommandOut(response_type=reply.response_type,  # type: ignore[arg-type]
                      text=reply.text, blocks=reply.blocks, message=msg,
                      warning=reply.warning)
