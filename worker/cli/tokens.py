"""`integration-worker tool-token`: a tool token for one team (and optionally one user), to give
an agent least privilege instead of the all-teams IW_SERVICE_TOKEN (worker/platform/tool_tokens.py)."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from worker.cli.operate import print_json
from worker.core.settings import Settings
from worker.platform.tool_tokens import ToolTokenRequest, issue
from worker.sdk.errors import field_errors
from worker.sdk.registry import Registry


def tool_token(args: argparse.Namespace, settings: Settings, _registry: Registry) -> int:
    try:
        request = ToolTokenRequest(team_id=args.team, user_id=args.user, ttl_seconds=args.ttl)
    except ValidationError as exc:
        print_json({"error": "invalid request", "fields": field_errors(exc)})
        return 2
    print(issue(settings, request).model_dump_json(indent=2))
    return 0
