"""Slack threads: their earlier messages (`conversations.replies`), as context for the agent with a
message written in a thread, and as the `read_thread` action (the agent tool `slack_read_thread`).

Reading needs the history scope of the channel's kind: `channels:history`, `groups:history`,
`im:history`, `mpim:history`. Without it Slack answers `missing_scope`: the context is left empty
(logged; the message still reaches the agent), and `read_thread` is refused with the scope named.
A thread is read a page of 200 at a time, at most 5 pages (the first 1,000 messages).

`read_thread` acts for a platform user (`needs_user_link`): it reads only a channel that user's
linked Slack account is a member of (`conversations.members`, which needs `channels:read`,
`groups:read`, `im:read` or `mpim:read`), so the agent cannot show someone a private channel
they are not in, just because the bot is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.slack import api
from integrations.slack.config import SlackConfig
from integrations.slack.errors import error_of
from schemas.events import ThreadMessage
from worker.sdk import ActionRefused, Context, ProviderError
from worker.sdk.conversation import ThreadEntry, thread_messages

PAGE_SIZE = 200
MAX_PAGES = 5
MEMBER_PAGES = 10
# Subtypes of a person's or a bot's message; the others (joins, topic changes, ...) are not said by anyone.
SPOKEN_SUBTYPES = frozenset({"thread_broadcast", "bot_message", "file_share", "me_message"})


class ReadThreadInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, description="Channel or DM id (C..., G..., D...).")
    thread_ts: str = Field(min_length=1, description="The thread's ts (its first message's ts).")
    limit: int = Field(default=20, ge=1, le=100, description="At most this many of its newest messages.")


class ReadThreadOutput(BaseModel):
    messages: list[ThreadMessage] = Field(description="Oldest first; texts over 3,000 characters are cut.")
    omitted: int = Field(description="Earlier messages left out (beyond `limit` or the size bound).")


def ts_key(ts: str) -> tuple[int, int]:
    """A ts as a sortable pair (seconds, microseconds): floats lose its last digits."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0), int((fraction or "0")[:6].ljust(6, "0"))


def _at(ts: str) -> datetime:
    seconds, micros = ts_key(ts)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


async def replies(ctx: Context, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The thread's messages as Slack lists them (its first message included), oldest first."""
    messages: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        body: dict[str, Any] = {"channel": channel, "ts": thread_ts, "limit": PAGE_SIZE}
        if cursor:
            body["cursor"] = cursor
        answer = await api.call(ctx, "conversations.replies", body, form=True, attempts=2)
        messages += [m for m in answer.get("messages") or [] if isinstance(m, dict)]
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not answer.get("has_more") or not cursor:
            break
    return messages


async def entries(ctx: Context, channel: str, thread_ts: str, *, before: str | None = None) -> list[ThreadEntry]:
    """The thread's messages said by someone (before the message `before`, when given)."""
    bot_user_id = ctx.config_as(SlackConfig).bot_user_id
    found: list[ThreadEntry] = []
    for message in await replies(ctx, channel, thread_ts):
        ts = str(message.get("ts") or "")
        subtype = message.get("subtype")
        if not ts or (subtype and subtype not in SPOKEN_SUBTYPES):
            continue
        if before is not None and ts_key(ts) >= ts_key(before):
            continue
        text = str(message.get("text") or "")
        names = [str(f.get("name")) for f in message.get("files") or [] if isinstance(f, dict) and f.get("name")]
        if names:
            text = f"{text}\n[files: {', '.join(names)}]" if text else f"[files: {', '.join(names)}]"
        if not text.strip():
            continue
        user = message.get("user")
        is_agent = bool(bot_user_id) and user == bot_user_id
        is_bot = is_agent or bool(message.get("bot_id")) or subtype == "bot_message"
        author = str(user or message.get("bot_id") or "") or None
        found.append(
            ThreadEntry(
                message_id=ts,
                external_user_id=author,
                text=text,
                timestamp=_at(ts),
                is_bot=is_bot,
                is_agent=is_agent,
                external_user_name=await api.user_name(ctx, author) if author and not is_bot else None,
            )
        )
    return found


async def context(ctx: Context, channel: str, thread_ts: str, current_ts: str) -> list[ThreadEntry]:
    """The messages before `current_ts` in its thread; none when Slack refuses the scope."""
    try:
        return await entries(ctx, channel, thread_ts, before=current_ts)
    except ProviderError as exc:
        if error_of(exc.body) != "missing_scope":
            raise
        needed = exc.body.get("needed") if isinstance(exc.body, dict) else None
        ctx.log.info("thread context needs a history scope the workspace did not grant", needed=needed)
        return []


async def _is_member(ctx: Context, channel: str, user: str) -> bool:
    cursor: str | None = None
    for _ in range(MEMBER_PAGES):
        body: dict[str, Any] = {"channel": channel, "limit": 1000}
        if cursor:
            body["cursor"] = cursor
        answer = await api.call(ctx, "conversations.members", body, form=True)
        if user in (answer.get("members") or []):
            return True
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return False
    return False


async def read_thread(ctx: Context, request: ReadThreadInput) -> ReadThreadOutput:
    assert ctx.user_link is not None  # needs_user_link
    try:
        if not await _is_member(ctx, request.channel, ctx.user_link.external_user_id):
            raise ActionRefused("the acting user is not a member of this channel", {"channel": ["not a member"]})
        found = await entries(ctx, request.channel, request.thread_ts)
    except ProviderError as exc:
        error = error_of(exc.body) or f"HTTP {exc.status}"
        needed = exc.body.get("needed") if isinstance(exc.body, dict) else None
        reason = f"Slack refused to read the thread: {error}" + (f" (needs {needed})" if needed else "")
        raise ActionRefused(reason) from None
    messages, omitted = await thread_messages(ctx, found, limit=request.limit)
    return ReadThreadOutput(messages=messages, omitted=omitted)
