"""`X-Twilio-Signature` (twilio.com/docs/usage/webhooks/webhooks-security; twilio-python's
RequestValidator): base64(HMAC-SHA1(auth token, URL + every POST parameter sorted by name, each
as name + value; a repeated name contributes each of its values, sorted)). The URL is the public
one Twilio called (IW_PUBLIC_URL, never the internal request), accepted with and without the
scheme's default port, as Twilio may have added or dropped it. A JSON body is signed through a
`bodySHA256` query parameter instead (its SHA-256 must match, and no parameters are added).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit, urlunsplit

DEFAULT_PORTS = {"https": 443, "http": 80}


def compute(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    text = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    return base64.b64encode(hmac.new(auth_token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def url_variants(url: str) -> list[str]:
    """The URL without its port, and with its port (the scheme's default when it has none)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    without = urlunsplit((parts.scheme, userinfo + host, parts.path, parts.query, parts.fragment))
    with_port = urlunsplit((parts.scheme, f"{userinfo}{host}:{port}", parts.path, parts.query, parts.fragment))
    return [without, with_port] if port else [without]


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def valid(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None, body: bytes | None = None
) -> bool:
    """Constant-time check of a request's signature; a missing or malformed one is simply invalid."""
    if not signature:
        return False
    query = parse_qs(urlsplit(url).query)
    if "bodySHA256" in query:  # a JSON body: the hash is signed in the URL, no parameters
        if body is None or not hmac.compare_digest(query["bodySHA256"][0].encode(), body_hash(body).encode()):
            return False
        params = ()
    pairs = list(params)
    expected = signature.strip().encode()
    return any(
        hmac.compare_digest(compute(auth_token, candidate, pairs).encode(), expected) for candidate in url_variants(url)
    )
