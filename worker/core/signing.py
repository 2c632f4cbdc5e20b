"""Short signed tokens with an expiry and a purpose: OAuth `state`, account-link tokens.

HS256 JWTs keyed by `IW_SIGNING_KEY`; the purpose is the audience, so a token
minted for one flow is refused by another.
"""

from __future__ import annotations

import time
from typing import Any

import jwt


class InvalidSignedToken(Exception):
    """Forged, altered, expired, or minted for another purpose. The message says which, safely."""


def sign(key: str, purpose: str, claims: dict[str, Any], ttl_seconds: float) -> str:
    now = int(time.time())
    body = dict(claims)
    body.update({"aud": purpose, "iat": now, "exp": now + int(ttl_seconds)})
    return jwt.encode(body, key, algorithm="HS256")


def verify(key: str, purpose: str, token: str, *, max_ttl: float | None = None) -> dict[str, Any]:
    """The token's own claims. `max_ttl`: the longest life a token may have been issued with now; a
    token issued for longer (before the maximum was lowered, say after a leak) is refused."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            audience=purpose,
            options={"require": ["exp", "aud", "iat"] if max_ttl is not None else ["exp", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidSignedToken("token expired") from None
    except jwt.InvalidAudienceError:
        raise InvalidSignedToken("token was issued for another purpose") from None
    except jwt.InvalidTokenError:
        raise InvalidSignedToken("token is invalid") from None
    if max_ttl is not None:
        life = int(claims["exp"]) - int(claims["iat"])
        if life > int(max_ttl) + 1:  # issued with whole seconds
            raise InvalidSignedToken(f"token lives {life} s, longer than the {int(max_ttl)} s now allowed")
    for registered in ("aud", "iat", "exp"):
        claims.pop(registered, None)
    return claims
