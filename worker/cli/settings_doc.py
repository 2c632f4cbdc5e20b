"""docs/configuration.md, generated from the settings models (`integration-worker config
--markdown`): the runtime's `IW_*` and each integration's `IW_<TYPE>_*`, with defaults and what
they do. A test keeps the committed page equal to what this prints."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from worker.core.settings import Settings
from worker.sdk.declare import Action
from worker.sdk.keys import describe, per_integration, unordered
from worker.sdk.registry import Registry

HEADER = """# Configuration

Every setting is an environment variable (or a line of a `.env` file in the working directory).
This page is generated from the settings models: `integration-worker config --markdown`.
Secrets (marked *secret*) never appear in logs or error messages.
"""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(development value)" if value.get_secret_value() else "(empty)"
    if isinstance(value, list):
        if value and isinstance(value[0], SecretStr):
            return "(development key)"
        return ",".join(str(v) for v in value) or "(empty)"
    if value is None:
        return "(unset)"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def _is_secret(field: FieldInfo) -> bool:
    return "SecretStr" in str(field.annotation)


def _table(model: type[BaseSettings], prefix: str) -> list[str]:
    lines = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        if _is_secret(field):
            description = f"*secret.* {description}".strip()
        lines.append(f"| `{prefix}{name.upper()}` | `{_default(field)}` | {description} |")
    return lines


def settings_markdown(registry: Registry) -> str:
    parts = [HEADER, "## The service", "", *_table(Settings, "IW_"), ""]
    for integration in sorted(registry, key=lambda i: i.type):
        if integration.settings is None:
            continue
        prefix = str(integration.settings.model_config.get("env_prefix") or "")
        parts += [f"## {integration.name} (`{integration.type}`)", "", *_table(integration.settings, prefix), ""]
    return "\n".join(parts).rstrip() + "\n"


def keys_markdown(registry: Registry) -> str:
    """The ordering key of every message kind (docs/contract.md, between its `keys` markers):
    `integration-worker integrations --keys`."""
    lines = ["| type | message | ordered by |", "|---|---|---|"]
    for integration in sorted(registry, key=lambda i: i.type):
        routes: list[tuple[str, Any]] = [(f"{h.kind}.{h.name}", h) for h in integration.handlers]
        routes += [(f"command.{a.name}", a) for a in integration.actions]
        for name, route in sorted(routes, key=lambda item: item[0]):
            declared = route.key or (unordered if isinstance(route, Action) else per_integration)
            lines.append(f"| `{integration.type}` | `{name}` | {describe(declared)} |")
    return "\n".join(lines) + "\n"


def settings_in_effect(settings: Settings, registry: Registry) -> dict[str, Any]:
    """Every setting's value in effect (`integration-worker config`), the integrations' too; a
    secret shows as "(set)" or null, never its value."""
    found = _values(settings)
    for integration in sorted(registry, key=lambda i: i.type):
        if integration.settings is not None:
            found.update(_values(integration.settings()))
    return found


def _without_password(url: str) -> str:
    """A URL (IW_AMQP_URL, IW_DATABASE_URL: several, comma-separated) with its password hidden."""
    hidden = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            hidden.append(urlunsplit(parts._replace(netloc=netloc)))
        else:
            hidden.append(one.strip())
    return ",".join(hidden)


def _values(model: BaseSettings) -> dict[str, Any]:
    prefix = str(model.model_config.get("env_prefix", ""))
    values: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            secret = value.get_secret_value().strip()
            value = _without_password(secret) if "://" in secret else "(set)" if secret else None
        elif isinstance(value, list) and value and isinstance(value[0], SecretStr):
            value = ["(set)"] * len(value)
        values[f"{prefix}{name}".upper()] = value
    return values
