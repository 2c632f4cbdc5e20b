"""Mattermost actions: post (in a channel or thread, or to a person directly), edit a post, react,
notify the team's channel. Commands (`mattermost.command.<name>`) and agent tools alike, delivered
with retries (429 with Retry-After and 5xx retried; 400, 401, 403, 404 parked).

A post carries the command's id in its props (`iw_command_id`). A command run again (a retry, or
a redelivery after a crash) first looks for its post among the channel's posts since the command
was made, so a post the server took just before the answer was lost is not made twice; for that,
a failed post is retried by the worker (a new run, which looks first), not inside the run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.mattermost import api
from integrations.mattermost.config import MattermostConfig
from worker.sdk import Context, PermanentError

MAX_MESSAGE = 16383
COMMAND_PROP = "iw_command_id"


class PostMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel_id: str | None = Field(default=None, description="The channel to post in.")
    user_id: str | None = Field(default=None, description="Or: a person to message directly.")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE, description="Markdown.")
    root_id: str | None = Field(default=None, description="Reply in this thread (the root post's id).")
    props: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> PostMessageInput:
        if (self.channel_id is None) == (self.user_id is None):
            raise ValueError("give channel_id or user_id (one of them)")
        return self


class PostOutput(BaseModel):
    id: str
    channel_id: str


class UpdateMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    post_id: str = Field(min_length=1)
    message: str = Field(min_length=1, max_length=MAX_MESSAGE)


class AddReactionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    post_id: str = Field(min_length=1)
    emoji_name: str = Field(min_length=1, description="Without colons, e.g. `eyes`.")


class AddReactionOutput(BaseModel):
    post_id: str
    emoji_name: str


class NotifyTeamInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=MAX_MESSAGE)


async def _post(
    ctx: Context, channel_id: str, message: str, root_id: str | None = None, props: Any = None
) -> PostOutput:
    if ctx.is_repeat:  # an earlier run may have posted it
        earlier = await _already_posted(ctx, channel_id)
        if earlier is not None:
            return earlier
    body: dict[str, Any] = {
        "channel_id": channel_id,
        "message": message,
        "props": {**(props or {}), COMMAND_PROP: ctx.envelope.id},
    }
    if root_id:
        body["root_id"] = root_id
    created = await api.call(ctx, "POST", "/posts", json=body, attempts=1)
    return PostOutput(id=str(created["id"]), channel_id=str(created.get("channel_id") or channel_id))


async def _already_posted(ctx: Context, channel_id: str) -> PostOutput | None:
    since = int((ctx.envelope.created_at.timestamp() - 60) * 1000)
    listed = await api.call(ctx, "GET", f"/channels/{channel_id}/posts", params={"since": since})
    for post in ((listed or {}).get("posts") or {}).values():
        if isinstance(post, dict) and (post.get("props") or {}).get(COMMAND_PROP) == ctx.envelope.id:
            return PostOutput(id=str(post["id"]), channel_id=channel_id)
    return None


async def post_message(ctx: Context, request: PostMessageInput) -> PostOutput:
    channel_id = request.channel_id
    if channel_id is None:
        assert request.user_id is not None
        me = await api.me(ctx)
        channel = await api.call(ctx, "POST", "/channels/direct", json=[request.user_id, me.id])
        channel_id = str(channel["id"])
    return await _post(ctx, channel_id, request.message, request.root_id, request.props)


async def update_message(ctx: Context, request: UpdateMessageInput) -> PostOutput:
    patched = await api.call(ctx, "PUT", f"/posts/{request.post_id}/patch", json={"message": request.message})
    return PostOutput(id=str(patched["id"]), channel_id=str(patched.get("channel_id") or ""))


async def add_reaction(ctx: Context, request: AddReactionInput) -> AddReactionOutput:
    me = await api.me(ctx)
    body = {"user_id": me.id, "post_id": request.post_id, "emoji_name": request.emoji_name}
    await api.call(ctx, "POST", "/reactions", json=body)  # adding an existing reaction is a no-op
    return AddReactionOutput(post_id=request.post_id, emoji_name=request.emoji_name)


async def notify_team(ctx: Context, request: NotifyTeamInput) -> PostOutput:
    channel_id = ctx.config_as(MattermostConfig).team_notification_channel_id
    if not channel_id:
        raise PermanentError("no team notification channel is configured (teamNotificationChannelId)")
    output = await _post(ctx, channel_id, request.message)
    ctx.record("info", "team_notified", "team notification posted")
    return output
