"""Settings that cannot work end the process at once, with their reason and a status a supervisor
can tell from a crash: refused credentials and insecure addresses exit 2, a port taken exits 3."""

from __future__ import annotations

import socket

from tests.helpers import cli
from worker.cli.process import EXIT_CANNOT_LISTEN, EXIT_CONFIGURATION


def test_a_wrong_broker_password_is_final(env: dict[str, str]) -> None:
    done = cli({**env, "IW_AMQP_URL": "amqp://guest:not-the-password@127.0.0.1:5672/"}, "worker", timeout=30)
    assert done.returncode == EXIT_CONFIGURATION, done.stderr
    assert "403 ACCESS_REFUSED" in done.stderr and "not-the-password" not in done.stderr + done.stdout
    assert "not reachable" not in done.stdout  # not retried as an outage


def test_a_broker_vhost_that_does_not_exist_is_final(env: dict[str, str]) -> None:
    done = cli({**env, "IW_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/no-such-vhost"}, "worker", timeout=30)
    assert done.returncode == EXIT_CONFIGURATION, done.stderr
    assert "530 NOT_ALLOWED" in done.stderr


def test_a_database_that_does_not_exist_is_final(env: dict[str, str]) -> None:
    done = cli({**env, "IW_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/no_such_db"}, "worker", timeout=30)
    assert done.returncode == EXIT_CONFIGURATION, done.stderr
    assert "PostgreSQL refused IW_DATABASE_URL" in done.stderr and "no_such_db" in done.stderr


def test_development_keys_are_never_served_on_a_public_address(env: dict[str, str]) -> None:
    done = cli({**env, "IW_SECRET_KEYS": "", "IW_SIGNING_KEY": "", "IW_HTTP_HOST": "0.0.0.0"}, "ingress")
    assert done.returncode == EXIT_CONFIGURATION  # blank keys are refused outright
    keys = ("IW_SECRET_KEYS", "IW_SIGNING_KEY")
    unset = cli({**env, "IW_HTTP_HOST": "0.0.0.0"}, "ingress", timeout=30, unset=keys)
    assert unset.returncode == EXIT_CONFIGURATION, unset.stderr
    assert "development IW_SECRET_KEYS and IW_SIGNING_KEY" in unset.stderr


def test_a_port_already_taken_exits_3_without_claiming_to_listen(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli({**env, "IW_HTTP_HOST": "127.0.0.1", "IW_HTTP_PORT": str(port)}, "ingress", timeout=60)
    assert done.returncode == EXIT_CANNOT_LISTEN, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert '"listening"' not in done.stdout
