"""Integration rows as records: the config decrypted and validated by the integration's model,
once per row version (decrypting is the costly part, and a batch names the same row many times)."""

from __future__ import annotations

from collections import OrderedDict

from pydantic import ValidationError

from schemas.rows import IntegrationRow
from worker.core.secrets import SecretBox, SecretDecryptError
from worker.sdk.errors import PermanentError, validation_summary
from worker.sdk.records import IntegrationRecord
from worker.sdk.registry import Registry

_CACHE_SIZE = 4096


class UnreadableConfig(PermanentError):
    """The stored config cannot be read any more (its key left IW_SECRET_KEYS, its model changed)."""


class Records:
    def __init__(self, registry: Registry, secrets: SecretBox) -> None:
        self.registry = registry
        self.secrets = secrets
        self._cache: OrderedDict[tuple[str, str], IntegrationRecord] = OrderedDict()

    def of(self, row: IntegrationRow, *, cached: bool = True) -> IntegrationRecord:
        """The row with its config; UnreadableConfig (permanent) if that is impossible. `cached`:
        reuse the config read for the same row version (`updated_at`)."""
        key = (row.id, row.updated_at.isoformat())
        found = self._cache.get(key) if cached else None
        if found is not None:
            self._cache.move_to_end(key)
            return found
        integration = self.registry.get(row.type)
        if integration is None:
            raise UnreadableConfig(f"integration {row.id} has type {row.type!r}, which this worker does not know")
        try:
            config = integration.config.model_validate(self.secrets.open(row.config))
        except ValidationError as exc:
            raise UnreadableConfig(f"integration {row.id} has an invalid config: {validation_summary(exc)}") from None
        except SecretDecryptError as exc:
            raise UnreadableConfig(f"integration {row.id}: {exc}") from None
        record = IntegrationRecord(row, config)
        self._cache[key] = record
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return record
