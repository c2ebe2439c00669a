"""Two engine nodes in this process on one real PostgreSQL (tests/support/postgres.py), the same config:
a dead node's deliveries are sent by the other with the same delivery ids, and the messages it ACKed but
never mapped are mapped by the other; a FIFO destination keeps each
key's order when the node sending it dies; rows queued on one node wake the FIFO sender on the other by
NOTIFY, with no heartbeat in between; a reload on one node reaches the other's `/status`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import delivery_support as S
import orjson
import pytest
from cluster_nodes import die, queue_routed, start_node

from engine.config import Config
from engine.runtime import Engine
from engine.store import messages
from engine.types import HL7V2, InboundMessage

pytestmark = pytest.mark.postgres

CONFIG = """
engine:
  store: {path: var/unused.db}
  admin: {listen: "127.0.0.1:0"}
  cluster: {heartbeat: %(heartbeat)s, lease: %(lease)s}
destinations:
  - name: platform
    type: http
    %(options)s
    retry: {initial_delay: 0.05, max_delay: 0.2, jitter: 0}
    http: {url: "%(url)s/r"}
"""
FIFO = "ordering: fifo\n    order_key: patient"
BOUND = 30.0
"""Seconds a story may take before it fails (leases of 1 s: a few of them; not a speed target)."""


@pytest.fixture
async def cluster(pg_dsn: str, make_config: Callable[[str], Config]) -> AsyncIterator[Callable[..., Any]]:
    """`start(node_id, url, options=..., heartbeat=..., lease=...)`: a node on the test's database, all
    from one config file; every node still running is stopped afterwards."""
    started: list[Engine] = []

    async def start(node_id: str, url: str, *, options: str = "", heartbeat: str = "200ms",
                    lease: str = "1s") -> Engine:
        config = make_config(CONFIG % {"heartbeat": heartbeat, "lease": lease, "options": options,
                                       "url": url})
        engine = await start_node(config, pg_dsn, node_id)
        started.append(engine)
        return engine

    yield start
    for engine in reversed(started):
        if not engine.stopped:
            await engine.stop()


def add_comment(file: Path) -> None:
    """Change the config file without changing what it configures (a new version all the same)."""
    file.write_text(file.read_text(encoding="utf-8") + "# reviewed\n", encoding="utf-8")


async def deliveries(engine: Engine) -> list[tuple[str, str, str | None]]:
    """(id, state, owner) of every delivery row."""
    return list(await S.rows(engine, "SELECT id, state, owner FROM deliveries ORDER BY seq"))


async def test_a_dead_nodes_queued_deliveries_are_sent_by_the_other_with_the_same_ids(
        cluster: Callable[..., Any]) -> None:
    sink = await S.Sink(default=503).start()
    try:
        a = await cluster("node-a", sink.url)
        b = await cluster("node-b", sink.url)
        assert a.cluster.holds("retention") and not b.cluster.holds("retention")
        await queue_routed(a, [{"patient": f"p{i}"} for i in range(5)], "platform")
        await S.wait_for(lambda: len(sink.requests) >= 5, timeout=BOUND)  # node-a tries, and fails
        tried_by_a = {r.key for r in sink.requests}
        ids = {row[0] for row in await deliveries(b)}
        assert {row[2] for row in await deliveries(b)} == {"node-a"}
        await die(a)
        sink.default = 200
        await S.wait_for(lambda: {r.key for r in sink.accepted} == ids, timeout=BOUND)
        assert tried_by_a <= ids  # the same Idempotency-Key from both nodes: the delivery id
        async def all_sent_by_b() -> bool:
            return {(state, owner) for _, state, owner in await deliveries(b)} == {("sent", "node-b")}

        await S.wait_for(all_sent_by_b, timeout=BOUND)
        [me] = [n for n in b.status()["cluster"]["nodes"] if n["id"] == "node-b"]
        assert {"retention", "recovery", "history"} <= set(me["singletons"])  # node-a's, until it died
    finally:
        await sink.stop()


async def test_a_fifo_destination_keeps_each_keys_order_when_its_sending_node_dies(
        cluster: Callable[..., Any]) -> None:
    sink = await S.Sink(delay=0.01).start()
    try:
        a = await cluster("node-a", sink.url, options=FIFO)  # first up: node-a sends the destination
        b = await cluster("node-b", sink.url, options=FIFO)
        records = [{"patient": f"p{i % 2}", "n": i} for i in range(60)]
        await queue_routed(b, records, "platform")  # queued on node-b, sent by node-a
        await S.wait_for(lambda: len(sink.accepted) >= 10, timeout=BOUND)
        await die(a)
        await S.wait_for(lambda: {orjson.loads(r.body)["n"] for r in sink.accepted} == set(range(60)),
                         timeout=BOUND)
        for key in ("p0", "p1"):
            bodies = [orjson.loads(r.body) for r in sink.accepted]
            seen = [body["n"] for body in bodies if body["patient"] == key]
            once = [n for n, _ in itertools.groupby(seen)]  # at-least-once: a resend follows its original
            assert once == sorted(once) and len(once) == 30, (key, seen)
    finally:
        await sink.stop()


async def test_rows_queued_on_one_node_wake_the_fifo_sender_on_the_other_without_a_heartbeat(
        cluster: Callable[..., Any]) -> None:
    sink = await S.Sink().start()
    try:
        a = await cluster("node-a", sink.url, options=FIFO, heartbeat="60s", lease="600s")
        b = await cluster("node-b", sink.url, options=FIFO, heartbeat="60s", lease="600s")
        await S.wait_for(lambda: a.cluster.describe()["listening"], timeout=BOUND)
        await queue_routed(b, [{"patient": "p1", "n": i} for i in range(3)], "platform")
        await S.wait_for(lambda: len(sink.accepted) == 3, timeout=BOUND)
        assert a.cluster.beats == 1  # only the heartbeat at start: the NOTIFY woke node-a's worker
    finally:
        await sink.stop()


async def test_a_reload_on_one_node_changes_the_other_nodes_config_version_in_status(
        cluster: Callable[..., Any], make_config: Callable[[str], Config]) -> None:
    sink = await S.Sink().start()
    try:
        a = await cluster("node-a", sink.url)
        b = await cluster("node-b", sink.url)
        await S.wait_for(lambda: b.cluster.describe()["listening"], timeout=BOUND)
        add_comment(a.config.file)
        result = await a.reload()
        assert result.ok and result.version != result.previous_version
        assert b.admin is not None

        async def b_status() -> Any:
            async with aiohttp.ClientSession() as http, http.get(b.admin.url + "/status") as resp:
                return await resp.json()

        async def b_runs_the_new_version() -> bool:
            body = await b_status()
            me = next(n for n in body["cluster"]["nodes"] if n["id"] == "node-b")
            return bool(body["engine"]["config"]["version"] == result.version == me["config_version"])

        await S.wait_for(b_runs_the_new_version, timeout=BOUND)
    finally:
        await sink.stop()


async def test_a_config_with_a_postgres_store_makes_a_node_whose_rows_carry_its_id(
        pg_dsn: str, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """`yonglink run` builds the engine from the config alone: the store's connections carry the node id
    and lease that the `owner` / `lease_until` column defaults read."""
    text = (CONFIG % {"heartbeat": "1s", "lease": "5s", "options": "", "url": "http://127.0.0.1:9"}).replace(
        "store: {path: var/unused.db}", f"store: {{backend: postgres, dsn: '{pg_dsn}'}}").replace(
        "cluster: {", "cluster: {node_id: ward-7, ")
    engine: Engine = await engine_factory(make_config(text))
    status = engine.status()["cluster"]
    assert (status["backend"], status["node_id"]) == ("postgres", "ward-7")
    await queue_routed(engine, [{"patient": "p1"}], "platform")
    [(owner, lease_left)] = await S.rows(
        engine, "SELECT owner, lease_until - extract(epoch from clock_timestamp()) FROM deliveries")
    assert owner == "ward-7" and 0 < lease_left <= 5
    [(message_owner,)] = await S.rows(engine, "SELECT owner FROM messages")
    assert message_owner == "ward-7"


async def test_messages_a_dead_node_acked_but_never_mapped_are_mapped_by_another_node(
        cluster: Callable[..., Any]) -> None:
    a = await cluster("node-a", "http://127.0.0.1:9")
    b = await cluster("node-b", "http://127.0.0.1:9")
    a.pipeline.hold("lab", True)  # node-a takes messages in (its ACK is sent) but dies before mapping

    def op(conn: Any) -> list[str]:
        return [messages.insert(conn, InboundMessage(channel="lab", raw=b"MSH|^~\\&|LIS|NBH\r",
                                                     content_type=HL7V2, received_at=time.time()),
                                dedupe_window=0).message_id for _ in range(3)]

    ids = await a.store.write(op)
    await die(a)

    async def mapped_by_b() -> bool:
        found = await S.rows(b, "SELECT state, owner FROM messages")
        return sorted(found) == [("filtered", "node-b")] * len(ids)  # no route here: filtered, not lost

    await S.wait_for(mapped_by_b, timeout=BOUND)


async def test_a_delivery_replayed_on_one_node_is_sent_once_by_that_node(
        cluster: Callable[..., Any]) -> None:
    sink = await S.Sink(refuse_body={b'"poison"'}).start()
    try:
        a = await cluster("node-a", sink.url)
        b = await cluster("node-b", sink.url)
        await queue_routed(a, [{"patient": "poison"}], "platform")
        [dead] = await S.wait_for(lambda: S.rows(b, "SELECT id FROM dead_letters"), timeout=BOUND)
        [(delivery_id, _, owner)] = await deliveries(b)
        assert owner == "node-a"
        sink.refuse_body.clear()  # the receiver was fixed; an operator replays the dead letter on node-b
        report = await b.dead_letters.replay([dead[0]], remap=False, who="test")
        assert report.requeued == 1
        await S.wait_for(lambda: [r.key for r in sink.accepted] == [delivery_id], timeout=BOUND)

        async def sent_by_b() -> bool:
            return await deliveries(b) == [(delivery_id, "sent", "node-b")]

        await S.wait_for(sent_by_b, timeout=BOUND)
        assert [r.key for r in sink.accepted] == [delivery_id]  # node-a did not send it as well
    finally:
        await sink.stop()
