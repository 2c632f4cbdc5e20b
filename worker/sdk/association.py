"""Account-link tokens: how a person who writes to the bot, not linked yet, links their chat
account to their platform account.

They get one reply with `IW_PLATFORM_URL/integrations/associate?token=<token>`. The token is
signed (HS256 with IW_SIGNING_KEY, purpose `link`) over the integration, its team, the external
user id and name and an expiry (IW_LINK_TTL): nobody can mint or alter one. The platform signs
the person in and confirms it (`integration.command.link_user`, or `POST /links`).

A token for a provider account several teams share (WhatsApp's shared number) names that account
(`shared_account`) instead of an integration and a team: it links the person to the integration
on that account of the team of the user who confirms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from worker.core import signing
from worker.core.settings import Settings
from worker.sdk.errors import PermanentError

LINK_PURPOSE = "link"
ASSOCIATE_PATH = "/integrations/associate"


class LinkRefused(PermanentError):
    """The link was not created; `status` is the HTTP answer (400 bad token, 403 another team,
    404 integration gone, 409 already linked to someone else or integration inactive)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LinkClaim:
    """What a link token says: who, on which integration, and where to confirm once linked.
    `integration_id` and `team_id` are None exactly when `shared_account` is set: the integration
    is then the confirming team's own on that shared account."""

    integration_id: str | None
    team_id: str | None
    type: str
    external_user_id: str
    external_user_name: str | None
    reply: dict[str, Any] | None = None  # {"action", "input", "text_field"}: the thread it came from
    shared_account: str | None = None


def mint(settings: Settings, claim: LinkClaim) -> str:
    if (claim.shared_account is None) == (claim.integration_id is None or claim.team_id is None):
        raise ValueError("a link claim names an integration and its team, or a shared account")
    body: dict[str, Any] = {"typ": claim.type, "sub": claim.external_user_id, "name": claim.external_user_name}
    if claim.shared_account is None:
        body.update({"iid": claim.integration_id, "team": claim.team_id})
    else:
        body["acct"] = claim.shared_account
    if claim.reply is not None:
        body["re"] = claim.reply
    return signing.sign(settings.signing_key.get_secret_value(), LINK_PURPOSE, body, settings.link_ttl)


def url(settings: Settings, token: str) -> str:
    return f"{settings.platform_url.rstrip('/')}{ASSOCIATE_PATH}?{urlencode({'token': token})}"


def read(settings: Settings, token: str) -> LinkClaim:
    """The token's claim; LinkRefused(400) when it is forged, altered, expired or not a link token."""
    try:
        claims = signing.verify(settings.signing_key.get_secret_value(), LINK_PURPOSE, token)
    except signing.InvalidSignedToken as exc:
        raise LinkRefused(400, f"link token refused: {exc}") from None
    try:
        shared = claims.get("acct")
        return LinkClaim(
            integration_id=str(claims["iid"]) if shared is None else None,
            team_id=str(claims["team"]) if shared is None else None,
            type=str(claims["typ"]),
            external_user_id=str(claims["sub"]),
            external_user_name=claims.get("name"),
            reply=claims.get("re"),
            shared_account=str(shared) if shared is not None else None,
        )
    except KeyError:
        raise LinkRefused(400, "link token refused: token is invalid") from None
