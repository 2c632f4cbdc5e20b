"""Secrets at rest: tokens and passwords stored in PostgreSQL are Fernet-encrypted.

Values look like `enc:v1:<fernet token>`. `IW_SECRET_KEYS` lists keys, the
first encrypts and all decrypt, so a key is rotated by putting a new key
first and running `integration-worker secrets rotate`.

Integration configs mark secret fields with pydantic's `SecretStr`; the
runtime encrypts those fields when it stores a config and decrypts them when
it loads one, so integrations never handle ciphertext.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, SecretStr

PREFIX = "enc:v1:"


class SecretDecryptError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one secret key is needed")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ValueError("a secret key is not a valid Fernet key (32 url-safe base64 bytes)") from exc

    @staticmethod
    def is_encrypted(value: object) -> bool:
        return isinstance(value, str) and value.startswith(PREFIX)

    def encrypt(self, plaintext: str) -> str:
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, value: str) -> str:
        if not self.is_encrypted(value):
            raise SecretDecryptError("value is not an encrypted secret")
        try:
            return self._fernet.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretDecryptError("no configured key decrypts this secret") from None

    def rotate(self, value: str) -> str:
        """Re-encrypt with the primary key."""
        if not self.is_encrypted(value):
            return value
        try:
            return PREFIX + self._fernet.rotate(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretDecryptError("no configured key decrypts this secret") from None

    def encrypt_optional(self, plaintext: str | None) -> str | None:
        return None if plaintext is None else self.encrypt(plaintext)

    def decrypt_optional(self, value: str | None) -> str | None:
        return None if value is None else self.decrypt(value)

    # --- whole configs -------------------------------------------------------------------------------

    def seal(self, model: BaseModel) -> dict[str, Any]:
        """A config model as JSON for the database, its `SecretStr` fields encrypted."""
        sealed: dict[str, Any] = _walk(model.model_dump(mode="python", by_alias=True), self._seal_value)
        return sealed

    def open(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Stored JSON with every encrypted value decrypted, ready for `Model.model_validate`."""
        opened: dict[str, Any] = _walk(stored, self._open_value)
        return opened

    def reseal(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Stored JSON with every encrypted value re-encrypted under the primary key."""
        resealed: dict[str, Any] = _walk(
            stored, lambda value: self.rotate(value) if self.is_encrypted(value) else value
        )
        return resealed

    def _seal_value(self, value: Any) -> Any:
        if isinstance(value, SecretStr):
            return self.encrypt(value.get_secret_value())
        return value

    def _open_value(self, value: Any) -> Any:
        if self.is_encrypted(value):
            return self.decrypt(value)
        return value


def _walk(value: Any, leaf: Any) -> Any:
    if isinstance(value, dict):
        return {key: _walk(item, leaf) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, leaf) for item in value]
    converted = leaf(value)
    if isinstance(converted, BaseModel):  # pragma: no cover - model_dump never yields models
        return converted.model_dump()
    return _jsonable(converted)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
