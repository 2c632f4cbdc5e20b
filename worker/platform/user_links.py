"""What a team's users see and change of an integration, the one path behind the admin routes
(link_api.py), the CLI (`integration-worker logs`, `links`) and the `integration` commands
(link_commands.py):

    read_logs           `integration_logs` rows, newest first, by level, time range and key, paged
    list_links          the users linked to it (never a token)
    change_link_config  a user's own link settings, validated by the integration's
                        `UserLinks.config` model; its `on_config_change` hook runs in the change's
                        unit of work, so what it stages (commands for the real work) commits with
                        the change or not at all
    unlink              the integration's `on_unlink` hook (stop watches, revoke the tokens), then
                        the link row goes, with `integration.user_unlinked`

Every function is team-scoped: an integration or link of another team is a 404, as an unknown one.
Refusals are `InstallError`s (status, message, per-field errors), as the install path's are.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.envelope import Envelope
from schemas.events import UserUnlinked
from schemas.rows import LogLevel
from worker.core.ids import derived_id
from worker.core.logging import get_logger
from worker.core.redact import redact, redact_value
from worker.platform.install import InstallError, owned_row, readable
from worker.runtime import admin_store, store
from worker.runtime.runtime import Runtime
from worker.sdk.context import Context
from worker.sdk.declare import Integration
from worker.sdk.errors import IntegrationError, TransientError, field_errors
from worker.sdk.records import IntegrationRecord, Link
from worker.sdk.unit import Staged

# --- models: queries and answers ------------------------------------------------------------------------


class LogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: list[LogLevel] | None = Field(default=None, description="Only these levels (default: all).")
    since: AwareDatetime | None = Field(default=None, description="Rows written at or after this time.")
    until: AwareDatetime | None = Field(default=None, description="Rows written before this time.")
    key: str | None = Field(default=None, max_length=200, description="Only rows with this key (`action_call`, ...).")
    limit: int = Field(default=50, ge=1, le=200, description="Rows per page.")
    cursor: str | None = Field(default=None, max_length=200, description="`next_cursor` of the previous page.")

    @model_validator(mode="after")
    def _range(self) -> LogQuery:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class LogEntry(BaseModel):
    id: str
    key: str
    level: LogLevel
    message: str
    event_id: str | None
    user_link_id: str | None
    details: dict[str, Any] | None
    duration_ms: int | None
    created_at: datetime


class LogsPage(BaseModel):
    logs: list[LogEntry]
    next_cursor: str | None = Field(description="Pass it as `cursor` for the next (older) page; null: no more.")


class LinkQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, max_length=256, description="Only this platform user's links.")
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


class LinkView(BaseModel):
    """A user's link as any read shows it: never a token."""

    id: str
    integration_id: str
    type: str
    user_id: str
    external_user_id: str
    external_user_name: str | None
    status: str = Field(description="`active`, or `needs_reconnect` (the user must connect again).")
    config: dict[str, Any] = Field(description="The settings the user may change (the integration's link model).")
    created_at: datetime | None
    updated_at: datetime | None


class LinksPage(BaseModel):
    links: list[LinkView]
    next_offset: int | None


class Unlinked(BaseModel):
    link_id: str
    integration_id: str
    unlinked: bool = True
    revoked: bool = Field(description="The provider revoked the link's tokens (false: nothing to revoke there).")


# --- logs --------------------------------------------------------------------------------------------------


def _cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, row_id = text.partition("|")
        when = datetime.fromisoformat(moment)
    except ValueError:
        raise InstallError(400, "invalid request", {"cursor": ["not a cursor this API gave"]}) from None
    if not row_id or when.tzinfo is None:
        raise InstallError(400, "invalid request", {"cursor": ["not a cursor this API gave"]})
    return when, row_id


async def read_logs(runtime: Runtime, integration_id: str, team_id: str, query: LogQuery) -> LogsPage:
    await owned_row(runtime, integration_id, team_id)
    rows = await admin_store.log_page(
        runtime.pool,
        integration_id,
        team_id,
        levels=query.level,
        since=query.since,
        until=query.until,
        key=query.key,
        before=_after(query.cursor) if query.cursor else None,
        limit=query.limit + 1,
    )
    page = rows[: query.limit]
    entries = [
        LogEntry(
            id=r.id,
            key=r.key,
            level=r.level,
            message=redact(r.message),
            event_id=r.event_id,
            user_link_id=r.integration_user_link_id,
            details=redact_value("details", r.details),
            duration_ms=r.duration_ms,
            created_at=r.created_at,
        )
        for r in page
    ]
    more = len(rows) > query.limit
    return LogsPage(logs=entries, next_cursor=_cursor(page[-1].created_at, page[-1].id) if more else None)


# --- links -------------------------------------------------------------------------------------------------


def _settings_of(integration: Integration, link: Link) -> BaseModel | None:
    """The user's settings as the link holds them (defaults for what it does not hold yet)."""
    model = integration.user_links.config
    return link.settings_as(model) if model is not None else None


def view(integration: Integration, link: Link) -> LinkView:
    settings = _settings_of(integration, link)
    return LinkView(
        id=link.id,
        integration_id=link.integration_id or "",
        type=link.type or integration.type,
        user_id=link.user_id,
        external_user_id=link.external_user_id,
        external_user_name=link.external_user_name,
        status=link.status,
        config=settings.model_dump(mode="json", by_alias=True) if settings is not None else {},
        created_at=link.created_at,
        updated_at=link.updated_at,
    )


def _integration(runtime: Runtime, type_: str) -> Integration:
    integration = runtime.registry.get(type_)
    if integration is None:
        raise InstallError(404, f"unknown integration type {type_!r}")
    return integration


async def list_links(runtime: Runtime, integration_id: str, team_id: str, query: LinkQuery) -> LinksPage:
    row = await owned_row(runtime, integration_id, team_id)
    integration = _integration(runtime, row.type)
    links = await store.links(
        runtime.pool, integration_id, team_id, user_ids=[query.user_id] if query.user_id is not None else None
    )
    page = links[query.offset : query.offset + query.limit]
    more = query.offset + query.limit < len(links)
    return LinksPage(
        links=[view(integration, link) for link in page], next_offset=query.offset + query.limit if more else None
    )


async def _link(runtime: Runtime, record: IntegrationRecord, link_id: str) -> Link:
    found = await store.links(runtime.pool, record.id, record.team_id, link_id=link_id)
    if not found:
        raise InstallError(404, "no such link for this integration and team")
    return found[0]


def _context(runtime: Runtime, record: IntegrationRecord, staged: Staged, action: str, cause: str | None) -> Context:
    """A context of the integration, whose unit of work is `staged`. Its id derives from the
    command that asked (so what it publishes keeps its ids when that command runs again)."""
    envelope_id = derived_id(cause, action) if cause is not None else f"{action}:{uuid.uuid4()}"
    envelope = Envelope(
        id=envelope_id, type=record.type, kind="command", name=action, integration_id=record.id, team_id=record.team_id
    )
    return runtime.context(envelope, record, staged=staged)


async def _commit(runtime: Runtime, staged: Staged) -> None:
    try:
        await runtime.commit(staged)
    except (asyncpg.PostgresError, OSError) as exc:
        raise InstallError(
            503, f"the change could not be saved ({type(exc).__name__}); try again", again=True
        ) from None


async def change_link_config(
    runtime: Runtime,
    integration_id: str,
    team_id: str,
    link_id: str,
    changes: dict[str, Any],
    *,
    source: str,
    staged: Staged | None = None,
    cause: str | None = None,
) -> LinkView:
    """Replace the given top-level fields of the link's settings. With `staged` (a command's unit of
    work) the change is staged there; without, it commits here."""
    record = readable(runtime, await owned_row(runtime, integration_id, team_id))
    integration = _integration(runtime, record.type)
    model = integration.user_links.config
    if model is None:
        raise InstallError(
            400, "invalid request", {"config": [f"{integration.name} links have no settings a user can change"]}
        )
    unit = staged if staged is not None else Staged()
    ctx = _context(runtime, record, unit, "link_config", cause)
    try:
        async with ctx.exclusive(f"link:{link_id}", wait=5.0):
            link = await _link(runtime, record, link_id)
            before = _settings_of(integration, link)
            assert before is not None
            try:
                after = model.model_validate({**before.model_dump(by_alias=True), **changes})
            except ValidationError as exc:
                raise InstallError(400, "invalid config", field_errors(exc)) from None
            stored = after.model_dump(mode="json", by_alias=True)
            unit.writes.append((admin_store.MERGE_LINK_CONFIG, (team_id, link.id, stored)))
            previous = before.model_dump(mode="json", by_alias=True)
            changed = sorted(k for k, v in stored.items() if previous.get(k) != v)
            if changed and integration.user_links.on_config_change is not None:
                ctx.user_link = link
                await integration.user_links.on_config_change(ctx, link, before, after)
            ctx.record(
                "info",
                "link_config_changed",
                f"{link.external_user_name or link.external_user_id}: settings "
                f"{'changed: ' + ', '.join(changed) if changed else 'unchanged'} ({source})",
                details={"changed": changed, "source": source, "user_id": link.user_id},
                user_link_id=link.id,
            )
    except TransientError as exc:
        raise InstallError(409, f"{exc}; try again", again=True) from None
    except IntegrationError as exc:
        raise InstallError(502, f"applying the settings failed: {redact(str(exc))}") from None
    if staged is None:
        await _commit(runtime, unit)
    get_logger(component="links").info("link settings changed", link_id=link_id, changed=changed, source=source)
    return view(integration, dataclasses.replace(link, config={**link.config, **stored}))


async def unlink(
    runtime: Runtime,
    integration_id: str,
    team_id: str,
    link_id: str,
    *,
    source: str,
    force: bool = False,
    staged: Staged | None = None,
    cause: str | None = None,
) -> Unlinked:
    """The integration's `on_unlink` (stop watches, revoke the tokens), then the link row goes
    (its rows in the integration's tables with it, by their cascades). `force`: even when that
    hook fails, or the integration's config cannot be read (the hook cannot run)."""
    log = get_logger(component="links")
    row = await owned_row(runtime, integration_id, team_id)
    integration = _integration(runtime, row.type)
    hook = integration.user_links.on_unlink
    try:
        record = readable(runtime, row)
    except InstallError as exc:
        if not force:
            raise
        log.warning("config unreadable; unlinked without the provider's clean-up (force)", reason=exc.message)
        record = IntegrationRecord(row, integration.config.model_construct())
        hook = None
    unit = staged if staged is not None else Staged()
    ctx = _context(runtime, record, unit, "unlink", cause)
    revoked = False
    try:
        async with ctx.exclusive(f"link:{link_id}", wait=5.0):
            link = await _link(runtime, record, link_id)
            ctx.user_link = link
            writes, outbox = len(unit.writes), len(unit.outbox)
            try:
                revoked = bool(await hook(ctx, link)) if hook is not None else False
            except (IntegrationError, OSError) as exc:
                if not force:
                    again = isinstance(exc, TransientError | OSError)  # the provider away: retried
                    raise InstallError(
                        502, f"unlinking at the provider failed: {redact(str(exc))}", again=again
                    ) from None
                del unit.writes[writes:], unit.outbox[outbox:]
                log.warning(
                    "provider clean-up failed; unlinked anyway (force)", link_id=link.id, error=redact(str(exc))
                )
            unit.writes.append((admin_store.DELETE_LINK, (team_id, link.id)))
            ctx.emit(
                UserUnlinked(
                    link_id=link.id,
                    integration_id=record.id,
                    integration_type=record.type,
                    user_id=link.user_id,
                    external_user_id=link.external_user_id,
                    revoked=revoked,
                    source=source,
                )
            )
            ctx.record(
                "info",
                "user_unlinked",
                f"{link.external_user_name or link.external_user_id} unlinked from platform user {link.user_id}"
                f" ({source}{', tokens revoked' if revoked else ''})",
                details={"link_id": link.id, "user_id": link.user_id, "revoked": revoked, "source": source},
            )
    except TransientError as exc:
        raise InstallError(409, f"{exc}; try again", again=True) from None
    if staged is None:
        await _commit(runtime, unit)
    log.info("user unlinked", integration_id=record.id, link_id=link_id, revoked=revoked, source=source)
    return Unlinked(link_id=link_id, integration_id=record.id, revoked=revoked)
