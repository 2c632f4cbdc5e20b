"""Helpers shared by tests: publishing like another service would, running the CLI like an operator."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import replace
from typing import Any

from schemas.envelope import Envelope, Kind
from worker.runtime.runtime import Runtime


async def publish(
    runtime: Runtime,
    type_: str,
    kind: Kind,
    name: str,
    payload: dict[str, Any],
    *,
    team_id: str | None = None,
    integration_id: str | None = None,
    external_team_id: str | None = None,
    id: str | None = None,
) -> Envelope:
    envelope = Envelope(
        id=id or f"test:{uuid.uuid4()}",
        type=type_,
        kind=kind,
        name=name,
        team_id=team_id,
        integration_id=integration_id,
        external_team_id=external_team_id,
        payload=payload,
    )
    await runtime.publish_envelope(envelope)
    return envelope


def cli(
    env: dict[str, str], *args: str, timeout: float = 60, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `integration-worker ARGS` as a separate process, as an operator would (`unset`: variables
    it must not inherit)."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={k: v for k, v in {**os.environ, **env}.items() if k not in unset},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def publish_with_headers(runtime: Runtime, payload: dict[str, Any], headers: dict[str, str]) -> Envelope:
    """A GitHub pull_request webhook as the ingress publishes it, with extra AMQP headers."""
    installation = str(payload["installation"]["id"])
    envelope = Envelope(
        id=f"github:{uuid.uuid4()}",
        type="github",
        kind="webhook",
        name="pull_request",
        external_team_id=installation,
        payload=payload,
    )
    outgoing = runtime.outgoing(envelope)
    await runtime.broker.publish_message(replace(outgoing, headers={**(outgoing.headers or {}), **headers}))
    return envelope
