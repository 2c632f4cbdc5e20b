"""A small in-process TTL cache, one per integration type, handed to handlers as `ctx.cache`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class TTLCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._max = max_entries

    def get(self, key: str) -> Any | None:
        item = self._values.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._values.pop(key, None)
            return None
        return value

    def set(self, key: str, value: Any, ttl: float) -> None:
        if len(self._values) >= self._max:
            self._evict()
        self._values[key] = (time.monotonic() + ttl, value)

    def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def get_or_set(self, key: str, ttl: float, factory: Callable[[], Awaitable[T]]) -> T:
        """The cached value, or `factory()`'s, computed once even when many ask at the same time."""
        value = self.get(key)
        if value is not None:
            return value  # type: ignore[no-any-return]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            value = self.get(key)
            if value is not None:
                return value  # type: ignore[no-any-return]
            fresh = await factory()
            self.set(key, fresh, ttl)
            return fresh

    async def get_or_compute(self, key: str, factory: Callable[[], Awaitable[tuple[T, float]]]) -> T:
        """Like get_or_set, for values that say how long they live: factory returns (value, ttl)."""
        value = self.get(key)
        if value is not None:
            return value  # type: ignore[no-any-return]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            value = self.get(key)
            if value is not None:
                return value  # type: ignore[no-any-return]
            fresh, ttl = await factory()
            if ttl > 0:
                self.set(key, fresh, ttl)
            return fresh

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._values.items() if expires < now]:
            self._values.pop(key, None)
        while len(self._values) >= self._max:
            self._values.pop(next(iter(self._values)))
