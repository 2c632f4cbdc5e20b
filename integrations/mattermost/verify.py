"""Outgoing webhooks and slash commands at `POST /webhooks/mattermost/{integration_id}`.

Mattermost signs nothing: the only proof is the shared token (`token` field; slash commands also
send `Authorization: Token ...`), compared in constant time with the integration's
`webhookToken`. An integration without one refuses everything (fail closed). An outgoing
webhook is published with its `post_id` as delivery id (the WebSocket listener uses the same,
so one post seen both ways is handled once); a slash command with its `trigger_id`, answered at
once with an ephemeral "working on it" (Mattermost wants an answer within 3 s).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs

import orjson

from integrations.mattermost.config import MattermostConfig
from worker.sdk import Accept, Context, Reply, WebhookRejected, WebhookRequest

WORKING = "Working on it…"


def _fields(request: WebhookRequest) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise WebhookRejected(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookRejected(400, "body is not a JSON object")
        return body
    parsed = parse_qs(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] if len(values) == 1 else values for key, values in parsed.items()}


def _token(request: WebhookRequest, fields: dict[str, Any]) -> str:
    token = fields.get("token")
    if isinstance(token, str) and token:
        return token
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "token" else ""


async def receive(request: WebhookRequest, ctx: Context) -> Accept | Reply:
    if not request.integration_id:
        raise WebhookRejected(404, "post to /webhooks/mattermost/{integration_id}")
    record = await ctx.integrations.get(request.integration_id)
    if record is None:
        raise WebhookRejected(404, "unknown Mattermost integration")
    config = record.config
    assert isinstance(config, MattermostConfig)
    if config.webhook_token is None:
        raise WebhookRejected(401, "this integration accepts no webhooks: set its webhookToken")
    fields = _fields(request)
    expected = config.webhook_token.get_secret_value().encode()
    if not hmac.compare_digest(_token(request, fields).encode(), expected):
        raise WebhookRejected(401, "missing or wrong token")
    fields.pop("token", None)
    if fields.get("command"):
        delivery = str(fields.get("trigger_id") or hashlib.sha256(request.body).hexdigest())
        name, answer = "slash_command", {"response_type": "ephemeral", "text": WORKING}
    elif fields.get("post_id"):
        delivery, name, answer = str(fields["post_id"]), "outgoing_webhook", {}
    else:
        raise WebhookRejected(400, "neither an outgoing webhook (post_id) nor a slash command (command)")
    return Accept(
        name=name,
        delivery_id=delivery,
        payload=fields,
        integration_id=record.id,
        team_id=record.team_id,
        response=Reply(200, orjson.dumps(answer)),
    )
