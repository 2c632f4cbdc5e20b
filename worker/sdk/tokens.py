"""`ctx.tokens`: users' OAuth tokens, kept encrypted by the runtime and always handed out valid.

Integrations never hold a user's credentials in a shared client: every provider call asks for
the token of one link and gets a string for that call alone.

    await ctx.tokens.access_token(link_id, refresher)       a token valid for a while yet
    await ctx.tokens.call(link_id, refresher, fn)           fn(token); on a 401, refresh once, again
    await ctx.tokens.save(NewLink(...))                     an OAuth code exchange's result

Near expiry a token is refreshed once at a time across every process; a refresh token the
provider refuses (`InvalidGrant`) marks the link `needs_reconnect`, publishes
`integration.link_needs_reconnect`, and raises `LinkNeedsReconnect` from then on.
The provider side (how to refresh) is the integration's `TokenRefresher`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from schemas.envelope import Envelope
from worker.sdk.errors import PermanentError, ProviderError

T = TypeVar("T")


class TokenRefresher(Protocol):
    """How a provider refreshes a user's token (Google's token endpoint, say)."""

    async def refresh(self, http: httpx.AsyncClient, refresh_token: str) -> TokenGrant: ...


@dataclass(frozen=True)
class TokenGrant:
    """What a provider's token endpoint answered. `refresh_token` only when it issued one
    (a first consent, or a rotation); `expires_in` in seconds."""

    access_token: str
    expires_in: float | None = None
    refresh_token: str | None = None
    scope: str | None = None

    def __repr__(self) -> str:  # never print the tokens
        return f"TokenGrant(expires_in={self.expires_in!r}, scope={self.scope!r})"


class InvalidGrant(Exception):
    """Raised by a refresher: the provider refused the refresh token for good (revoked,
    expired, password changed). The message is the provider's reason, without secrets."""


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link to create or renew from an OAuth code exchange."""

    team_id: str
    integration_id: str
    integration_type: str
    user_id: str
    external_user_id: str
    external_user_name: str | None
    grant: TokenGrant
    config: dict[str, Any] | None = None


class TokenService(Protocol):
    async def access_token(
        self, link_id: str, refresher: TokenRefresher, *, team_id: str | None, cause: Envelope | None
    ) -> str: ...

    async def refresh(
        self,
        link_id: str,
        refresher: TokenRefresher,
        *,
        failed_token: str | None,
        team_id: str | None,
        cause: Envelope | None,
    ) -> str: ...

    async def save(self, link: NewLink) -> str: ...


class Tokens:
    """The token service, scoped to a context's team (None: unscoped, an OAuth callback)."""

    __slots__ = ("_cause", "_service", "_team_id")

    def __init__(self, service: TokenService, team_id: str | None, cause: Envelope | None) -> None:
        self._service = service
        self._team_id = team_id
        self._cause = cause

    async def access_token(self, link_id: str, refresher: TokenRefresher) -> str:
        return await self._service.access_token(link_id, refresher, team_id=self._team_id, cause=self._cause)

    async def refresh(self, link_id: str, refresher: TokenRefresher, *, failed_token: str | None = None) -> str:
        return await self._service.refresh(
            link_id, refresher, failed_token=failed_token, team_id=self._team_id, cause=self._cause
        )

    async def call(self, link_id: str, refresher: TokenRefresher, fn: Callable[[str], Awaitable[T]]) -> T:
        """`fn(token)`; when the provider answers 401 (ProviderError), refresh once and call again."""
        token = await self.access_token(link_id, refresher)
        try:
            return await fn(token)
        except ProviderError as exc:
            if exc.status != 401:
                raise
        token = await self.refresh(link_id, refresher, failed_token=token)
        return await fn(token)

    async def save(self, link: NewLink) -> str:
        """Create or renew a link from an OAuth code exchange; returns the link id. A grant
        without a refresh token keeps the stored one. The link becomes active again."""
        if self._team_id is not None and link.team_id != self._team_id:
            raise PermanentError("cannot link a user of another team")
        return await self._service.save(link)
