"""An AMQP URL as the hot-path client connects with it: the same query options aio-pika reads, so
one IW_AMQP_URL serves both clients.

    amqp[s]://user:password@host:port/vhost?heartbeat=30&cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem
        &no_verify_ssl=1&auth=external&connection_timeout=10

`auth=external` logs in with the TLS client certificate (RabbitMQ's rabbitmq_auth_mechanism_ssl);
the default is PLAIN with the URL's user and password (guest/guest when absent).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


class InvalidUrl(ValueError):
    """Says what is wrong, never the password."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    vhost: str
    user: str
    password: str
    mechanism: str  # PLAIN or EXTERNAL
    tls: ssl.SSLContext | None
    heartbeat: int
    connect_timeout: float

    def describe(self) -> str:
        """For logs and errors: no credentials."""
        scheme = "amqps" if self.tls is not None else "amqp"
        return f"{scheme}://{self.host}:{self.port}/{self.vhost if self.vhost != '/' else ''}"

    def sasl_response(self) -> bytes:
        if self.mechanism == "EXTERNAL":
            return b""
        return f"\0{self.user}\0{self.password}".encode()


def parse(url: str) -> Endpoint:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("amqp", "amqps"):
        raise InvalidUrl(f"an AMQP URL starts with amqp:// or amqps://, not {parts.scheme or '(nothing)'}://")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    tls = _tls(query) if parts.scheme == "amqps" else None
    mechanism = query.get("auth", "plain").upper()
    if mechanism not in ("PLAIN", "EXTERNAL"):
        raise InvalidUrl(f"auth={mechanism.lower()}: only plain and external are supported")
    try:
        port = parts.port or (5671 if tls is not None else 5672)
        heartbeat = int(query.get("heartbeat", "30"))
        timeout = float(query.get("connection_timeout", "10"))
    except ValueError as exc:
        raise InvalidUrl(f"a number in the AMQP URL is not one: {exc}") from None
    return Endpoint(
        host=parts.hostname or "127.0.0.1",
        port=port,
        vhost=unquote(parts.path[1:]) if parts.path not in ("", "/") else "/",
        user=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        mechanism=mechanism,
        tls=tls,
        heartbeat=heartbeat,
        connect_timeout=timeout,
    )


def _tls(query: dict[str, str]) -> ssl.SSLContext:
    """The context of an amqps URL: the system's CAs, or `cafile`/`capath`; a client certificate
    with `certfile` (and `keyfile`); `no_verify_ssl=1` for a test broker only."""
    try:
        context = ssl.create_default_context(cafile=query.get("cafile"), capath=query.get("capath"))
        if query.get("certfile"):
            context.load_cert_chain(query["certfile"], query.get("keyfile"))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidUrl(f"the AMQP URL's TLS files cannot be read: {exc}") from None
    if query.get("no_verify_ssl", "0") not in ("0", ""):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
