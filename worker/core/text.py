"""Text PostgreSQL cannot store: the NUL character (U+0000), refused in `text` and `jsonb`
columns alike. Input from users (ids, configs) holding one is refused at the boundary with the
field named (`nul_field`); text from providers (a pull request's title) is stored without it
(`without_nul`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NUL = "\x00"
REFUSAL = "contains a NUL character (U+0000), which cannot be stored"


def nul_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or mapping key) in `value` holding NUL, else None;
    the whole value's path is "" (say "value" then)."""
    if isinstance(value, str):
        return (path or "value") if NUL in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and NUL in key:
                return where
            found = nul_field(item, where)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = nul_field(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def without_nul(value: Any) -> Any:
    """`value` with NUL removed from every string in it (mappings and sequences walked)."""
    if isinstance(value, str):
        return value.replace(NUL, "") if NUL in value else value
    if isinstance(value, Mapping):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, tuple):
        return tuple(without_nul(item) for item in value)
    return value
