"""Users' OAuth tokens (the SDK's `TokenService`): kept encrypted on `integration_user_link`,
always handed out valid.

    valid and not near expiry  -> the stored token (cached in the process until then)
    near expiry (`margin`)     -> refreshed, once at a time across every process:
                                  a per-process lock, then the link's row lock (FOR UPDATE),
                                  then a re-check (another process may have refreshed meanwhile)
    401 from the provider      -> the same, forced unless the stored token already changed
    rotated refresh token      -> saved in the refresh's transaction
    invalid_grant              -> the link is marked `needs_reconnect` and
                                  `integration.link_needs_reconnect` is published (same
                                  transaction, through the outbox); LinkNeedsReconnect
                                  (permanent) is raised, now and for every later call,
                                  without calling the provider, until the user connects again
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from schemas.envelope import Envelope
from schemas.events import ResultEvent, UserLinkNeedsReconnect
from worker.core.ids import derived_id
from worker.core.secrets import SecretBox
from worker.runtime import store
from worker.runtime.db import Conn
from worker.sdk.errors import LinkNeedsReconnect, PermanentError, TransientError
from worker.sdk.tokens import InvalidGrant, NewLink, TokenGrant, TokenRefresher
from worker.sdk.unit import LogEntry, OutboxItem

REFRESH_MARGIN_SECONDS = 300.0  # refresh this long before the provider's expiry
_STRIPES = 256
_CACHE_SIZE = 10_000

PublishOutbox = Callable[[Sequence[OutboxItem]], Awaitable[object]]


@dataclass
class _Cached:
    token: str
    expires_at: float  # epoch seconds


class TokenStore:
    """One per process (the runtime's). Integrations use it through `ctx.tokens`."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        secrets: SecretBox,
        http: httpx.AsyncClient,
        *,
        results_exchange: str,
        publish_outbox: PublishOutbox,
        margin: float = REFRESH_MARGIN_SECONDS,
        lock_timeout: float = 30.0,
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._http = http
        self._results_exchange = results_exchange
        self._publish_outbox = publish_outbox
        self.margin = margin
        self._lock_timeout = lock_timeout
        self._stripes = [asyncio.Lock() for _ in range(_STRIPES)]
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    # --- linking ------------------------------------------------------------------------------------

    async def save(self, link: NewLink) -> str:
        """Create or renew a link from an OAuth code exchange; returns the link id. A grant
        without a refresh token keeps the stored one. The link becomes active again."""
        box = self._secrets
        grant = link.grant
        expires = _expiry(grant)
        link_id: str = await self._pool().fetchval(
            """INSERT INTO integration_user_link AS l (user_id, team_id, external_user_id, external_user_name,
                   integration_id, integration_type, access_token, refresh_token, token_expires_at, config, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active')
               ON CONFLICT (integration_id, external_user_id) DO UPDATE SET
                   user_id = EXCLUDED.user_id, team_id = EXCLUDED.team_id,
                   external_user_name = EXCLUDED.external_user_name, integration_type = EXCLUDED.integration_type,
                   access_token = EXCLUDED.access_token,
                   refresh_token = COALESCE(EXCLUDED.refresh_token, l.refresh_token),
                   token_expires_at = EXCLUDED.token_expires_at, config = l.config || EXCLUDED.config,
                   status = 'active', updated_at = now()
               RETURNING id""",
            link.user_id,
            link.team_id,
            link.external_user_id,
            link.external_user_name,
            link.integration_id,
            link.integration_type,
            box.encrypt(grant.access_token),
            box.encrypt_optional(grant.refresh_token),
            expires,
            link.config or {},
        )
        self._forget(link_id)
        return link_id

    # --- handing out tokens -----------------------------------------------------------------------------

    async def access_token(
        self,
        link_id: str,
        refresher: TokenRefresher,
        *,
        team_id: str | None = None,
        cause: Envelope | None = None,
    ) -> str:
        """A token valid for at least `margin` seconds (refreshed if needed)."""
        cached = self._cache.get(link_id)
        if cached is not None and cached.expires_at - self.margin > time.time():
            return cached.token
        row = await self._pool().fetchrow(
            "SELECT access_token, token_expires_at, status FROM integration_user_link"
            " WHERE id = $1 AND ($2::text IS NULL OR team_id = $2)",
            link_id,
            team_id,
        )
        if row is None:
            raise PermanentError(f"user link {link_id} does not exist")
        if row["status"] != "active":
            raise LinkNeedsReconnect(f"user link {link_id} needs reconnecting: the user must connect the account again")
        if row["access_token"] and _epoch(row["token_expires_at"]) - self.margin > time.time():
            token = self._secrets.decrypt(row["access_token"])
            self._remember(link_id, token, _epoch(row["token_expires_at"]))
            return token
        return await self.refresh(link_id, refresher, team_id=team_id, cause=cause)

    async def refresh(
        self,
        link_id: str,
        refresher: TokenRefresher,
        *,
        failed_token: str | None = None,
        team_id: str | None = None,
        cause: Envelope | None = None,
    ) -> str:
        """Refresh, unless someone did meanwhile. `failed_token`: the provider refused it (401),
        so any other stored token counts as newer, and this one is never handed out again."""
        async with self._stripes[zlib.crc32(link_id.encode()) % _STRIPES]:
            cached = self._cache.get(link_id)
            if cached is not None and cached.token != failed_token and cached.expires_at - self.margin > time.time():
                return cached.token
            if failed_token is not None:
                self._forget(link_id)
            outcome = await self._refresh_locked(link_id, refresher, failed_token, team_id, cause)
        if isinstance(outcome, _Reconnect):
            await self._publish_outbox([outcome.item])
            raise LinkNeedsReconnect(
                f"user link {link_id} needs reconnecting: {outcome.reason}; the user must connect the account again"
            )
        return outcome

    # --- internals ------------------------------------------------------------------------------------------

    async def _refresh_locked(
        self,
        link_id: str,
        refresher: TokenRefresher,
        failed_token: str | None,
        team_id: str | None,
        cause: Envelope | None,
    ) -> str | _Reconnect:
        box = self._secrets
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{int(self._lock_timeout * 1000)}ms'")
            try:
                row = await conn.fetchrow(
                    """SELECT id, team_id, user_id, external_user_id, integration_id, integration_type, access_token,
                              refresh_token, token_expires_at, status
                       FROM integration_user_link WHERE id = $1 AND ($2::text IS NULL OR team_id = $2) FOR UPDATE""",
                    link_id,
                    team_id,
                )
            except asyncpg.LockNotAvailableError:
                raise TransientError(f"user link {link_id}: another process is refreshing its token") from None
            if row is None:
                raise PermanentError(f"user link {link_id} does not exist")
            if row["status"] != "active":
                raise LinkNeedsReconnect(f"user link {link_id} needs reconnecting: the user must connect again")
            current = box.decrypt(row["access_token"]) if row["access_token"] else None
            expires_at = _epoch(row["token_expires_at"])
            if current is not None and current != failed_token and expires_at - self.margin > time.time():
                self._remember(link_id, current, expires_at)  # refreshed by another process meanwhile
                return current
            if not row["refresh_token"]:
                return await self._needs_reconnect(conn, row, "no refresh token is stored", cause)
            try:
                grant = await refresher.refresh(self._http, box.decrypt(row["refresh_token"]))
            except InvalidGrant as exc:
                return await self._needs_reconnect(conn, row, f"the provider refused the refresh token ({exc})", cause)
            except TransientError:
                # The provider is unavailable; a token that has not expired yet still works.
                if current is not None and current != failed_token and expires_at > time.time() + 10:
                    return current
                raise
            new_expiry = _expiry(grant)
            await conn.execute(
                """UPDATE integration_user_link SET access_token = $2, token_expires_at = $3,
                       refresh_token = COALESCE($4, refresh_token), updated_at = now()
                   WHERE id = $1""",
                link_id,
                box.encrypt(grant.access_token),
                new_expiry,
                box.encrypt_optional(grant.refresh_token),
            )
        self._remember(link_id, grant.access_token, _epoch(new_expiry))
        return grant.access_token

    async def _needs_reconnect(
        self, conn: Conn, row: asyncpg.Record, reason: str, cause: Envelope | None
    ) -> _Reconnect:
        changed_at = await conn.fetchval(
            """UPDATE integration_user_link SET status = 'needs_reconnect', access_token = NULL,
                   refresh_token = NULL, token_expires_at = NULL, updated_at = now()
               WHERE id = $1 RETURNING updated_at""",
            row["id"],
        )
        data = UserLinkNeedsReconnect(
            link_id=row["id"],
            integration_id=row["integration_id"],
            type=row["integration_type"] or "",
            user_id=row["user_id"],
            external_user_id=row["external_user_id"],
            reason=reason,
        )
        event: ResultEvent[Any] = ResultEvent[Any](
            id=derived_id("link-needs-reconnect", row["id"], changed_at.isoformat()),
            event=data.EVENT,
            source_type=row["integration_type"] or "integration",
            team_id=row["team_id"],
            integration_id=row["integration_id"],
            causation_id=cause.id if cause is not None else f"link:{row['id']}",
            trace_id=cause.trace_id if cause is not None else uuid.uuid4().hex,
            data=data,
        )
        item = OutboxItem(
            event.id,
            self._results_exchange,
            data.EVENT,
            orjson.dumps(event.model_dump(mode="json")),
        )
        await store.insert_outbox(conn, [item])
        if row["integration_id"]:
            await store.insert_logs(
                conn,
                [
                    LogEntry(
                        row["integration_id"],
                        row["team_id"],
                        "warning",
                        "link_needs_reconnect",
                        f"{row['external_user_id']} must connect again: {reason}",
                        cause.id if cause is not None else None,
                        None,
                        row["id"],
                    )
                ],
            )
        self._forget(row["id"])
        return _Reconnect(item, reason)

    def _remember(self, link_id: str, token: str, expires_at: float) -> None:
        self._cache[link_id] = _Cached(token, expires_at)
        self._cache.move_to_end(link_id)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _forget(self, link_id: str) -> None:
        self._cache.pop(link_id, None)


@dataclass(frozen=True)
class _Reconnect:
    item: OutboxItem
    reason: str


def _expiry(grant: TokenGrant) -> datetime | None:
    if grant.expires_in is None:
        return None
    return datetime.now(UTC) + timedelta(seconds=float(grant.expires_in))


def _epoch(value: datetime | None) -> float:
    """A missing expiry means the provider did not say: treat the token as long-lived."""
    return value.timestamp() if value is not None else float("inf")
