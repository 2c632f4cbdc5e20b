"""OAuth flows as rows (`oauth_flows`), so a state is good once, in one browser.

start      a row: who connects (and whether to install), where to return, a PKCE verifier
           (encrypted), an expiry
claim      the first browser that follows the flow's link claims it; a random secret in a
           cookie binds that browser (the row keeps the secret's SHA-256)
consume    the callback takes the flow in one conditional UPDATE (claimed by this browser,
           unused, unexpired: then marked used), runs the completion (code exchange, tokens
           stored) holding no connection, and gives the flow back (unused) when the completion
           fails, so the user may try again from the same browser until it expires; a second
           callback meanwhile finds it used
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from worker.core.secrets import SecretBox
from worker.sdk.declare import OAuthStart


class FlowRefused(Exception):
    """The callback cannot use this flow; the message says why, for the user."""


@dataclass(frozen=True)
class Flow:
    id: str
    start: OAuthStart
    code_verifier: str

    @property
    def code_challenge(self) -> str:
        """PKCE S256: base64url(SHA-256(verifier)), unpadded."""
        digest = hashlib.sha256(self.code_verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def browser_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _flow(record: asyncpg.Record, box: SecretBox) -> Flow:
    start = OAuthStart(
        team_id=record["team_id"],
        user_id=record["user_id"],
        integration_id=record["integration_id"],
        return_to=record["return_to"],
        install=record["install"],
    )
    return Flow(record["id"], start, box.decrypt(record["code_verifier"]))


async def create(pool: asyncpg.Pool, box: SecretBox, type_: str, start: OAuthStart, ttl: float) -> str:
    flow_id = secrets.token_urlsafe(24)
    await pool.execute(
        """INSERT INTO oauth_flows
               (id, type, team_id, user_id, integration_id, return_to, install, code_verifier, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))""",
        flow_id,
        type_,
        start.team_id,
        start.user_id,
        start.integration_id,
        start.return_to,
        start.install,
        box.encrypt(secrets.token_urlsafe(48)),  # 64 characters: within PKCE's 43..128
        ttl,
    )
    return flow_id


async def claim(pool: asyncpg.Pool, box: SecretBox, type_: str, flow_id: str, browser: str) -> Flow:
    """The first browser to follow the link gets the flow; FlowRefused for any other."""
    record = await pool.fetchrow(
        """UPDATE oauth_flows SET claimed_at = now(), browser = $3
           WHERE id = $1 AND type = $2 AND claimed_at IS NULL AND expires_at > now()
           RETURNING *""",
        flow_id,
        type_,
        browser_hash(browser),
    )
    if record is None:
        raise FlowRefused("this sign-in link was already used or has expired: start again")
    return _flow(record, box)


@asynccontextmanager
async def consume(
    pool: asyncpg.Pool, box: SecretBox, type_: str, flow_id: str, browser: str | None
) -> AsyncIterator[Flow]:
    """The flow, taken for the completion (marked used); given back if the block raises."""
    record = await pool.fetchrow(
        """UPDATE oauth_flows SET used_at = now()
           WHERE id = $1 AND type = $2 AND used_at IS NULL AND expires_at > now() AND browser = $3
           RETURNING *""",
        flow_id,
        type_,
        browser_hash(browser) if browser is not None else None,
    )
    if record is None:
        raise FlowRefused(await _why_refused(pool, type_, flow_id, browser))
    try:
        yield _flow(record, box)
    except BaseException:
        await pool.execute("UPDATE oauth_flows SET used_at = NULL WHERE id = $1", flow_id)
        raise


async def _why_refused(pool: asyncpg.Pool, type_: str, flow_id: str, browser: str | None) -> str:
    record = await pool.fetchrow(
        "SELECT browser, used_at, expires_at <= now() AS expired FROM oauth_flows WHERE id = $1 AND type = $2",
        flow_id,
        type_,
    )
    if record is None or record["expired"]:
        return "this sign-in has expired: start again"
    if record["used_at"] is not None:
        return "this sign-in was already completed"
    if (
        record["browser"] is None
        or browser is None
        or not secrets.compare_digest(record["browser"], browser_hash(browser))
    ):
        return "this sign-in was started in another browser: start again from this one"
    return "this sign-in cannot be completed: start again"
