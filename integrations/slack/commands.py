"""Slack actions: post a message (in a thread, or visible to one person), update one, react.
Each is a command (`slack.command.<name>`) and an agent tool; delivered with retries (429 and
Retry-After honoured, Slack's transient errors retried, permanent ones parked).

A posted message carries the command's id in its metadata. A command run again (a retry, or a
redelivery after a crash) first looks for its message in the channel or thread, so a message
Slack took just before the answer was lost is not posted twice; for that, a failed post is
retried by the worker (a new run, which looks first), not inside the run. Without the history scopes the
lookup is skipped (logged) and the message posted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.slack import api
from integrations.slack.errors import error_of
from worker.sdk import Context, ProviderError


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


METADATA_EVENT = "integration_worker_message"
LOOKUP_LIMIT = 200


async def _already_posted(ctx: Context, request: PostMessageInput) -> str | None:
    """The ts of the message an earlier run of this command posted, if Slack has one."""
    oldest = f"{ctx.envelope.created_at.timestamp() - 60:.6f}"
    method, body = "conversations.history", {"channel": request.channel, "oldest": oldest}
    if request.thread_ts:
        method, body = "conversations.replies", {**body, "ts": request.thread_ts}
    try:
        answer = await api.call(ctx, method, {**body, "include_all_metadata": True, "limit": LOOKUP_LIMIT}, form=True)
    except ProviderError as exc:  # missing_scope, not_in_channel, ...: post rather than stay silent
        ctx.log.warning("could not look for an earlier post of this command", error=error_of(exc.body))
        return None
    for message in answer.get("messages") or []:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == METADATA_EVENT and payload.get("command_id") == ctx.envelope.id:
            return str(message.get("ts"))
    return None


async def post_message(ctx: Context, request: PostMessageInput) -> PostMessageOutput:
    if not request.ephemeral_user and ctx.is_repeat:  # an earlier run may have posted it
        ts = await _already_posted(ctx, request)
        if ts is not None:
            return PostMessageOutput(channel=request.channel, ts=ts)
    body: dict[str, Any] = {"channel": request.channel, "text": request.text}
    if request.thread_ts:
        body["thread_ts"] = request.thread_ts
    if request.blocks:
        body["blocks"] = request.blocks
    if request.ephemeral_user:
        body["user"] = request.ephemeral_user
        answer = await api.call(ctx, "chat.postEphemeral", body)
        return PostMessageOutput(channel=request.channel, ts=answer.get("message_ts"))
    body["metadata"] = {"event_type": METADATA_EVENT, "event_payload": {"command_id": ctx.envelope.id}}
    # not retried in this run: a failure may hide a message Slack took, which only the next
    # run's lookup can find
    answer = await api.call(ctx, "chat.postMessage", body, attempts=1)
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
