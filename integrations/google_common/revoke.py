"""Revoking a user's grant at Google when they unlink (`POST revoke_url`, the token in the form
body, never the URL). The link's access token is revoked, and with it the refresh token that
issued it (Google revokes both: the user's consent for the app is gone)."""

from __future__ import annotations

from integrations.google_common.oauth import GoogleRefresher
from worker.sdk import Context, Link, LinkNeedsReconnect, call


async def revoke(ctx: Context, link: Link, refresher: GoogleRefresher) -> bool:
    """True when Google revoked the grant; False when there was nothing left to revoke (the link
    needs reconnecting: its refresh token is dead already; or Google no longer knows the token).
    A failure to reach Google raises (TransientError), so the unlink is refused unless forced."""
    if not link.active:
        return False
    try:
        token = await ctx.tokens.access_token(link.id, refresher)
    except LinkNeedsReconnect:
        return False
    response = await call(
        ctx.http,
        "POST",
        refresher.settings.revoke_url,
        data={"token": token},
        headers={"Accept": "application/json"},
        ok_statuses=(400,),
    )
    if response.status_code == 400:  # `invalid_token`: expired or revoked already (by the user, or a first try)
        ctx.log.info("Google no longer knew the link's token: nothing to revoke", link_id=link.id)
        return False
    ctx.log.info("access revoked at Google", link_id=link.id)
    return True
