"""Exclusive leases: one holder per key across every worker process, held until the holder's
outcome commits.

A handler that must not run concurrently with another one for the same thing (two syncs of
one mailbox would both read the same cursor and both publish the same mail) wraps its work in

    async with ctx.exclusive(f"mailbox:{link_id}"):
        ...

Taking the lease is a row in `leases` (an upsert that succeeds only when the key is free or
its lease expired). While the block runs, a heartbeat keeps the lease `ttl` seconds ahead, so
a holder that crashed loses it within `ttl` (`IW_LEASE_TTL`). When the block ends normally the
release is *staged*: it runs in the transaction that commits the handler's writes, so the next
holder reads what this one committed (the lease is renewed once more to cover that commit).
When the block raises, the lease is released at once. A caller that cannot get the lease
within `wait` seconds gets a TransientError: the worker's retry queue brings it back later.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_exponential

from worker.runtime.db import Queryable
from worker.sdk.errors import TransientError
from worker.sdk.unit import Write

ACQUIRE = """
    INSERT INTO leases (key, holder, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
    ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE leases.expires_at < now()
    RETURNING holder"""
RENEW = "UPDATE leases SET expires_at = now() + make_interval(secs => $3) WHERE key = $1 AND holder = $2"
RELEASE = "DELETE FROM leases WHERE key = $1 AND holder = $2"


async def try_acquire(db: Queryable, key: str, holder: str, ttl: float) -> bool:
    got: str | None = await db.fetchval(ACQUIRE, key, holder, ttl)
    return got == holder


async def release(db: Queryable, key: str, holder: str) -> None:
    await db.execute(RELEASE, key, holder)


async def _heartbeat(db: Queryable, key: str, holder: str, ttl: float) -> None:
    while True:
        await asyncio.sleep(ttl / 3)
        with contextlib.suppress(Exception):  # a missed beat is covered by the next one, or the ttl
            await db.execute(RENEW, key, holder, ttl)


@asynccontextmanager
async def exclusive(
    db: Queryable,
    writes: list[Write],
    key: str,
    *,
    ttl: float,
    wait: float,
) -> AsyncIterator[None]:
    """Hold `key` for the block; on success the release is appended to `writes` (the staged writes
    committed with the handler's outcome), on failure it happens at once."""
    holder = uuid.uuid4().hex
    patiently = AsyncRetrying(  # 20 ms doubling to 250 ms, for `wait` seconds
        retry=retry_if_result(lambda got: not got),
        wait=wait_exponential(multiplier=0.02, max=0.25),
        stop=stop_after_delay(wait),
        retry_error_callback=lambda _: False,
    )
    if not await patiently(try_acquire, db, key, holder, ttl):
        raise TransientError(f"busy: another worker holds {key!r}", retry_after=1.0)
    beating = asyncio.create_task(_heartbeat(db, key, holder, ttl))
    try:
        yield
    except BaseException:
        beating.cancel()
        await asyncio.shield(release(db, key, holder))
        raise
    beating.cancel()
    await db.execute(RENEW, key, holder, ttl)
    writes.append((RELEASE, (key, holder)))
