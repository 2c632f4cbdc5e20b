"""A RabbitMQ node of a test's own: its own node name, ports, data folder, cookie and config,
started from this machine's RabbitMQ installation and stopped (and killed, if need be) whatever
happens. The machine's broker is never touched. Several make a cluster (`join`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
COOKIE = "iw-test-nodes-cookie"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and shutil.which("erl") is not None


class RabbitNode:
    def __init__(
        self,
        base: Path,
        name: str,
        *,
        config: str = "",
        plugins: tuple[str, ...] = ("rabbitmq_consistent_hash_exchange",),
        port: int | None = None,
    ) -> None:
        self.base = base / name
        self.name = f"{name}@localhost"
        self.port = port or free_port()
        self.dist_port = free_port()
        self.base.mkdir(parents=True, exist_ok=True)
        home = self.base / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(COOKIE)
        cookie.chmod(0o400)
        (self.base / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
        listeners = f"listeners.tcp.default = {self.port}\n" if "listeners.tcp" not in config else ""
        (self.base / "rabbitmq.conf").write_text(f"{listeners}loopback_users = none\n{config}")
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "none.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def start(self, timeout: float = 90) -> RabbitNode:
        subprocess.run(
            [str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=self.env, check=True, timeout=60, cwd=self.base
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ctl("await_startup", "--timeout", "10", check=False, timeout=30).returncode == 0:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"RabbitMQ node {self.name} did not start: see {self.base / 'log'}")

    def stop(self) -> None:
        """Stop it; kill it when it does not answer."""
        if self.ctl("stop", check=False, timeout=60).returncode != 0:
            self.kill()

    def kill(self) -> None:
        pid_file = self.base / "pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)

    def join(self, other: RabbitNode) -> None:
        """Join `other`'s cluster."""
        self.ctl("stop_app")
        self.ctl("join_cluster", other.name)
        self.ctl("start_app")


@contextlib.contextmanager
def nodes(
    base: Path, *names: str, config: str = "", plugins: tuple[str, ...] | None = None
) -> Iterator[list[RabbitNode]]:
    """Nodes started for the block and stopped at its end, whatever happens."""
    started: list[RabbitNode] = []
    try:
        for name in names:
            node = RabbitNode(base, name, config=config, **({"plugins": plugins} if plugins else {}))
            started.append(node)
            node.start()
        yield started
    finally:
        for node in started:
            node.stop()
