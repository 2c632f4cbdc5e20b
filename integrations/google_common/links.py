"""Users' links of a Google integration, read within the team: the account is the link's
external user id (the Google address)."""

from __future__ import annotations

from worker.sdk import Context, Link, PermanentError

USER_HEADER = "x-user-id"


async def link_by_id(ctx: Context, link_id: str) -> Link | None:
    return await ctx.links.get(link_id)


async def links_of(ctx: Context, *, user_ids: list[str] | None = None, active_only: bool = True) -> list[Link]:
    return await ctx.links.all(user_ids=user_ids, active_only=active_only)


async def acting_link(ctx: Context) -> Link:
    """The link of the user an action acts for: the platform user id in the envelope header
    `x-user-id` (the agent's user, as MIMRAI's behalfUserId); their newest link of this integration."""
    if ctx.user_link is not None:
        return ctx.user_link
    user_id = ctx.envelope.headers.get(USER_HEADER)
    if not user_id:
        raise PermanentError(f"this action acts as a user: set the envelope header {USER_HEADER!r}")
    links = await links_of(ctx, user_ids=[user_id], active_only=False)
    if not links:
        raise PermanentError(f"user {user_id} has not connected a Google account to this integration")
    active = [link for link in links if link.active]
    if not active:
        raise PermanentError(f"user {user_id} must connect their Google account again")
    return active[0]
