"""Google-signed OIDC tokens (Pub/Sub push authentication, PROVIDERS.md §2.5): RS256 against
Google's public keys, fetched from a configurable JWKS URL and cached (Cache-Control max-age,
refetched at most once a minute when an unknown key id shows up); issuer, audience, the
expected service-account email, `email_verified` and expiry checked."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jwt

from worker.sdk import TTLCache

ISSUERS = ("https://accounts.google.com", "accounts.google.com")
LEEWAY_SECONDS = 10
_MAX_AGE = re.compile(r"max-age=(\d+)")


class TokenRefused(Exception):
    """The token is not a valid one for us; the message says why (no token content)."""


class KeysUnavailable(Exception):
    """Google's keys could not be fetched: answer 503 so the sender retries."""


async def _fetch_keys(http: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], float]:
    try:
        response = await http.get(url, timeout=5.0)
    except httpx.HTTPError as exc:
        raise KeysUnavailable(f"fetching signing keys failed: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise KeysUnavailable(f"fetching signing keys failed: HTTP {response.status_code}")
    keys: dict[str, Any] = {}
    try:
        for entry in response.json().get("keys", []):
            if entry.get("kty") == "RSA" and entry.get("kid"):
                keys[entry["kid"]] = jwt.PyJWK.from_dict(entry, algorithm="RS256").key
    except (ValueError, AttributeError, jwt.PyJWKError) as exc:
        raise KeysUnavailable(f"the signing keys are unreadable: {type(exc).__name__}") from exc
    match = _MAX_AGE.search(response.headers.get("cache-control", ""))
    ttl = float(match.group(1)) if match else 3600.0
    return keys, min(max(ttl, 60.0), 86400.0)


async def _keys(cache: TTLCache, http: httpx.AsyncClient, url: str, *, refetch: bool = False) -> dict[str, Any]:
    key = f"jwks:{url}"
    if refetch:
        if cache.get(f"jwks-refetched:{url}") is not None:
            return cache.get(key) or {}
        cache.set(f"jwks-refetched:{url}", True, 60.0)
        cache.delete(key)
    keys: dict[str, Any] = await cache.get_or_compute(key, lambda: _fetch_keys(http, url))
    return keys


async def verify(
    token: str,
    *,
    cache: TTLCache,
    http: httpx.AsyncClient,
    jwks_url: str,
    audience: str,
    email: str,
) -> dict[str, Any]:
    """The token's claims, or TokenRefused / KeysUnavailable."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenRefused("the bearer token is not a JWT") from None
    if header.get("alg") != "RS256":
        raise TokenRefused("the token is not signed with RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused("the token names no signing key")
    keys = await _keys(cache, http, jwks_url)
    if kid not in keys:
        keys = await _keys(cache, http, jwks_url, refetch=True)
    if kid not in keys:
        raise TokenRefused("the token is signed with an unknown key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            keys[kid],
            algorithms=["RS256"],
            audience=audience,
            issuer=ISSUERS,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("the token has expired") from None
    except jwt.InvalidAudienceError:
        raise TokenRefused("the token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise TokenRefused("the token was not issued by Google") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("the token's signature does not match") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"the token is invalid ({type(exc).__name__})") from None
    if str(claims.get("email", "")).lower() != email.lower():
        raise TokenRefused("the token is for another service account")
    if claims.get("email_verified") is not True:
        raise TokenRefused("the token's email is not verified")
    return claims
