"""The registry: every integration, by type. It checks itself when built, so a broken
declaration fails start-up with every problem listed, not a message at 3 a.m."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.envelope import KINDS, valid_name, valid_type
from worker.sdk.declare import Action, Handler, Integration, tool_name
from worker.sdk.keys import MessageView, key_of, per_integration, unordered

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOOL_NAME_MAX = 64  # OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$


class RegistryError(Exception):
    pass


Route = Handler | Action[Any, Any]


class Registry:
    def __init__(self, integrations: Sequence[Integration]) -> None:
        self._by_type: dict[str, Integration] = {}
        problems: list[str] = []
        for integration in integrations:
            problems += check(integration)
            if integration.type in self._by_type:
                problems.append(f"type {integration.type!r} is declared twice")
            self._by_type[integration.type] = integration
        if problems:
            raise RegistryError("invalid integration registry:\n  - " + "\n  - ".join(problems))
        self._routes: dict[tuple[str, str, str], Route] = {}
        for integration in self._by_type.values():
            for handler in integration.handlers:
                self._routes[(integration.type, handler.kind, handler.name)] = handler
            for action in integration.actions:
                self._routes[(integration.type, "command", action.name)] = action

    def with_builtin(self, integration: Integration) -> Registry:
        """This registry plus a built-in type (the platform's own `integration` commands)."""
        if integration.type in self._by_type:
            return self
        return Registry([integration, *self._by_type.values()])

    def __iter__(self) -> Iterator[Integration]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    def get(self, type_: str) -> Integration | None:
        return self._by_type.get(type_)

    def route(self, type_: str, kind: str, name: str) -> Route | None:
        """What runs `<type>.<kind>.<name>`: a handler, an action (commands), or None."""
        return self._routes.get((type_, kind, name)) or self._routes.get((type_, kind, "*"))

    def key_of(self, message: MessageView) -> str:
        """The ordering key of a message about to be published (the `iw-key` header): what its
        handler or action declares, else one order per integration (handlers) or none (actions)."""
        route = self.route(message.type, message.kind, message.name)
        if route is None:
            return key_of(message, None)
        declared = route.key
        if declared is None:
            declared = unordered if isinstance(route, Action) else per_integration
        return key_of(message, declared)

    def migration_dirs(self) -> list[tuple[str, Path]]:
        return [(i.type, d) for i in self._by_type.values() if (d := i.migrations) is not None]


def check(integration: Integration) -> list[str]:
    """Everything wrong with one declaration."""
    where = f"integration {integration.type!r}"
    problems = []
    if not valid_type(integration.type):
        problems.append(f"{where}: type must match [a-z][a-z0-9-]*")
    if not integration.name or not integration.description:
        problems.append(f"{where}: name and description are required")
    if not (isinstance(integration.config, type) and issubclass(integration.config, BaseModel)):
        problems.append(f"{where}: config must be a pydantic model class")
    else:
        try:
            integration.config.model_json_schema()
        except Exception as exc:
            problems.append(f"{where}: config model has no JSON Schema: {exc}")
    seen: set[tuple[str, str]] = set()
    for handler in integration.handlers:
        if handler.kind not in KINDS:
            problems.append(f"{where}: handler kind {handler.kind!r} is not one of {', '.join(KINDS)}")
        if handler.name != "*" and not valid_name(handler.name):
            problems.append(f"{where}: handler name {handler.name!r} is not a valid name")
        if (handler.kind, handler.name) in seen:
            problems.append(f"{where}: two handlers for {handler.kind}.{handler.name}")
        seen.add((handler.kind, handler.name))
        if not inspect.iscoroutinefunction(handler.run):
            problems.append(f"{where}: handler {handler.kind}.{handler.name} must be an async function")
    problems += _check_actions(integration, where, seen)
    for hook_name in ("validate", "pre_install", "post_install", "pre_uninstall"):
        hook = getattr(integration.lifecycle, hook_name)
        if hook is not None and not inspect.iscoroutinefunction(hook):
            problems.append(f"{where}: lifecycle hook {hook_name} must be an async function")
    problems += _check_user_links(integration, where)
    for service in integration.services:
        if not inspect.iscoroutinefunction(service.run):
            problems.append(f"{where}: service {service.name} must be an async function")
    for schedule in integration.schedules:
        if not inspect.iscoroutinefunction(schedule.run):
            problems.append(f"{where}: schedule {schedule.name} must be an async function")
    if integration.migrations is not None and not integration.migrations.is_dir():
        problems.append(f"{where}: migrations folder {integration.migrations} does not exist")
    return problems


def _check_user_links(integration: Integration, where: str) -> list[str]:
    links = integration.user_links
    problems = []
    if links.config is not None:
        if not (isinstance(links.config, type) and issubclass(links.config, BaseModel)):
            problems.append(f"{where}: user_links.config must be a pydantic model class")
        else:
            try:
                links.config.model_validate({})
            except Exception as exc:
                problems.append(f"{where}: user_links.config needs a default for every field: {exc}")
    elif links.on_config_change is not None:
        problems.append(f"{where}: user_links.on_config_change needs user_links.config")
    for hook_name in ("on_config_change", "on_unlink"):
        hook = getattr(links, hook_name)
        if hook is not None and not inspect.iscoroutinefunction(hook):
            problems.append(f"{where}: user_links.{hook_name} must be an async function")
    return problems


def _check_actions(integration: Integration, where: str, handlers: set[tuple[str, str]]) -> list[str]:
    problems = []
    names: set[str] = set()
    for action in integration.actions:
        if not _ACTION_RE.match(action.name):
            problems.append(f"{where}: action name {action.name!r} must match [a-z][a-z0-9_]*")
        if action.name in names:
            problems.append(f"{where}: action {action.name!r} is declared twice")
        names.add(action.name)
        if ("command", action.name) in handlers:
            problems.append(f"{where}: action {action.name!r} clashes with a command handler of that name")
        if not action.description:
            problems.append(f"{where}: action {action.name!r} needs a description (agents read it)")
        tool = tool_name(integration.type, action.name)
        if len(tool) > _TOOL_NAME_MAX:
            problems.append(f"{where}: tool name {tool!r} is longer than {_TOOL_NAME_MAX}")
        for role, model in (("input", action.input), ("output", action.output)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                problems.append(f"{where}: action {action.name!r} {role} must be a pydantic model class")
                continue
            try:
                schema = model.model_json_schema()
            except Exception as exc:
                problems.append(f"{where}: action {action.name!r} {role} model has no JSON Schema: {exc}")
                continue
            if schema.get("type") != "object":
                problems.append(f"{where}: action {action.name!r} {role} must be a JSON object (tools take objects)")
        if not inspect.iscoroutinefunction(action.run):
            problems.append(f"{where}: action {action.name!r} must be an async function")
    return problems


def load_registry(spec: str) -> Registry:
    """`module:attribute`, for example `integrations.registry:REGISTRY`."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import registry module {module_name!r}: {exc}") from exc
    registry = getattr(module, attribute or "REGISTRY", None)
    if not isinstance(registry, Registry):
        raise RegistryError(f"{spec} is not a worker.sdk.Registry")
    return registry
