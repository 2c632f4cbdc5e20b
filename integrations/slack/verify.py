"""Slack requests at the ingress: the v0 signature, the freshness window, the URL handshake.

`X-Slack-Signature` = `v0=` + hex HMAC-SHA256(signing secret, `v0:{timestamp}:{raw body}`),
compared in constant time, before the body is parsed; a timestamp more than 300 s away is a
replay and is refused (MIMRAI accepted replays). `url_verification` is answered at once with
its challenge; an `event_callback` is published with `event_id` as its delivery id, so Slack's
retries (`X-Slack-Retry-Num`) collapse into one message.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson

from integrations.slack.config import SlackSettings
from schemas.envelope import valid_name
from worker.sdk import Accept, Context, Reply, WebhookRejected, WebhookRequest

WINDOW_SECONDS = 300
KEPT_HEADERS = ("x-slack-retry-num", "x-slack-retry-reason")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def check_signature(
    secret: str, timestamp: str | None, body: bytes, header: str | None, *, now: float, window: int = WINDOW_SECONDS
) -> str | None:
    """None when the request is authentic and fresh, else why not (safe to show)."""
    if not timestamp or not header:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    try:
        stamp = int(timestamp)
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number"
    if abs(now - stamp) > window:
        return "request timestamp outside the 5-minute window (a replay?)"
    if not hmac.compare_digest(header.strip().encode(), signature(secret, timestamp, body).encode()):
        return "wrong X-Slack-Signature"
    return None


def _team(payload: dict[str, object]) -> str | None:
    team = payload.get("team_id")
    if isinstance(team, str) and team:
        return team
    authorizations = payload.get("authorizations")
    if isinstance(authorizations, list) and authorizations and isinstance(authorizations[0], dict):
        found = authorizations[0].get("team_id")
        if isinstance(found, str) and found:
            return found
    enterprise = payload.get("enterprise_id")
    return enterprise if isinstance(enterprise, str) and enterprise else None


async def receive(request: WebhookRequest, ctx: Context) -> Accept | Reply:
    settings = ctx.settings_as(SlackSettings)
    if settings.signing_secret is None:
        raise WebhookRejected(401, "Slack requests are refused: IW_SLACK_SIGNING_SECRET is not set")
    problem = check_signature(
        settings.signing_secret.get_secret_value(),
        request.headers.get("x-slack-request-timestamp"),
        request.body,
        request.headers.get("x-slack-signature"),
        now=time.time(),
    )
    if problem is not None:
        raise WebhookRejected(401, problem)
    try:
        payload = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "body is not JSON (only the Events API is served here)") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    kind = payload.get("type")
    if kind == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str):
            raise WebhookRejected(400, "url_verification without a challenge")
        return Reply(200, orjson.dumps({"challenge": challenge}))
    if kind != "event_callback":  # app_rate_limited and the like: nothing to do
        ctx.log.info("slack request without an event", kind=kind)
        return Reply(200, b'{"ok":true}')
    event = payload.get("event")
    event_id = payload.get("event_id")
    if not isinstance(event, dict) or not isinstance(event_id, str) or not event_id:
        raise WebhookRejected(400, "event_callback without event or event_id")
    name = event.get("type")
    if not isinstance(name, str) or not valid_name(name):
        raise WebhookRejected(400, "event without a valid type")
    return Accept(
        name=name,
        delivery_id=event_id,
        payload=payload,
        external_team_id=_team(payload),
        headers={k: v for k in KEPT_HEADERS if (v := request.headers.get(k))},
    )
