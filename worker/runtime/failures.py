"""Whether trying again can help: every exception a handler (or the runtime's own database work)
raises becomes a `Failure`, transient (retried later) or permanent (parked).

Integration errors say which they are; HTTP answers follow the SDK's rule; network errors,
timeouts and an unavailable database are transient; validation errors and a write the database
refuses are permanent; anything else is a bug in the handler: permanent, and `bug` is set so
the traceback is logged and kept with the parked message.
"""

from __future__ import annotations

import asyncio
import traceback
from dataclasses import dataclass

import asyncpg
import httpx
from pydantic import ValidationError

from worker.core.redact import redact
from worker.sdk.errors import (
    Failure,
    PermanentError,
    TransientError,
    classify_response,
    http_reason,
    validation_summary,
)

# The database is unreachable, restarting, or dropped our session: worth a retry.
DB_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # a pooled connection the server killed mid-protocol
    asyncpg.exceptions.ClientCannotConnectError,
)

# Anything the database layer raises: unavailable, or refused.
DB_ERRORS: tuple[type[Exception], ...] = (*DB_UNAVAILABLE, asyncpg.PostgresError)

# PostgreSQL not reachable yet, or up but still starting, or full: what start-up waits out.
DB_NOT_READY: tuple[type[Exception], ...] = (
    *DB_UNAVAILABLE,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)

# PostgreSQL refused who we are or what we asked for: the settings must change.
DB_REFUSED: tuple[type[Exception], ...] = (
    asyncpg.InvalidAuthorizationSpecificationError,  # no such role, wrong password, pg_hba refusal
    asyncpg.InvalidCatalogNameError,  # no such database
)

_DB_TRANSIENT: tuple[type[Exception], ...] = (
    *DB_UNAVAILABLE,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.AdminShutdownError,
)

_TRACEBACK_MAX = 8000


@dataclass(frozen=True, slots=True)
class Classified:
    failure: Failure
    bug: str | None = None  # the traceback, redacted, when the exception is a bug


def classify(exc: BaseException) -> Failure:
    return classify_exception(exc).failure


def classify_exception(exc: BaseException) -> Classified:
    """Decide whether `exc` is worth a retry. The reason is redacted and safe to log."""
    if isinstance(exc, TransientError):
        return Classified(Failure("transient", redact(str(exc)) or type(exc).__name__, exc.retry_after))
    if isinstance(exc, PermanentError):
        return Classified(Failure("permanent", redact(str(exc)) or type(exc).__name__))
    if isinstance(exc, httpx.HTTPStatusError):
        return Classified(classify_response(exc.response) or Failure("permanent", http_reason(exc.response)))
    if isinstance(exc, httpx.TransportError):
        return Classified(Failure("transient", f"network error: {type(exc).__name__}: {redact(str(exc))}"))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Classified(Failure("transient", "timed out"))
    if isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        return Classified(Failure("transient", f"database contention: {type(exc).__name__}: {redact(str(exc))}"))
    if isinstance(exc, _DB_TRANSIENT):  # OSError (ConnectionError too) is in DB_UNAVAILABLE
        return Classified(
            Failure("transient", f"database or network unavailable: {type(exc).__name__}: {redact(str(exc))}")
        )
    if isinstance(exc, ValidationError):
        return Classified(Failure("permanent", f"invalid input: {validation_summary(exc)}"))
    if isinstance(exc, asyncpg.PostgresError):
        return Classified(
            Failure("permanent", f"database rejected the write: {type(exc).__name__}: {redact(str(exc))}")
        )
    trace = redact("".join(traceback.format_exception(exc)))[-_TRACEBACK_MAX:]
    return Classified(Failure("permanent", f"unexpected error: {type(exc).__name__}: {redact(str(exc))}"), trace)
