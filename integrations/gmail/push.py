"""Gmail's Pub/Sub push at the ingress (`POST /webhooks/gmail`).

Authenticated by the push subscription's OIDC token (`Authorization: Bearer <JWT>`, RS256 by
Google; issuer, audience, service account, email_verified and expiry checked; fail closed
without a configured service account). The body's `message.data` (base64) holds
`{emailAddress, historyId}`; `message.messageId` is the dedup key, so Pub/Sub's redeliveries
collapse. Only the links of that address are looked up (one indexed query); the work happens
in the worker, so the answer comes well inside Pub/Sub's 10 s deadline.
"""

from __future__ import annotations

from typing import Any

import orjson

from integrations.gmail.config import GmailSettings
from integrations.gmail.mime import b64url_decode
from integrations.google_common import oidc
from worker.sdk import Accept, Context, Reply, WebhookRejected, WebhookRequest


def audience(settings: GmailSettings, ctx: Context) -> str:
    return settings.push_audience or f"{ctx.runtime_settings.public_url.rstrip('/')}/webhooks/gmail"


async def authenticate(request: WebhookRequest, ctx: Context) -> None:
    settings = ctx.settings_as(GmailSettings)
    if not settings.push_service_account:
        raise WebhookRejected(401, "Gmail pushes are refused: IW_GMAIL_PUSH_SERVICE_ACCOUNT is not set")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise WebhookRejected(401, "missing bearer token")
    try:
        await oidc.verify(
            token.strip(),
            cache=ctx.cache,
            http=ctx.http,
            jwks_url=settings.jwks_url,
            audience=audience(settings, ctx),
            email=settings.push_service_account,
        )
    except oidc.TokenRefused as exc:
        raise WebhookRejected(401, f"push authentication failed: {exc}") from None
    except oidc.KeysUnavailable as exc:
        raise WebhookRejected(503, f"cannot check the push's signature now: {exc}") from None


def parse(body: bytes) -> tuple[str, str, str, dict[str, Any]]:
    """(pubsub message id, email address, history id, the message's attributes)."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "body is not JSON") from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise WebhookRejected(400, "no Pub/Sub message in the body")
    message_id = message.get("messageId") or message.get("message_id")
    if not message_id:
        raise WebhookRejected(400, "the Pub/Sub message has no messageId")
    try:
        data = orjson.loads(b64url_decode(str(message.get("data") or "")))
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "message.data is not base64 JSON") from None
    if not isinstance(data, dict) or not data.get("emailAddress") or data.get("historyId") is None:
        raise WebhookRejected(400, "message.data lacks emailAddress or historyId")
    attributes = message.get("attributes") if isinstance(message.get("attributes"), dict) else {}
    return str(message_id), str(data["emailAddress"]).lower(), str(data["historyId"]), attributes or {}


async def receive(request: WebhookRequest, ctx: Context) -> Accept | Reply:
    await authenticate(request, ctx)
    message_id, email, history_id, _ = parse(request.body)
    links = await ctx.links.across_teams(external_user_id=email)
    if not links:
        ctx.log.info("gmail push for a mailbox nobody has linked", pubsub_message_id=message_id)
        return Reply(200, orjson.dumps({"status": "ignored", "reason": "no linked mailbox"}))
    return Accept(
        name="notification",
        delivery_id=message_id,
        payload={
            "email_address": email,
            "history_id": history_id,
            "pubsub_message_id": message_id,
            "links": [{"link_id": k.id, "integration_id": k.integration_id, "team_id": k.team_id} for k in links],
        },
    )
