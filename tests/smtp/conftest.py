"""A real SMTP server on loopback (aiosmtpd) with STARTTLS or implicit TLS and AUTH, a
self-signed certificate made for the session, and the worker told to trust it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.google.conftest import replies  # noqa: F401 - the fixture, shared

SMTP_USER = "mailer@acme.example"
SMTP_PASSWORD = "s3cret-smtp-pass"


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_path, key_path)


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, certificate: Certificate) -> dict[str, str]:
    extra = {"IW_SMTP_CA_FILE": str(certificate.cert), "IW_SMTP_TIMEOUT": "5"}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return {**env, **extra}


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: bytes | None


@dataclass
class MailServer:
    """What the server saw, and the replies to give instead of accepting (injected per test)."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[bytes, bool]] = field(default_factory=list)  # (user, accepted)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply
    data_replies: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        login = session.auth_data if session.authenticated else None
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, tls, login))
        return "250 2.0.0 queued"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        accepted = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        self.logins.append((auth_data.login, accepted))
        return AuthResult(success=accepted, handled=False, auth_data=auth_data.login)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(server: MailServer, **kwargs: Any) -> Iterator[MailServer]:
    server.port = free_port()
    controller = Controller(server, hostname="127.0.0.1", port=server.port, **kwargs)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[MailServer]:
    server = MailServer()
    yield from _serve(
        server,
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=server.authenticate,
        auth_required=True,
    )


@pytest.fixture
def implicit_tls_server(certificate: Certificate) -> Iterator[MailServer]:
    server = MailServer()
    yield from _serve(
        server,
        ssl_context=certificate.server_context(),
        authenticator=server.authenticate,
        auth_required=True,
        auth_require_tls=False,  # aiosmtpd only counts STARTTLS as TLS; this socket is TLS from the start
        server_hostname="localhost",
    )


@pytest.fixture
def plain_server() -> Iterator[MailServer]:
    """A local relay: no TLS, no AUTH."""
    yield from _serve(MailServer())


def smtp_config(server: MailServer, **overrides: Any) -> dict[str, Any]:
    config = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": SMTP_USER,
        "password": SMTP_PASSWORD,
        "fromName": "Acme Bot",
        "fromEmail": "bot@acme.example",
    }
    config.update(overrides)
    return config
