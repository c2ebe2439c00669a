"""A cluster on loopback for the tests of issue #13: N engine processes sharing one config and one store
(PostgreSQL, or one SQLite file per node to prove the harness), a private HAProxy in front of their MLLP
and HTTP channels, and the helpers the stories need: kill -9 a node, restart it, restart PostgreSQL,
send load through HAProxy the way a hospital sender does, wait for deliveries.

Every node runs `yonglink run` on the same config file; they differ only by environment variables the
config names (`${NODE_ID}`, `${NODE_MLLP_PORT}`, `${NODE_HTTP_PORT}`, `${NODE_ADMIN_PORT}`,
`${NODE_DIR}`), which is how an operator runs one config on several hosts. Ports are chosen free up front
and kept across a node's restart, so HAProxy's config never changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine_process import start_engine_logged
from haproxy import Backend, PrivateHaproxy, free_port

from channels.mllp.client import MllpClient
from engine.errors import EngineError

REPO = Path(__file__).resolve().parents[2]
TABLES = REPO / "mappings" / "tables"
SQLITE_STORE = "{path: ${NODE_DIR}/node.db}"
"""One SQLite file per node: not a cluster (nothing shared), only the harness without PostgreSQL."""
POSTGRES_STORE = "{backend: postgres, dsn: \"${YONGLINK_PG_DSN}\"}"


class Postgres(Protocol):
    """What the cluster needs of tests/support/postgres.py's private server."""

    def stop(self, mode: str = "fast") -> None: ...

    def start(self) -> None: ...


def adt(control_id: str, *, patient: str = "0001234567", name: str = "TEST^PATIENT") -> bytes:
    """A small ADT^A01 (HL7 v2.5.1 §3.3.1) with its own MSH-10; PID-3 carries `patient` as a PI id."""
    return (f"MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r"
            f"EVN|A01|20240301101500\rPID|1||{patient}^^^NBDYYY^PI||{name}||19850312|M\r"
            "PV1|1|I\r").encode()


@dataclass
class Node:
    """One engine process of the cluster."""

    name: str
    root: Path
    mllp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.root / "engine.log"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def env(self) -> dict[str, str]:
        return {"NODE_ID": self.name, "NODE_DIR": str(self.root), "NODE_MLLP_PORT": str(self.mllp_port),
                "NODE_HTTP_PORT": str(self.http_port), "NODE_ADMIN_PORT": str(self.admin_port)}

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def backend(self) -> Backend:
        return Backend(self.name, mllp_port=self.mllp_port, admin_port=self.admin_port,
                       http_port=self.http_port)

    def admin(self, path: str, method: str = "GET") -> Any:
        """Call this node's admin API (loopback, no token); the JSON answer, also for 4xx/5xx."""
        req = urllib.request.Request(self.admin_url + path, method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON line this node logged (all its runs)."""
        out = []
        with contextlib.suppress(OSError), open(self.log_file, "rb") as log:
            for line in log:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


class Cluster:
    """N nodes on one config, HAProxy in front. `body` is the YAML after `channels` (destinations,
    routes); `engine` is extra YAML under `engine:` (e.g. the `cluster:` block with short leases)."""

    def __init__(self, root: Path, *, nodes: int = 3, store: str = SQLITE_STORE, engine: str = "",
                 body: str = "", env: dict[str, str] | None = None, postgres: Postgres | None = None) -> None:
        self.root = root
        self.env = dict(env or {})
        self.postgres = postgres
        self.dsn = self.env.get("YONGLINK_PG_DSN", "")
        self.nodes = [Node(f"node{i + 1}", root / f"node{i + 1}") for i in range(nodes)]
        for node in self.nodes:
            node.root.mkdir(parents=True, exist_ok=True)
        self.config = root / "cluster.yaml"
        self.config.write_text(render_config(store=store, engine=engine, body=body), encoding="utf-8")
        self.haproxy = PrivateHaproxy([n.backend() for n in self.nodes], root=root / "haproxy")
        self.haproxy.root.mkdir(exist_ok=True)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> Cluster:
        """Start every node (one after the other: the first applies the migrations), then HAProxy; return
        once HAProxy sees every node UP."""
        for node in self.nodes:
            await self.start_node(node)
        await asyncio.to_thread(self.haproxy.start)
        for node in self.nodes:
            await asyncio.to_thread(self.haproxy.wait_state, node.name, "UP")
        return self

    async def start_node(self, node: Node) -> None:
        node.proc, _ = await start_engine_logged(self.config, node.log_file, env={**self.env, **node.env})

    def kill(self, node: Node) -> None:
        """kill -9 the node and every process it started (its process group): no shutdown of any kind."""
        if node.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(10)

    def hang(self, node: Node, *, resume: bool = False) -> None:
        """SIGSTOP the node's process group (alive, holding its sockets and sessions, answering nothing),
        or SIGCONT it again with `resume`."""
        if node.proc is not None:
            os.killpg(node.proc.pid, signal.SIGCONT if resume else signal.SIGSTOP)

    async def stop_node(self, node: Node) -> None:
        """SIGTERM: the node's orderly stop (channels first, commits in flight finish)."""
        if node.proc is None or node.proc.poll() is not None:
            return
        node.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(node.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.kill(node)

    async def restart_postgres(self, mode: str = "immediate", down: float = 0.5) -> None:
        """Stop PostgreSQL (`immediate`: as a crash, no checkpoint, every session cut), stay down for
        `down` seconds, start it again on the same port and data."""
        if self.postgres is None:
            raise RuntimeError("this cluster has no PostgreSQL")
        await asyncio.to_thread(self.postgres.stop, mode)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.postgres.start)

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of one SQL statement on the cluster's PostgreSQL database (what the nodes share)."""

        def run() -> list[tuple[Any, ...]]:
            import psycopg

            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]

        return await asyncio.to_thread(run)

    def close(self) -> None:
        for node in self.nodes:
            self.kill(node)  # SIGKILL also ends a stopped (hung) process
        self.haproxy.stop()

    def log_tails(self, lines: int = 15) -> str:
        """The end of every node's log and HAProxy's output (for assertion messages)."""
        out = []
        for node in self.nodes:
            with contextlib.suppress(OSError):
                text = node.log_file.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {node.name} ---\n" + "\n".join(text))
        out.append("--- haproxy ---\n" + self.haproxy.log_tail(lines))
        return "\n".join(out)


def render_config(*, store: str, engine: str = "", body: str = "") -> str:
    """The one config every node runs (see the module docstring for the variables it names)."""
    extra = textwrap.indent(textwrap.dedent(engine).strip(), "  ") + "\n" if engine.strip() else ""
    return (
        "engine:\n"
        f"  store: {store}\n"
        "  admin: {listen: \"127.0.0.1:${NODE_ADMIN_PORT}\"}\n"
        "  log: {format: json, level: info}\n"
        f"  tables: {TABLES}\n"
        "  mapping_workers: 0\n"
        + extra +
        "channels:\n"
        "  - name: lab\n"
        "    type: mllp\n"
        "    mllp: {listen: \"127.0.0.1:${NODE_MLLP_PORT}\"}\n"
        "  - name: web\n"
        "    type: http\n"
        "    http: {listen: \"127.0.0.1:${NODE_HTTP_PORT}\"}\n"
        + textwrap.dedent(body).strip() + "\n")


# --- load: what a hospital's MLLP sender does -----------------------------------------------------------


@dataclass
class Outcome:
    """What the senders saw: the control ids that got AA, and every other answer or failure."""

    acked: list[str] = field(default_factory=list)
    """Control ids in the order their AA arrived (a resend that got AA again is listed once)."""
    negative: list[tuple[str, str]] = field(default_factory=list)
    """(control id, MSA-1) of every AE/AR/CE/CR answer."""
    lost: int = 0
    """Sends that got no answer (connection reset or closed: a node died or HAProxy cut it)."""
    resent: int = 0


async def send_load(port: int, control_ids: Iterable[str], *, connections: int = 4,
                    make: Any = None, started: asyncio.Event | None = None, after: int = 0,
                    attempts: int = 60) -> Outcome:
    """Send each control id's message through `port` on `connections` connections, one frame in flight
    per connection, as an MLLP sender does: a message without AA (no answer, AE) is sent again with the
    same MSH-10 on a new connection after a short pause, up to `attempts` times. `started` is set once
    `after` messages got AA (the test then kills something mid-load). `make(control_id)` builds the
    message (default: `adt`)."""
    build = make or adt
    queue: asyncio.Queue[str] = asyncio.Queue()
    for cid in control_ids:
        queue.put_nowait(cid)
    outcome = Outcome()

    async def one_sender() -> None:
        client = MllpClient("127.0.0.1", port, timeout=10)  # connects on send, again after a drop
        try:
            while not queue.empty():
                cid = queue.get_nowait()
                for attempt in range(attempts):
                    if attempt:
                        outcome.resent += 1
                        await asyncio.sleep(0.05 * min(attempt, 10))
                    try:
                        ack = await client.send(build(cid))
                    except (EngineError, OSError):
                        outcome.lost += 1
                        await client.close()
                        continue
                    code = _msa_code(ack)
                    if code == "AA":
                        outcome.acked.append(cid)
                        if started is not None and len(outcome.acked) >= after:
                            started.set()
                        break
                    outcome.negative.append((cid, code))
        finally:
            await client.close()

    await asyncio.gather(*(one_sender() for _ in range(connections)))
    return outcome


def _msa_code(ack: bytes) -> str:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode(errors="replace")
    return "?"
