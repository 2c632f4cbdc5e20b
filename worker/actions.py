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
                handler's do (retried when transient, parked when permanent: the consumer then
                answers `failed`)
    answer      the typed output, sent to `reply_to` when the caller waits, stored per call id
                (worker/action_results.py) and logged in `integration_logs` with its duration,
                all in the transaction that records the id in the inbox
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from schemas.rows import UserLinkRow
from schemas.tools import SOURCE_HEADER, USER_HEADER, ToolReply
from worker import action_results
from worker.errors import ActionRefused, PermanentError, field_errors
from worker.redact import redact

if TYPE_CHECKING:
    from worker.context import Context
    from worker.integration import Action

_LINK = """
    SELECT id, team_id, user_id, external_user_id, external_user_name, integration_id, integration_type,
           config, status, token_expires_at, created_at, updated_at
    FROM integration_user_link
    WHERE (team_id = $1 OR team_id IS NULL) AND integration_id = $2 AND user_id = $3
    ORDER BY status = 'active' DESC, updated_at DESC LIMIT 1"""


async def acting_link(ctx: Context) -> UserLinkRow:
    """The active link, to this message's integration, of the user the command acts for."""
    user_id = ctx.envelope.headers.get(USER_HEADER)
    if not user_id:
        raise ActionRefused(f"this action acts as a user: say which one (envelope header {USER_HEADER!r})")
    record = await ctx.db.fetchrow(_LINK, ctx.integration_id, user_id)
    if record is None:
        raise ActionRefused(f"user {user_id} has not linked an account to this integration")
    link = UserLinkRow.model_validate(dict(record))
    if link.status != "active":
        raise ActionRefused(f"user {user_id} must connect their account again (link {link.status})")
    return link


async def run(ctx: Context, action: Action[Any, Any]) -> None:
    started = time.perf_counter()
    try:
        request = action.input.model_validate(ctx.envelope.payload)
    except ValidationError as exc:
        _refuse(
            ctx, action, ToolReply(ok=False, status="refused", error="invalid input", fields=field_errors(exc)), started
        )
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
    body = action_results.reply_body(reply)
    ctx.reply(body)
    action_results.stage(ctx.staged, ctx.envelope, ctx.team_id, ctx.integration_id, reply)
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
