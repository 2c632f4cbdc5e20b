"""Typed access to the core tables an integration may read: `ctx.integrations` (installed
integrations of its type) and `ctx.links` (users' links to it)."""

from __future__ import annotations

from worker.sdk.backend import Backend
from worker.sdk.errors import PermanentError
from worker.sdk.records import IntegrationRecord, Link


class Integrations:
    """`ctx.integrations`: installed integrations of this context's type."""

    __slots__ = ("_backend", "_integration", "_team_id", "_type")

    def __init__(
        self, backend: Backend, type_: str, team_id: str | None, integration: IntegrationRecord | None
    ) -> None:
        self._backend = backend
        self._type = type_
        self._team_id = team_id
        self._integration = integration

    async def get(self, integration_id: str) -> IntegrationRecord | None:
        """One of this type by id (of this context's team, when it has one)."""
        record = await self._backend.integration(integration_id)
        if record is None or record.type != self._type:
            return None
        if self._team_id is not None and record.team_id != self._team_id:
            return None
        return record

    async def of_team(self, team_id: str) -> list[IntegrationRecord]:
        """The team's integrations of this type."""
        return await self._backend.integrations(self._type, team_id=team_id)

    async def active(self) -> list[IntegrationRecord]:
        """Every active integration of this type, of every team (schedules)."""
        return await self._backend.integrations(self._type, active_only=True)

    async def reload(self) -> IntegrationRecord:
        """This context's integration as stored now (another process may have changed its config)."""
        integration = self._integration
        if integration is None:
            raise RuntimeError("this context has no integration")
        fresh = await self._backend.integration(integration.id, fresh=True)
        if fresh is None:
            raise PermanentError(f"integration {integration.id} is no longer installed")
        return fresh


class Links:
    """`ctx.links`: users' links to this context's integration (within its team), or of this
    type across teams."""

    __slots__ = ("_backend", "_integration", "_type")

    def __init__(self, backend: Backend, type_: str, integration: IntegrationRecord | None) -> None:
        self._backend = backend
        self._type = type_
        self._integration = integration

    def _scope(self) -> tuple[str, str]:
        if self._integration is None:
            raise RuntimeError("this context has no integration: use ctx.links.across_teams(...)")
        return self._integration.id, self._integration.team_id

    async def get(self, link_id: str) -> Link | None:
        integration_id, team_id = self._scope()
        found = await self._backend.links(integration_id, team_id, link_id=link_id)
        return found[0] if found else None

    async def find(self, external_user_id: str) -> Link | None:
        """The link of the person with this id at the provider, if they linked."""
        integration_id, team_id = self._scope()
        found = await self._backend.links(integration_id, team_id, external_user_ids=[external_user_id])
        return found[0] if found else None

    async def of_accounts(self, external_user_ids: list[str]) -> list[Link]:
        """Links of the people with these ids at the provider (GitHub's numeric user ids), in one query."""
        integration_id, team_id = self._scope()
        return await self._backend.links(integration_id, team_id, external_user_ids=external_user_ids)

    async def all(self, *, user_ids: list[str] | None = None, active_only: bool = True) -> list[Link]:
        """This integration's links (of these platform users), the most recently updated first."""
        integration_id, team_id = self._scope()
        return await self._backend.links(integration_id, team_id, user_ids=user_ids, active_only=active_only)

    async def across_teams(self, *, external_user_id: str | None = None) -> list[Link]:
        """Active links of every active integration of this type, whichever team (schedules,
        receivers): all of them, or those of one account at the provider."""
        return await self._backend.links_across_teams(self._type, external_user_id=external_user_id)
