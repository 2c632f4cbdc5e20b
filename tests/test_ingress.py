"""The ingress as a provider sees it: clear answers for every kind of bad request."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from integrations.github.verify import signature
from tests.conftest import GITHUB_WEBHOOK_SECRET, eventually, pull_request_payload, queue_depth, signed_github
from worker.cli.serve import create_app
from worker.platform import attach
from worker.runtime.broker import BrokerUnavailable
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


async def test_unknown_type_is_404(ingress: httpx.AsyncClient) -> None:
    response = await ingress.post("/webhooks/jira", content=b"{}")
    assert response.status_code == 404
    assert "unknown integration type" in response.json()["error"]


async def test_body_over_the_types_limit_is_413_before_anything_else(runtime: Runtime) -> None:
    runtime.settings.body_limits["github"] = 1000
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        body, headers = signed_github("pull_request", {**pull_request_payload(), "padding": "x" * 2000})
        response = await client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]
    assert await queue_depth(runtime, runtime.topology.queues("github")) == 0


async def test_github_accepts_large_payloads_by_default(ingress: httpx.AsyncClient, runtime: Runtime) -> None:
    body, headers = signed_github("push", {"installation": {"id": 4242}, "commits": ["x" * 1000] * 3000})  # ~3 MB
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda h: h.pop("X-Hub-Signature-256"), 401, "X-Hub-Signature-256"),
        (lambda h: h.update({"X-Hub-Signature-256": "sha256=abc"}), 401, "X-Hub-Signature-256"),  # wrong length
        (lambda h: h.update({"X-Hub-Signature-256": "sha256=\xe9".encode("latin-1")}), 401, "X-Hub-Signature-256"),
        (lambda h: h.pop("X-GitHub-Delivery"), 400, "X-GitHub-Delivery"),
        (lambda h: h.pop("X-GitHub-Event"), 400, "X-GitHub-Event"),
        (lambda h: h.update({"X-GitHub-Event": "pull request; drop"}), 400, "malformed webhook: name"),
        (lambda h: h.update({"X-GitHub-Delivery": "x" * 600}), 400, "malformed webhook: id"),
    ],
)
async def test_bad_github_requests_get_clear_errors(
    ingress: httpx.AsyncClient, runtime: Runtime, mutate: object, status: int, message: str
) -> None:
    body, headers = signed_github("pull_request", pull_request_payload())
    mutate(headers)  # type: ignore[operator]
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert await queue_depth(runtime, runtime.topology.queues("github")) == 0


async def test_signed_but_not_json_is_400(ingress: httpx.AsyncClient) -> None:
    body = b"not json {"
    _, headers = signed_github("issues", {})
    headers["X-Hub-Signature-256"] = signature(GITHUB_WEBHOOK_SECRET.encode(), body)
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "body is not JSON"}


async def test_ping_is_answered_without_publishing(ingress: httpx.AsyncClient, runtime: Runtime) -> None:
    body, headers = signed_github("ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    response = await ingress.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "pong"
    assert await queue_depth(runtime, runtime.topology.queues("github")) == 0


async def test_without_a_webhook_secret_every_github_webhook_is_refused(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IW_GITHUB_WEBHOOK_SECRET")
    closed = attach(Runtime(runtime.settings, runtime.registry))
    app = create_app(closed)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        body, headers = signed_github("pull_request", pull_request_payload())
        response = await client.post("/webhooks/github", content=body, headers=headers)
    await closed.http.aclose()
    assert response.status_code == 401
    assert "IW_GITHUB_WEBHOOK_SECRET" in response.json()["error"]


async def test_broker_down_is_503_and_readyz_says_so(runtime: Runtime, ingress: httpx.AsyncClient) -> None:
    assert (await ingress.get("/readyz")).json() == {"status": "ready", "broker": True, "database": True}
    await runtime.broker.close()

    body, headers = signed_github("pull_request", pull_request_payload())
    response = await ingress.post("/webhooks/github", content=body, headers=headers)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "broker unavailable" in response.json()["error"]
    ready = await ingress.get("/readyz")
    assert ready.status_code == 503 and ready.json()["broker"] is False
    assert (await ingress.get("/healthz")).status_code == 200
    await runtime.broker.connect()  # for the teardown


async def test_metrics_count_webhooks_by_type_and_status(ingress: httpx.AsyncClient) -> None:
    body, headers = signed_github("pull_request", pull_request_payload(), secret="wrong")
    await ingress.post("/webhooks/github", content=body, headers=headers)

    metrics = (await ingress.get("/metrics")).text

    assert 'iw_webhooks_received_total{status="401",type="github"}' in metrics


async def test_accepted_webhook_waits_on_the_queue_until_a_worker_takes_it(
    ingress: httpx.AsyncClient, runtime: Runtime
) -> None:
    body, headers = signed_github("pull_request", pull_request_payload())
    assert (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 202

    async def depth_is_one() -> bool:
        return await queue_depth(runtime, runtime.topology.queues("github")) == 1

    assert await eventually(depth_is_one)


@pytest.mark.parametrize("delivery", ["d" * 300, "é" * 130, "-".join(["delivery"] * 50)])
async def test_a_delivery_id_longer_than_an_amqp_short_string_is_accepted_and_handled(
    live_ingress: str, runtime: Runtime, worker: Worker, github: Any, github_integration: Any, delivery: str
) -> None:
    """The AMQP message-id property holds 255 bytes; a longer envelope id travels whole in the
    body and as a digest in the property (it answered 500 before)."""
    body, headers = signed_github("pull_request", pull_request_payload())
    sent: dict[str, Any] = {**headers, "X-GitHub-Delivery": delivery.encode()}  # raw bytes, as a provider may
    async with httpx.AsyncClient(base_url=live_ingress) as client:
        response = await client.post("/webhooks/github", content=body, headers=sent)
    assert response.status_code == 202, response.text
    envelope_id = response.json()["id"]
    assert len(envelope_id.encode()) > 255
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope_id))


async def test_a_malformed_chunked_body_gets_400_and_a_quiet_log_line(
    live_ingress: str, capfd: pytest.CaptureFixture[str]
) -> None:
    host, port = live_ingress.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"X-GitHub-Event: ping\r\nContent-Type: application/json\r\n\r\n"
        b'4\r\n{"a"\r\nnot-a-chunk-size\r\n0\r\n\r\n'
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 400")
    output = capfd.readouterr()
    logged = output.out + output.err
    assert "Traceback" not in logged and "ClientDisconnect" not in logged
    assert "[error" not in logged and '"level":"error"' not in logged


async def test_webhooks_are_accepted_again_after_the_broker_closed_the_publishers_channel(
    ingress: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A publish the broker refuses at the channel level (here: an exchange that does not exist;
    # in production, say, a message over the broker's size limit) closes the publisher's channel
    # while its connection stays open.
    with pytest.raises(BrokerUnavailable):
        await runtime.broker.publish(f"{runtime.topology.prefix}.no-such-exchange", "x", b"{}")

    async def accepted() -> bool:
        body, headers = signed_github("pull_request", pull_request_payload())
        return (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 202

    assert await eventually(accepted)
