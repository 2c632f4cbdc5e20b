"""Telegram webhooks at the ingress: `POST /webhooks/telegram/{integration_id}`.

Telegram signs nothing; `setWebhook` takes a `secret_token` that it sends back in the
`X-Telegram-Bot-Api-Secret-Token` header of every update. Ours is derived from IW_SIGNING_KEY and
the integration id (never stored, never the same for two integrations) and compared in constant
time. The update's `update_id` is the dedup key (Telegram retries an update until it gets a 2xx).
"""

from __future__ import annotations

import hashlib
import hmac

import orjson

from worker.sdk import Accept, Context, Reply, WebhookRejected, WebhookRequest

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
UPDATE_KINDS = ("message", "edited_message", "channel_post", "edited_channel_post", "callback_query")


def webhook_secret(signing_key: str, integration_id: str) -> str:
    """The `secret_token` given to setWebhook for this integration (64 hex characters)."""
    return hmac.new(signing_key.encode(), f"telegram-webhook:{integration_id}".encode(), hashlib.sha256).hexdigest()


async def receive(request: WebhookRequest, ctx: Context) -> Accept | Reply:
    if request.integration_id is None:
        raise WebhookRejected(404, "Telegram webhooks go to /webhooks/telegram/{integration_id}")
    expected = webhook_secret(ctx.runtime_settings.signing_key.get_secret_value(), request.integration_id)
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected(401, "missing or wrong X-Telegram-Bot-Api-Secret-Token")
    try:
        update = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise WebhookRejected(400, "not a Telegram update (no update_id)")
    kind = next((k for k in UPDATE_KINDS if k in update), "other")
    return Accept(
        name=kind,
        delivery_id=f"{request.integration_id}:{update['update_id']}",
        payload=update,
        integration_id=request.integration_id,
    )
