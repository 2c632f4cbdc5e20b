"""Running an action as the handler of its command `<type>.command.<action>`.

One path for every caller (a service on the broker, the HTTP and MCP gateways, the CLI):

    input       validated with the action's model; invalid: refused with per-field errors,
                nothing called
    user link   an action that acts as a user (`needs_user_link`) gets the link of the user in
                the envelope header `x-user-id` as `ctx.user_link`; none: refused
    refused     a caller waiting for the answer (`reply_to`: tool calls) gets the refusal, per-field
                errors included, and nothing is parked; a command nobody waits for is parked
                with the reason (a permanent failure), where an operator sees it
    run         the action; `ActionRefused` is a refusal, other errors fail the message as any
                handler's do (retried when transient, parked when permanent: the caller is then
                answered `failed`)
    answer      the typed output, sent to `reply_to` when the caller waits, stored per call id
                (worker/runtime/results.py) and logged in `integration_logs` with its duration,
                all in the transaction that records the id in the inbox
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from schemas.tools import SOURCE_HEADER, USER_HEADER, ToolReply
from worker.core.redact import redact
from worker.runtime import results
from worker.sdk.context import Context
from worker.sdk.declare import Action
from worker.sdk.errors import ActionRefused, PermanentError, field_errors
from worker.sdk.records import Link


async def acting_link(ctx: Context) -> Link:
    """The active link, to this message's integration, of the user the command acts for."""
    user_id = ctx.envelope.headers.get(USER_HEADER)
    if not user_id:
        raise ActionRefused(f"this action acts as a user: say which one (envelope header {USER_HEADER!r})")
    links = await ctx.links.all(user_ids=[user_id], active_only=False)
    if not links:
        raise ActionRefused(f"user {user_id} has not linked an account to this integration")
    active = [link for link in links if link.active]
    if not active:
        raise ActionRefused(f"user {user_id} must connect their account again (link {links[0].status})")
    return active[0]


async def run(ctx: Context, action: Action[Any, Any]) -> None:
    started = time.perf_counter()
    try:
        request = action.input.model_validate(ctx.envelope.payload)
    except ValidationError as exc:
        reply = ToolReply(ok=False, status="refused", error="invalid input", fields=field_errors(exc))
        _refuse(ctx, action, reply, started)
        return
    try:
        if action.needs_user_link:
            ctx.user_link = await acting_link(ctx)
        output = await action.run(ctx, request)
    except ActionRefused as exc:
        _refuse(ctx, action, ToolReply(ok=False, status="refused", error=exc.message, fields=exc.fields), started)
        return
    result = action.output.model_validate(output).model_dump(mode="json", by_alias=True)
    _answer(ctx, action, ToolReply(ok=True, status="succeeded", output=result), started)


def _refuse(ctx: Context, action: Action[Any, Any], reply: ToolReply, started: float) -> None:
    if ctx.reply_to:
        _answer(ctx, action, reply, started)
        return
    fields = "; ".join(f"{name}: {', '.join(errors)}" for name, errors in (reply.fields or {}).items())
    raise PermanentError(f"{reply.error}: {fields}" if fields else str(reply.error))


def _answer(ctx: Context, action: Action[Any, Any], reply: ToolReply, started: float) -> None:
    assert ctx.staged is not None
    ctx.reply(results.reply_body(reply))
    ctx.staged.writes.append(results.upsert(ctx.envelope, ctx.team_id, ctx.integration_id, reply))
    duration_ms = round((time.perf_counter() - started) * 1000)
    details: dict[str, Any] = {"action": action.name, "status": reply.status}
    if source := ctx.envelope.headers.get(SOURCE_HEADER):
        details["source"] = source
    if user_id := ctx.envelope.headers.get(USER_HEADER):
        details["user_id"] = user_id
    if reply.fields:
        details["fields"] = reply.fields
    message = f"{ctx.envelope.type}.{action.name} {reply.status}"
    if reply.error:
        message += f": {redact(reply.error)}"
    ctx.record(
        "info" if reply.ok else "warning",
        "action_call",
        message,
        details=details,
        user_link_id=ctx.user_link.id if ctx.user_link is not None else None,
        duration_ms=duration_ms,
    )
