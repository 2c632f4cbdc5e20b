"""The Bot API: `POST {api_url}/bot<token>/<method>` with a JSON body; the answer is
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": 400, "description": "..."}`.

The token is part of the URL, so no error message here ever includes the URL: a failure
says `Telegram <method> -> HTTP <status>: <description>`.
"""

from __future__ import annotations

from typing import Any

import httpx

from integrations.telegram.config import TelegramConfig, TelegramSettings
from worker.sdk import Failure, call


def _description(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("description", "")) if isinstance(body, dict) else ""


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = response.json().get("parameters", {}).get("retry_after")
    except (ValueError, AttributeError):
        return None
    return float(seconds) if isinstance(seconds, int | float) else None


def classifier(method: str) -> Any:
    """Telegram's rule: 429 (with `parameters.retry_after`) and 5xx are transient, other 4xx are not."""

    def classify(response: httpx.Response) -> Failure | None:
        status = response.status_code
        if status < 400:
            return None
        reason = f"Telegram {method} -> HTTP {status}: {_description(response) or response.reason_phrase}"
        if status == 429 or status >= 500:
            return Failure("transient", reason, _retry_after(response))
        return Failure("permanent", reason)

    return classify


async def bot(
    http: httpx.AsyncClient,
    settings: TelegramSettings,
    config: TelegramConfig,
    method: str,
    payload: dict[str, Any] | None = None,
) -> Any:
    """Call one Bot API method as the bot; returns its `result`. Raises ProviderError (4xx, with
    `.status` and `.body`) or TransientError."""
    url = f"{settings.api_url.rstrip('/')}/bot{config.bot_token.get_secret_value()}/{method}"
    response = await call(http, "POST", url, json=payload or {}, classify=classifier(method))
    return response.json()["result"]
