"""Database rows, as the worker reads them. Secrets are never part of a row model's dump."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

LogLevel = Literal["info", "warning", "error"]


class IntegrationRow(BaseModel):
    """`integrations`: one installed integration of a team. `config` holds secrets encrypted."""

    model_config = ConfigDict(extra="ignore")

    id: str
    team_id: str
    external_team_id: str | None
    name: str
    type: str
    config: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class UserLinkRow(BaseModel):
    """`integration_user_link`: a platform user linked to an external account."""

    model_config = ConfigDict(extra="ignore")

    id: str
    team_id: str | None
    user_id: str
    external_user_id: str
    external_user_name: str | None
    integration_id: str | None
    integration_type: str | None
    config: dict[str, Any]
    status: str
    token_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class IntegrationLogRow(BaseModel):
    """`integration_logs`: what happened, per integration, for the dashboard."""

    model_config = ConfigDict(extra="ignore")

    id: str
    key: str
    integration_id: str
    team_id: str | None
    level: LogLevel
    message: str
    integration_user_link_id: str | None
    event_id: str | None
    details: dict[str, Any] | None
    duration_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    created_at: datetime


class ParkedMessage(BaseModel):
    """A message on the parking queue, as `integration-worker dead` shows it."""

    id: str
    routing_key: str
    type: str | None
    error: str
    error_kind: str
    attempts: int
    parked_at: str | None
    envelope: dict[str, Any] | None
    raw: str | None = None
