"""Twilio's REST API with the account's Basic auth, and Twilio's error rules (PROVIDERS §8): 429 /
error 20429 ("never processed, safe to retry") and 5xx are transient; 400s such as 21211 (invalid
To) and 63016 (outside WhatsApp's 24-hour window) are permanent."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx

from integrations.whatsapp.config import WhatsappSettings
from worker.sdk import Failure, PermanentError, call, parse_retry_after

HINTS = {
    21211: "the To number is invalid",
    63016: "outside WhatsApp's 24-hour window: only an approved template (ContentSid) can be sent",
    20003: "Twilio refused the account's credentials",
}


def classify(response: httpx.Response) -> Failure | None:
    status = response.status_code
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body, dict) else None
    reason = f"Twilio HTTP {status}" + (f", error {code}" if code else "")
    if isinstance(code, int) and code in HINTS:
        reason += f": {HINTS[code]}"
    if status == 429 or code == 20429 or status >= 500:
        return Failure("transient", reason, parse_retry_after(response.headers.get("retry-after")))
    return Failure("permanent", reason)


def credentials(settings: WhatsappSettings) -> tuple[str, str]:
    if not settings.account_sid or settings.auth_token is None:
        raise PermanentError("Twilio is not configured: set IW_WHATSAPP_ACCOUNT_SID and IW_WHATSAPP_AUTH_TOKEN")
    return settings.account_sid, settings.auth_token.get_secret_value()


async def create_message(http: httpx.AsyncClient, settings: WhatsappSettings, form: list[tuple[str, str]]) -> Any:
    sid, token = credentials(settings)
    response = await call(
        http,
        "POST",
        f"{settings.api_url}/2010-04-01/Accounts/{sid}/Messages.json",
        content=urlencode(form),  # repeated keys (MediaUrl) need a list of pairs
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=httpx.BasicAuth(sid, token),
        classify=classify,
    )
    return response.json()
