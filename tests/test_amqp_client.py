"""The hot-path AMQP client (worker/runtime/amqp/) against real brokers: what the broker does to
it, and what it must not drop. Nodes of the tests' own (tests/support/rabbit_node.py) for an
alarm and for TLS; the machine's broker for the rest, on queues of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY

from tests.conftest import AMQP_URL, eventually, pull_request_payload, signed_github
from tests.helpers import publish
from tests.support import rabbit_node
from tests.support.probe import PROBE_REGISTRY
from worker.cli.serve import create_app
from worker.core.settings import Settings
from worker.platform import attach
from worker.platform.install import InstallRequest, install
from worker.runtime import amqp
from worker.runtime.broker import Broker, Outgoing
from worker.runtime.runtime import Runtime
from worker.runtime.topology import Topology
from worker.runtime.worker import Worker

needs_nodes = pytest.mark.skipif(not rabbit_node.available(), reason="RabbitMQ is not installed on this machine")


@contextlib.asynccontextmanager
async def scratch_queue() -> AsyncIterator[str]:
    """A quorum queue of the test's own on the machine's broker, deleted afterwards."""
    name = f"t-amqp-{uuid.uuid4().hex[:10]}"
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        try:
            yield name
        finally:
            await channel.queue_delete(name)


async def test_a_consumer_that_raises_keeps_the_connection_and_gets_the_delivery_back(
    rabbitmq_and_postgresql: None,
) -> None:
    async with scratch_queue() as queue:
        connection = await amqp.Connection.open(AMQP_URL, name="t-amqp-consumer")
        try:
            publisher = await connection.channel(confirms=True)
            await publisher.publish(
                "",
                queue,
                b"{}",
                amqp.Properties(message_id="m-1", headers={"iw-key": "t:x|1"}, timestamp=1_700_000_000),
            )
            seen: list[amqp.Delivery] = []
            errors: list[Exception] = []

            def on_delivery(delivery: amqp.Delivery) -> None:
                seen.append(delivery)
                if len(seen) == 1:
                    raise RuntimeError("a bug in the consumer")
                delivery.channel.ack(delivery.tag)

            consumer = await connection.channel()
            consumer.on_consumer_error = lambda _delivery, exc: errors.append(exc)
            await consumer.consume(queue, on_delivery)
            await eventually(lambda: len(seen) == 2)
        finally:
            still_open = not connection.is_closed
            await connection.close()
    assert still_open  # the bug cost one delivery, not the connection
    assert [str(e) for e in errors] == ["a bug in the consumer"]
    first, again = seen
    assert again.message_id == "m-1" and again.redelivered
    assert first.headers is not None and first.headers["iw-key"] == "t:x|1"  # headers reach the consumer
    assert again.headers is not None and again.headers.get("x-delivery-count") == 1  # the broker's count
    assert first.timestamp == 1_700_000_000


async def test_a_publisher_waits_for_the_socket_to_drain(rabbitmq_and_postgresql: None) -> None:
    async with scratch_queue() as queue:
        topology = Topology("t-drain", (), (), 2)
        broker = Broker(AMQP_URL, topology, publish_timeout=5)
        await broker._connect_publisher()
        try:
            connection = broker._connection
            assert connection is not None
            connection.pause_writing()  # what the transport does when the broker stops reading
            publishing = asyncio.create_task(broker.publish_message(Outgoing("", queue, b"{}")))
            await asyncio.sleep(0.3)
            assert not publishing.done()  # nothing more is written while the socket is full
            connection.resume_writing()
            await asyncio.wait_for(publishing, 5)
        finally:
            await broker.close()


# --- a node of the test's own -------------------------------------------------------------------------


@pytest.fixture
def node_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("rabbit")
    base.chmod(0o755)
    yield base


async def started(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, url: str) -> Runtime:
    monkeypatch.setenv("IW_AMQP_URL", url)
    runtime = attach(Runtime(Settings(), PROBE_REGISTRY))
    await runtime.start()
    return runtime


@needs_nodes
async def test_under_a_memory_alarm_webhooks_get_503_at_once_and_the_broker_shows_blocked(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, node_base: Path, github: object
) -> None:
    with rabbit_node.nodes(node_base, "iwalarm") as (node,):
        runtime = await started(env, monkeypatch, node.url)
        try:
            app = create_app(runtime)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
                body, headers = signed_github("pull_request", pull_request_payload())
                assert (await client.post("/webhooks/github", content=body, headers=headers)).status_code == 202
                node.ctl("set_vm_memory_high_watermark", "0.000001")  # an alarm: publishers are blocked
                took = []
                for _ in range(3):  # the first publish makes the broker say so; none waits for the timeout
                    body, headers = signed_github("pull_request", pull_request_payload())
                    began = time.monotonic()
                    refused = await client.post("/webhooks/github", content=body, headers=headers)
                    took.append(time.monotonic() - began)
                    assert refused.status_code == 503, refused.text
                ready = await client.get("/readyz")
                blocked = REGISTRY.get_sample_value("iw_broker_blocked")
                node.ctl("set_vm_memory_high_watermark", "0.4")
                await eventually(lambda: not runtime.broker.blocked, timeout=30)
                body, headers = signed_github("pull_request", pull_request_payload())
                again = await client.post("/webhooks/github", content=body, headers=headers)
        finally:
            await teardown_local(runtime)
    assert max(took) < 1.0  # at once, not after the publish timeout (10 s)
    assert ready.status_code == 503 and ready.json()["broker"] is False
    assert blocked == 1
    assert again.status_code == 202


def _certificates(folder: Path) -> dict[str, Path]:
    """A test CA, the node's certificate (localhost) and a client's (CN iw-client)."""
    now = datetime.datetime.now(datetime.UTC)

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("iw test CA"))
        .issuer_name(name("iw test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files: dict[str, Path] = {}

    def write(label: str, certificate: x509.Certificate, private: rsa.RSAPrivateKey | None) -> None:
        files[f"{label}_cert"] = folder / f"{label}.pem"
        files[f"{label}_cert"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        if private is not None:
            files[f"{label}_key"] = folder / f"{label}.key"
            files[f"{label}_key"].write_bytes(
                private.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            files[f"{label}_key"].chmod(0o644)

    write("ca", ca, None)
    for label, common in (("server", "localhost"), ("client", "iw-client")):
        private = key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if label == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        write(label, builder.sign(ca_key, hashes.SHA256()), private)
    return files


@needs_nodes
async def test_both_clients_log_in_over_tls_with_a_private_ca_and_a_client_certificate(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, node_base: Path
) -> None:
    certs = _certificates(node_base)
    port = rabbit_node.free_port()
    config = (
        "listeners.tcp = none\n"
        f"listeners.ssl.default = {port}\n"
        f"ssl_options.cacertfile = {certs['ca_cert']}\n"
        f"ssl_options.certfile = {certs['server_cert']}\n"
        f"ssl_options.keyfile = {certs['server_key']}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
        "auth_mechanisms.1 = EXTERNAL\n"
        "auth_mechanisms.2 = PLAIN\n"
        "ssl_cert_login_from = common_name\n"
    )
    plugins = ("rabbitmq_consistent_hash_exchange", "rabbitmq_auth_mechanism_ssl")
    with rabbit_node.nodes(node_base, "iwtls", config=config, plugins=plugins) as (node,):
        node.ctl("add_user", "iw-client", uuid.uuid4().hex)
        node.ctl("set_permissions", "-p", "/", "iw-client", ".*", ".*", ".*")
        tls = f"cafile={certs['ca_cert']}&certfile={certs['client_cert']}&keyfile={certs['client_key']}"
        url = f"amqps://localhost:{port}/?{tls}&auth=external"
        runtime = await started(env, monkeypatch, url)  # aio-pika's side: the topology
        try:
            await install(runtime, InstallRequest("probe", "team-tls", {}))
            worker = Worker(runtime, types=["probe"])  # the hot path: publish and consume
            await worker.start()
            try:
                envelope = await publish(
                    runtime, "probe", "command", "write", {"key": "tls", "value": 1}, team_id="team-tls"
                )
                await eventually(
                    lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", envelope.id)
                )
            finally:
                await worker.stop()
            untrusted = f"amqps://localhost:{port}/?certfile={certs['client_cert']}&keyfile={certs['client_key']}"
            with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):  # the system CAs do not know it
                await amqp.Connection.open(untrusted, name="t-untrusted")
        finally:
            await teardown_local(runtime)


async def teardown_local(runtime: Runtime) -> None:
    """The test's schema; its node goes with everything on it."""
    await runtime.stop()
    conn = await asyncpg.connect(runtime.settings.database_url.get_secret_value())
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{runtime.settings.database_schema}" CASCADE')
    finally:
        await conn.close()
