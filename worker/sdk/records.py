"""Typed views of the core tables an integration may read: its integration and users' links."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.rows import IntegrationRow

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class IntegrationRecord:
    """An installed integration: its row, and its config decrypted and validated by the
    integration's config model."""

    row: IntegrationRow
    config: BaseModel

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def team_id(self) -> str:
        return self.row.team_id

    @property
    def type(self) -> str:
        return self.row.type

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def status(self) -> str:
        return self.row.status

    @property
    def is_active(self) -> bool:
        return self.row.is_active

    @property
    def external_team_id(self) -> str | None:
        return self.row.external_team_id

    def config_as(self, model: builtins.type[M]) -> M:
        if not isinstance(self.config, model):
            raise TypeError(f"config is {type(self.config).__name__}, not {model.__name__}")
        return self.config


@dataclass(frozen=True, slots=True)
class Link:
    """A platform user linked to an account at the provider (`integration_user_link`). Tokens
    are never part of it: `ctx.tokens` hands them out."""

    id: str
    team_id: str | None
    integration_id: str | None
    type: str | None
    user_id: str
    external_user_id: str
    external_user_name: str | None
    status: str
    config: dict[str, Any] = field(default_factory=dict)
    has_refresh_token: bool = False
    token_expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def settings_as(self, model: builtins.type[M]) -> M:
        """The user's own settings (the integration's `UserLinks.config`) as the link holds them:
        the model's fields it holds, defaults for the rest; all defaults when what it holds is no
        longer valid (written before the model changed, or by hand)."""
        names = {f.alias or name for name, f in model.model_fields.items()} | set(model.model_fields)
        try:
            return model.model_validate({k: v for k, v in self.config.items() if k in names})
        except ValidationError:
            return model.model_validate({})
