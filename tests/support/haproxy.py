"""A private HAProxy (Debian `haproxy`, installed by `make system-deps`) in front of engine nodes.

The configuration is the one docs/cluster.md recommends, written into a temp dir with free ports:

- MLLP: a TCP frontend (`mode tcp`) and `balance leastconn` (MLLP connections are long-lived: spread
  them by how many each node holds, not by turns).
- HTTP: an HTTP frontend, `balance roundrobin`.
- Both backends check each node with `option httpchk GET /readyz` on the node's admin port, so a node
  whose channel is stopped, whose store does not commit or that is gone is taken out; `on-marked-down
  shutdown-sessions` closes the MLLP connections it still held so senders reconnect to a live node.

HAProxy runs in the foreground (`-db`) as our child; `stop()` kills it. Server states are read from the
runtime API on a unix socket in the temp dir (`show stat`), so tests wait for "node DOWN", never sleep.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 15.0
CHECK_INTERVAL_MS = 300
"""Health-check period in the tests; with `fall 2` / `rise 2` a node is out within ~0.6 s of failing."""


class HaproxyError(RuntimeError):
    """HAProxy could not start; the message carries its output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Backend:
    """One engine node as HAProxy sees it: where its MLLP and HTTP channels and its admin API listen."""

    name: str
    mllp_port: int
    admin_port: int
    http_port: int = 0


def render_config(backends: list[Backend], *, mllp_port: int, http_port: int, socket_path: Path,
                  check_ms: int = CHECK_INTERVAL_MS) -> str:
    """The haproxy.cfg text (docs/cluster.md shows the same shape with production timeouts)."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        "    maxconn 4096",
        "defaults",
        "    timeout connect 2s",
        "    timeout client 10m",  # MLLP senders keep connections open between messages
        "    timeout server 10m",
        "    timeout check 2s",
        f"    default-server inter {check_ms}ms fall 2 rise 2 on-marked-down shutdown-sessions",
        "frontend mllp_in",
        "    mode tcp",
        f"    bind 127.0.0.1:{mllp_port}",
        "    default_backend mllp_nodes",
        "backend mllp_nodes",
        "    mode tcp",
        "    balance leastconn",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
    ]
    lines += [f"    server {b.name} 127.0.0.1:{b.mllp_port} check port {b.admin_port}" for b in backends]
    http = [b for b in backends if b.http_port]
    if http:
        lines += [
            "frontend http_in",
            "    mode http",
            f"    bind 127.0.0.1:{http_port}",
            "    default_backend http_nodes",
            "backend http_nodes",
            "    mode http",
            "    balance roundrobin",
            "    option httpchk GET /readyz",
            "    http-check expect status 200",
        ]
        lines += [f"    server {b.name} 127.0.0.1:{b.http_port} check port {b.admin_port}" for b in http]
    return "\n".join(lines) + "\n"


class PrivateHaproxy:
    """One HAProxy process: `.mllp_port` and `.http_port` are its frontends on 127.0.0.1."""

    def __init__(self, backends: list[Backend], root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="yonglink-haproxy-"))
        self.backends = backends
        self.mllp_port, self.http_port = free_port(), free_port()
        self.socket_path = self.root / "haproxy.sock"
        self.config_file = self.root / "haproxy.cfg"
        self.out_file = self.root / "haproxy.out"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Write the config, start HAProxy and return once both frontends accept connections."""
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.config_file.write_text(render_config(self.backends, mllp_port=self.mllp_port,
                                                  http_port=self.http_port, socket_path=self.socket_path))
        check = subprocess.run([binary, "-c", "-f", str(self.config_file)], capture_output=True, text=True)
        if check.returncode != 0:
            raise HaproxyError(f"haproxy rejected its config:\n{check.stdout}{check.stderr}")
        with open(self.out_file, "ab") as out:
            self._proc = subprocess.Popen([binary, "-db", "-f", str(self.config_file)], stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise HaproxyError(f"haproxy exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.socket_path.exists() and _accepts(self.mllp_port):
                return
            time.sleep(0.05)
        self.stop()
        raise HaproxyError(f"haproxy did not listen within {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.out_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no output)"

    # --- the runtime API ----------------------------------------------------------------------------

    def command(self, text: str) -> str:
        """One runtime-API command on the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self, backend: str = "mllp_nodes") -> dict[str, str]:
        """{server name: status} of one backend (`UP`, `DOWN`, `UP 1/2`, `MAINT` ...)."""
        text = self.command("show stat").lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_state(self, server: str, status: str, *, backend: str = "mllp_nodes",
                   timeout: float = 20.0) -> None:
        """Wait until HAProxy reports `server` exactly as `status` (e.g. "UP", "DOWN")."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            seen = self.server_states(backend).get(server, "")
            if seen == status:
                return
            time.sleep(0.05)
        raise TimeoutError(f"haproxy: {backend}/{server} is {seen!r}, not {status!r} after {timeout:g}s")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
