"""Executing: one message's handler (or action) with its context, under the handler timeout.

A handler that returns has its unit of work (what it staged) committed with the batch. One that
raises fails: its staged work is dropped, and the failure is classified (worker/runtime/failures.py)
for the retry or the parking queue. A bug (an exception nobody raised on purpose) keeps its
traceback, which the worker logs and stores with the parked message's log row.
"""

from __future__ import annotations

import asyncio
import time

from worker.runtime import actions
from worker.runtime.dispatch import Message
from worker.runtime.failures import classify_exception
from worker.sdk.context import Context
from worker.sdk.declare import Handler
from worker.sdk.errors import Failure


async def execute(message: Message, ctx: Context, *, seconds: float) -> None:
    route = message.route
    assert route is not None
    started = time.perf_counter()
    task = asyncio.current_task()
    assert task is not None
    expired: list[bool] = []
    # One timer a message (cheaper than asyncio.timeout's context, which shows at 10,000/s).
    timer = asyncio.get_running_loop().call_later(seconds, _expire, task, expired)
    try:
        if isinstance(route, Handler):
            await route.run(ctx)
        else:
            await actions.run(ctx, route)
    except asyncio.CancelledError:
        if expired:
            task.uncancel()
            message.failure = Failure("transient", f"handler timed out after {seconds:g}s")
        elif task.cancelling():
            raise  # the worker is stopping: the message goes back to its queue
        else:  # raised inside the handler (a task it awaited was cancelled): a failure like any other
            message.failure = Failure("transient", "the handler was cancelled from within (CancelledError)")
        message.staged.clear()
    except Exception as exc:
        classified = classify_exception(exc)
        message.failure, message.bug = classified.failure, classified.bug
        if classified.bug is not None:
            log = ctx.log.bind(name=message.envelope.name if message.envelope else None)
            log.error("handler failed with a bug; message parked", error=classified.failure.reason, exc_info=exc)
        message.staged.clear()  # nothing of a failed run is written
    finally:
        timer.cancel()
    message.handler_seconds = time.perf_counter() - started


def _expire(task: asyncio.Task[object], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()
