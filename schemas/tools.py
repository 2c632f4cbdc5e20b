"""Agent tools: what a call answers, and how to ask for one over HTTP.

Every action an integration declares is a tool named `<type>_<action>` (`github_comment`,
`google-calendar_create_event`), a broker command `<type>.command.<action>`, a CLI entry
(`integration-worker call <type> <action>`) and, through the MCP server, an MCP tool. A call
always ends in a `ToolReply`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Envelope header naming the platform user a command acts for (actions that need a user's link).
USER_HEADER = "x-user-id"
# Envelope header saying where a call came from (`http`, `mcp`, `cli`; absent: the broker).
SOURCE_HEADER = "x-call-source"

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:@-]{1,200}$"

ReplyStatus = Literal["succeeded", "refused", "failed"]


class ToolReply(BaseModel):
    """The answer to an action call: the body sent to `reply_to`, stored per call id, and what the
    HTTP and MCP answers carry.

    succeeded: the action ran; `output` is its typed output.
    refused:   the request itself is wrong (invalid input: `fields` per field; the user has no
               link; the integration is not active; the action refused it). Nothing was done.
    failed:    the action could not be done (the provider refused it, or retries ran out); the
               message is parked and may be replayed.
    """

    model_config = ConfigDict(extra="forbid")

    ok: bool
    status: ReplyStatus
    output: dict[str, Any] | None = None
    error: str | None = None
    fields: dict[str, list[str]] | None = Field(default=None, description="Per-field errors (dotted paths).")


class ToolCallRequest(BaseModel):
    """`POST /tools/{name}/call`, with `Authorization: Bearer <IW_SERVICE_TOKEN or a tool token>`."""

    model_config = ConfigDict(extra="forbid")

    team_id: str | None = Field(
        default=None,
        min_length=1,
        description="The team whose integration runs the call: required with the service token; "
        "a tool token supplies it (and refuses another).",
    )
    user_id: str | None = Field(
        default=None, description="The platform user the call acts for (a user's tool token supplies it)."
    )
    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's input.")
    idempotency_key: str | None = Field(
        default=None,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="The same key again (same team and tool) runs nothing and answers the first result. "
        "Also accepted as the Idempotency-Key header.",
    )
    timeout: float | None = Field(
        default=None, gt=0, le=300, description="Seconds to wait for the answer (default IW_TOOL_TIMEOUT)."
    )


class ToolCallAnswer(BaseModel):
    """The HTTP answer to a call: 200 succeeded, 202 pending (ask `GET /tools/calls/{call_id}`
    later), 422 refused, 502 failed."""

    call_id: str
    status: Literal["succeeded", "refused", "failed", "pending"]
    ok: bool
    output: dict[str, Any] | None = None
    error: str | None = None
    fields: dict[str, list[str]] | None = None
