"""Keep secrets out of log lines and error messages.

Two nets: well-known token shapes (GitHub, Slack, Google, JWTs, bearer
headers, credentials in URLs) and the exact values of secrets the process
knows (settings secrets, registered at start).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[redacted]"

_PATTERNS = [
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,})"),
    re.compile(r"\b(xox[abposer]-[A-Za-z0-9-]{8,})"),
    re.compile(r"\b(ya29\.[A-Za-z0-9_\-.]{10,}|1//[A-Za-z0-9_\-]{20,})"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)(://[^/\s:@]+:)[^@\s/]+(@)"),
    re.compile(
        r"(?i)([?&;](?:access_token|refresh_token|token|code|client_secret|password|secret|key|signature"
        r"|api_key)=)[^&\s\"']+"
    ),
    re.compile(r"\bgAAAAA[A-Za-z0-9_\-=]{20,}"),  # Fernet tokens (encrypted secrets)
    re.compile(r"(?<![0-9])[0-9]{5,12}:[A-Za-z0-9_-]{30,}"),  # Telegram bot tokens (also inside /bot<token>/ URLs)
]

_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret's exact value so it is masked wherever it shows up."""
    if value and len(value) >= 6:
        _known.add(value)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def _mask(match: re.Match[str]) -> str:
    groups = match.groups()
    if len(groups) == 2 and groups[1] == "@":  # user:password@host
        return f"{groups[0]}{MASK}@"
    if len(groups) == 1 and match.group(0).startswith(("?", "&", ";")):
        return f"{groups[0]}{MASK}"
    if groups and groups[0] and groups[0].lower() in ("bearer", "basic", "token"):
        return f"{groups[0]} {MASK}"
    return MASK


def redact(text: str) -> str:
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


SENSITIVE_KEYS = ("token", "secret", "password", "authorization", "private_key", "api_key", "cookie")


def redact_value(key: str, value: Any) -> Any:
    """`value` with secrets masked, through dicts and lists: a field whose name says it holds a
    secret is masked whole, text is scanned (`redact`), the rest is kept."""
    if value is None:
        return None
    lowered = key.lower()
    if any(marker in lowered for marker in SENSITIVE_KEYS):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(key, v) for v in value]
    return value
