"""GitHub webhooks at the ingress: `X-Hub-Signature-256` = sha256 HMAC of the raw body.

Compared in constant time; a missing secret refuses everything (fail closed);
`X-GitHub-Delivery` is the dedup key (a redelivery keeps it); `ping` is answered
without publishing.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs

import orjson

from integrations.github.config import GithubSettings
from worker.sdk import Accept, Context, Reply, WebhookRejected, WebhookRequest

KEPT_HEADERS = (
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-github-hook-installation-target-id",
)


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), signature(secret, body).encode())


def _payload(request: WebhookRequest) -> dict[str, object]:
    body = request.body
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("utf-8", errors="replace")).get("payload")
        if not values:
            raise WebhookRejected(400, "form-encoded body without a payload field")
        body = values[0].encode()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return payload


async def receive(request: WebhookRequest, ctx: Context) -> Accept | Reply:
    settings = ctx.settings_as(GithubSettings)
    if settings.webhook_secret is None:
        raise WebhookRejected(401, "GitHub webhooks are refused: IW_GITHUB_WEBHOOK_SECRET is not set")
    secret = settings.webhook_secret.get_secret_value().encode()
    if not signature_matches(secret, request.body, request.headers.get("x-hub-signature-256")):
        raise WebhookRejected(401, "missing or wrong X-Hub-Signature-256")
    event = request.headers.get("x-github-event")
    delivery = request.headers.get("x-github-delivery")
    if not event or not delivery:
        raise WebhookRejected(400, "X-GitHub-Event and X-GitHub-Delivery are required")
    payload = _payload(request)
    if event == "ping":
        return Reply(200, orjson.dumps({"status": "pong", "zen": payload.get("zen")}))
    installation = payload.get("installation")
    installation_id = installation.get("id") if isinstance(installation, dict) else None
    return Accept(
        name=event,
        delivery_id=delivery,
        payload=payload,
        external_team_id=str(installation_id) if installation_id is not None else None,
        integration_id=request.integration_id,
        headers={k: v for k in KEPT_HEADERS if (v := request.headers.get(k))},
    )
