"""Mattermost threads: their posts (`GET /posts/{post_id}/thread`, the whole thread), as context for
the agent with a post written in a thread, and as the `read_thread` action (the agent tool
`mattermost_read_thread`). System messages and deleted posts are left out; the bot's own posts
are the agent's (`is_agent`). Names come from `POST /users/ids`, best effort.

Context is best effort: a server that refuses or fails leaves it empty (logged), and the post
still reaches the agent. `read_thread` acts for a platform user (`needs_user_link`): it reads only
a thread in a channel that user's linked Mattermost account is a member of
(`GET /channels/{id}/members/{user}`), so the agent cannot show someone a channel they are not
in, just because the bot is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.mattermost import api
from schemas.events import ThreadMessage
from worker.sdk import ActionRefused, Context, IntegrationError, ProviderError
from worker.sdk.conversation import ThreadEntry, thread_messages


class ReadThreadInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root_id: str = Field(min_length=1, description="The thread's root post id (any post of the thread will do).")
    limit: int = Field(default=20, ge=1, le=100, description="At most this many of its newest posts.")


class ReadThreadOutput(BaseModel):
    messages: list[ThreadMessage] = Field(description="Oldest first; texts over 3,000 characters are cut.")
    omitted: int = Field(description="Earlier posts left out (beyond `limit` or the size bound).")


def _at(post: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(post.get("create_at") or 0) / 1000, UTC)


async def posts(ctx: Context, post_id: str) -> list[dict[str, Any]]:
    """The thread's posts (any post of it names it), oldest first."""
    thread = await api.call(ctx, "GET", f"/posts/{post_id}/thread")
    found = [p for p in ((thread or {}).get("posts") or {}).values() if isinstance(p, dict) and p.get("id")]
    return sorted(found, key=lambda p: (int(p.get("create_at") or 0), str(p["id"])))


async def _names(ctx: Context, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    try:
        users = await api.call(ctx, "POST", "/users/ids", json=ids)
    except IntegrationError as exc:
        ctx.log.info("mattermost user names unavailable", error=str(exc))
        return {}
    return {str(u["id"]): str(u["username"]) for u in users or [] if isinstance(u, dict) and u.get("username")}


async def entries(ctx: Context, found: list[dict[str, Any]], *, before: str | None = None) -> list[ThreadEntry]:
    """The posts said by someone (those before the post `before`, when given)."""
    me = await api.me(ctx)
    if before is not None:
        found = found[: next((i for i, p in enumerate(found) if p["id"] == before), len(found))]
    said = [p for p in found if not p.get("type") and not p.get("delete_at") and str(p.get("message") or "").strip()]
    names = await _names(ctx, sorted({str(p["user_id"]) for p in said if p.get("user_id") and p["user_id"] != me.id}))
    result = []
    for post in said:
        user = str(post.get("user_id") or "") or None
        is_agent = user == me.id
        is_bot = is_agent or str((post.get("props") or {}).get("from_bot") or "").lower() == "true"
        result.append(
            ThreadEntry(
                message_id=str(post["id"]),
                external_user_id=user,
                text=str(post.get("message") or ""),
                timestamp=_at(post),
                is_bot=is_bot,
                is_agent=is_agent,
                external_user_name=names.get(user or ""),
            )
        )
    return result


async def context(ctx: Context, root_id: str, post_id: str) -> list[ThreadEntry]:
    """The posts before `post_id` in the thread of `root_id`."""
    return await entries(ctx, await posts(ctx, root_id), before=post_id)


async def _is_member(ctx: Context, channel_id: str, user_id: str) -> bool:
    try:
        await api.call(ctx, "GET", f"/channels/{channel_id}/members/{user_id}")
    except ProviderError as exc:
        if exc.status in (403, 404):
            return False
        raise
    return True


async def read_thread(ctx: Context, request: ReadThreadInput) -> ReadThreadOutput:
    assert ctx.user_link is not None  # needs_user_link
    try:
        found = await posts(ctx, request.root_id)
    except ProviderError as exc:
        raise ActionRefused(f"Mattermost refused to read the thread (HTTP {exc.status})") from None
    channels = {str(p.get("channel_id")) for p in found}
    if not found or len(channels) != 1:
        raise ActionRefused("no such thread", {"root_id": ["not found"]})
    if not await _is_member(ctx, channels.pop(), ctx.user_link.external_user_id):
        raise ActionRefused("the acting user is not a member of this thread's channel", {"root_id": ["not a member"]})
    messages, omitted = await thread_messages(ctx, await entries(ctx, found), limit=request.limit)
    return ReadThreadOutput(messages=messages, omitted=omitted)
