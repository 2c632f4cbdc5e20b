"""Slack actions: post a message (in a thread, or visible to one person), update one, react.
Each is a command (`slack.command.<name>`) and an agent tool; delivered with retries (429 and
Retry-After honoured, Slack's transient errors retried, permanent ones parked)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.slack import api
from integrations.slack.errors import error_of
from worker.context import Context
from worker.outbound import ProviderError


class PostMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, description="Channel or DM id (C..., D..., G...).")
    text: str = Field(min_length=1, max_length=40000, description="mrkdwn text.")
    thread_ts: str | None = Field(default=None, description="Reply in this thread.")
    blocks: list[dict[str, Any]] | None = Field(default=None, description="Block Kit blocks.")
    ephemeral_user: str | None = Field(default=None, description="Show it to this user alone (chat.postEphemeral).")


class PostMessageOutput(BaseModel):
    channel: str
    ts: str | None = Field(description="The message's ts (ephemeral messages: their message_ts).")


class UpdateMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1)
    ts: str = Field(min_length=1, description="The message to update.")
    text: str = Field(min_length=1, max_length=40000)
    blocks: list[dict[str, Any]] | None = None


class UpdateMessageOutput(BaseModel):
    channel: str
    ts: str


class AddReactionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1)
    timestamp: str = Field(min_length=1, description="The message's ts.")
    name: str = Field(min_length=1, description="Emoji name without colons, e.g. `eyes`.")


class AddReactionOutput(BaseModel):
    added: bool = Field(description="False when the reaction was already there.")


async def post_message(ctx: Context, request: PostMessageInput) -> PostMessageOutput:
    body: dict[str, Any] = {"channel": request.channel, "text": request.text}
    if request.thread_ts:
        body["thread_ts"] = request.thread_ts
    if request.blocks:
        body["blocks"] = request.blocks
    if request.ephemeral_user:
        body["user"] = request.ephemeral_user
        answer = await api.call(ctx, "chat.postEphemeral", body)
        return PostMessageOutput(channel=request.channel, ts=answer.get("message_ts"))
    answer = await api.call(ctx, "chat.postMessage", body)
    ctx.record("info", "message_posted", f"posted in {request.channel}")
    return PostMessageOutput(channel=str(answer.get("channel") or request.channel), ts=answer.get("ts"))


async def update_message(ctx: Context, request: UpdateMessageInput) -> UpdateMessageOutput:
    body: dict[str, Any] = {"channel": request.channel, "ts": request.ts, "text": request.text}
    if request.blocks:
        body["blocks"] = request.blocks
    answer = await api.call(ctx, "chat.update", body)
    return UpdateMessageOutput(
        channel=str(answer.get("channel") or request.channel), ts=str(answer.get("ts") or request.ts)
    )


async def add_reaction(ctx: Context, request: AddReactionInput) -> AddReactionOutput:
    try:
        await api.call(ctx, "reactions.add", request.model_dump())
    except ProviderError as exc:
        if error_of(exc.body) == "already_reacted":  # a repeat of this command, or someone was quicker
            return AddReactionOutput(added=False)
        raise
    return AddReactionOutput(added=True)
