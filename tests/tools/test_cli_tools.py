"""The CLI entries derived from the actions: `integration-worker tools` and `integration-worker call`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import TEAM
from tests.fakes.github import FakeGitHubState
from tests.tools.conftest import GITHUB_TOOLS
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def cli_async(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess while this event loop keeps running (the worker under test is in it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, stdout.decode(), stderr.decode())


async def test_call_runs_an_action_through_a_worker_and_prints_its_answer(
    runtime: Runtime, worker: Worker, env: dict[str, str], github: FakeGitHubState, github_integration: Any
) -> None:
    comment = {"repository": "acme/app", "issue_number": 9, "body": "From the terminal."}

    listed = await cli_async(env, "tools", "--team", TEAM)
    called = await cli_async(
        env, "call", "github", "comment", "--team", TEAM, "--input", json.dumps(comment), "--key", "ops-1"
    )
    invalid = await cli_async(env, "call", "github", "comment", "--team", TEAM, "--input", '{"repository": "acme/app"}')

    assert listed.returncode == 0, listed.stderr
    assert [t["function"]["name"] for t in json.loads(listed.stdout)] == GITHUB_TOOLS
    assert called.returncode == 0, called.stderr
    answer = json.loads(called.stdout)
    assert answer["status"] == "succeeded" and answer["output"]["id"] == github.comments[0]["id"]
    assert invalid.returncode == 1
    assert set(json.loads(invalid.stdout)["fields"]) == {"issue_number", "body"}
    assert github.comment_attempts == 1


def test_call_shows_an_actions_schema_and_names_the_actions_there_are(env: dict[str, str]) -> None:
    schema = cli(env, "call", "github", "comment", "--schema")
    unknown = cli(env, "call", "github", "close_issue", "--team", TEAM)

    assert schema.returncode == 0, schema.stderr
    described = json.loads(schema.stdout)
    assert described["command"] == "github.command.comment" and described["tool"] == "github_comment"
    assert set(described["input_schema"]["properties"]) == {"repository", "issue_number", "body"}
    assert unknown.returncode == 2
    assert "github comment" in unknown.stderr and "telegram send_message" in unknown.stderr
