"""A private RabbitMQ broker for tests and benchmarks: own temp dir, own free ports, own epmd.

Debian's `rabbitmq-server` (installed by `make system-deps`) is started directly from
/usr/lib/rabbitmq/bin (not the /usr/sbin wrapper, which switches to the `rabbitmq` user), so it works
as root in CI. Nothing system-wide is read or touched: the env file, config, enabled-plugins file,
mnesia and log directories, the Erlang cookie ($HOME) and the epmd port all live in the temp dir, the
node name is unique, and the management plugin is off. `stop()` / `start()` keep the ports and the
mnesia directory, so durable queues and persistent messages survive a restart (the reconnect tests).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

START_TIMEOUT = 90.0
"""Seconds to wait for the AMQP listener; a cold boot takes ~7 s here, CI machines can be slower."""
STOP_TIMEOUT = 30.0
SERVER_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)


class BrokerError(RuntimeError):
    """The private broker could not start; the message ends with the broker's log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _find(name: str, candidates: tuple[str, ...]) -> str | None:
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def amqp_listening(port: int, timeout: float = 1.0) -> bool:
    """True when the port answers an AMQP 0-9-1 protocol header with a Connection.Start frame."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            head = s.recv(7)
            return len(head) == 7 and head[0] == 1  # frame type 1 = method frame (Connection.Start)
    except OSError:
        return False


class PrivateBroker:
    """One RabbitMQ node; `url` is `amqp://guest:guest@127.0.0.1:<port>/`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="yonglink-rabbitmq-"))
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.nodename = f"yonglink-{uuid.uuid4().hex[:10]}@localhost"
        self.log_file = self.root / "log" / "node.log"
        self.out_file = self.root / "server.out"
        self.startup_seconds: list[float] = []
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._prepare()
        atexit.register(self.close)

    def _prepare(self) -> None:
        (self.root / "log").mkdir(parents=True, exist_ok=True)
        (self.root / "mnesia").mkdir(exist_ok=True)
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")  # no plugins: no management listener
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "log.file.level = info\n"
            "log.console = false\n")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        r = self.root
        env.update({
            "HOME": str(r),  # the .erlang.cookie
            "RABBITMQ_CONF_ENV_FILE": str(r / "rabbitmq-env.conf"),  # not /etc/rabbitmq/rabbitmq-env.conf
            "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(r / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"),
            "RABBITMQ_LOG_BASE": str(r / "log"),
            "RABBITMQ_LOGS": str(self.log_file),
            "RABBITMQ_PID_FILE": str(r / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        return env

    def start(self) -> None:
        """Boot the node (epmd first, ours) and return once it accepts AMQP connections."""
        server = _find("rabbitmq-server", SERVER_CANDIDATES)
        epmd = _find("epmd", tuple(sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))))
        if server is None or epmd is None:
            raise BrokerError("rabbitmq-server / epmd not found: run `make system-deps` "
                              "(installs Debian's rabbitmq-server)")
        started = time.monotonic()
        env = self._env()
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = subprocess.Popen([epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)
        with open(self.out_file, "ab") as out:
            self._server = subprocess.Popen([server], env=env, cwd=self.root, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise BrokerError(f"rabbitmq-server exited with {self._server.returncode} during start\n"
                                  + self.log_tail())
            if amqp_listening(self.port):
                self.startup_seconds.append(time.monotonic() - started)
                return
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"rabbitmq-server did not accept AMQP on port {self.port} within "
                          f"{START_TIMEOUT:.0f}s\n" + self.log_tail())

    def stop(self) -> None:
        """Stop the node cleanly (SIGTERM: RabbitMQ's orderly shutdown), SIGKILL if it hangs."""
        proc, self._server = self._server, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # erl_child_setup & co. share the group
            os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop the node and our epmd, and remove the temp dir."""
        self.stop()
        epmd, self._epmd = self._epmd, None
        if epmd is not None and epmd.poll() is None:
            epmd.terminate()
            try:
                epmd.wait(5)
            except subprocess.TimeoutExpired:
                epmd.kill()
                epmd.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the node log and of the server's stdout, for failure messages."""
        out = []
        for path in (self.log_file, self.out_file):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(missing)"]
            out.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(out)
