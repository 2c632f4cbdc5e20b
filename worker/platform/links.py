"""Confirming an account link: a person who wrote to the bot, not linked yet, got a signed,
expiring token (worker/sdk/association.py); the platform signs them in, shows what is being
linked, and confirms with

    integration.command.link_user  {"token": ..., "user_id": ...}   (envelope team_id: the user's team)
    POST /links  {"token": ..., "user_id": ..., "team_id": ...}     (Authorization: Bearer IW_ADMIN_TOKEN)

Only a valid, unexpired, unaltered token of that team, whose integration is still installed and
active, creates the link. A token for a provider account several teams share (WhatsApp's shared
number) names no team: it links to the confirming team's integration of that type that has no
provider account of its own (one per team and type), which for WhatsApp is its install on the
shared number. An external account links to one platform user: the first confirmation
wins, the same user confirming again changes nothing, another user is refused. A token links
once: after its link is removed, the same token is refused (its SHA-256 is kept in
`used_link_tokens` until it expires). Once linked, the person gets a confirmation where they
wrote, and `integration.user_linked` is published.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import UserLinked
from worker.core.ids import derived_id
from worker.sdk.association import LinkRefused, read
from worker.sdk.context import Context
from worker.sdk.unit import LogEntry

LINKED_TEXT = "Your account is linked. Write to me again and I will answer."


class LinkUserInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=8192, description="The token from the association link.")
    user_id: str = Field(min_length=1, max_length=256, description="The platform user who confirms it.")


class LinkUserOutput(BaseModel):
    link_id: str
    integration_id: str
    integration_type: str
    user_id: str
    external_user_id: str
    external_user_name: str | None
    created: bool = Field(description="False when this user had already confirmed this link.")


async def confirm(ctx: Context, request: LinkUserInput) -> LinkUserOutput:
    """`integration.command.link_user`: check the token and stage the link (and its event)."""
    if ctx.team_id is None:
        raise LinkRefused(400, "team_id is required: the team of the user who confirms")
    claim = read(ctx.runtime_settings, request.token)
    if claim.integration_id is None:  # a shared account's token: this team's integration on it
        row = await ctx.db.fetchrow(
            """SELECT id, type, status FROM integrations
               WHERE team_id = $1 AND type = $2 AND external_team_id IS NULL""",
            claim.type,
        )
        if row is None:
            raise LinkRefused(404, f"this team has no {claim.type} integration on the shared account")
    else:
        if claim.team_id != ctx.team_id:
            raise LinkRefused(403, "this link token is for another team")
        row = await ctx.db.fetchrow(
            "SELECT id, type, status FROM integrations WHERE team_id = $1 AND id = $2", claim.integration_id
        )
    if row is None or row["type"] != claim.type:
        raise LinkRefused(404, "the integration of this link token is no longer installed")
    integration_id: str = row["id"]
    if row["status"] != "active":
        raise LinkRefused(409, f"the integration of this link token is {row['status']}")
    existing = await ctx.db.fetchrow(
        """SELECT id, user_id FROM integration_user_link
           WHERE team_id = $1 AND integration_id = $2 AND external_user_id = $3""",
        integration_id,
        claim.external_user_id,
    )
    output = LinkUserOutput(
        link_id=existing["id"] if existing is not None else derived_id(ctx.envelope.id, "link"),
        integration_id=integration_id,
        integration_type=claim.type,
        user_id=request.user_id,
        external_user_id=claim.external_user_id,
        external_user_name=claim.external_user_name,
        created=existing is None,
    )
    if existing is not None:
        if existing["user_id"] != request.user_id:
            raise LinkRefused(409, "this account is already linked to another user")
        return output
    token_hash = hashlib.sha256(request.token.encode()).hexdigest()
    # used in any team: a shared account's token names no team, and confirming it links it once
    used = "SELECT 1 FROM used_link_tokens WHERE token_hash = $2 AND $1::text IS NOT NULL"
    if await ctx.db.fetchval(used, token_hash):
        raise LinkRefused(409, "this link token was already used: ask for a new one by writing to the bot")
    ctx.db.write(
        """INSERT INTO used_link_tokens (team_id, token_hash, user_id, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
        token_hash,
        request.user_id,
        ctx.runtime_settings.link_ttl,
    )
    ctx.db.write(
        """INSERT INTO integration_user_link
             (id, team_id, user_id, external_user_id, external_user_name, integration_id, integration_type)
           VALUES ($2, $1, $3, $4, $5, $6, $7)""",
        output.link_id,
        request.user_id,
        claim.external_user_id,
        claim.external_user_name,
        integration_id,
        claim.type,
    )
    ctx.emit(
        UserLinked(
            link_id=output.link_id,
            integration_id=integration_id,
            integration_type=claim.type,
            user_id=request.user_id,
            external_user_id=claim.external_user_id,
            external_user_name=claim.external_user_name,
        )
    )
    assert ctx.staged is not None
    ctx.staged.logs.append(
        LogEntry(
            integration_id,
            ctx.team_id,
            "info",
            "user_linked",
            f"{claim.external_user_name or claim.external_user_id} linked to platform user {request.user_id}",
            ctx.envelope.id,
            {"external_user_id": claim.external_user_id},
            output.link_id,
        )
    )
    if claim.reply:  # tell them where they wrote
        field = str(claim.reply.get("text_field") or "text")
        ctx.publish(
            "command",
            str(claim.reply["action"]),
            {**dict(claim.reply.get("input") or {}), field: LINKED_TEXT},
            id=f"{ctx.envelope.id}/linked",
            type_=claim.type,
            integration_id=integration_id,
            team_id=ctx.team_id,
        )
    return output
