"""Payloads at rest, as an operator meets them (issue #17): with `engine.store.encryption` on, what the
store file holds is not the patient data the engine receives, maps and delivers; keys rotate without
losing a row; a lost key or an altered row is a clear per-message error, never a crash."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import delivery_support as S
import pytest

from channels.mllp.client import MllpClient
from engine import cli
from engine.config import Config
from engine.errors import KeyringError
from engine.runtime import Engine
from engine.store import messages
from engine.store.cipher import Keyring, key_id, key_text, new_key
from engine.types import HL7V2, InboundMessage

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = (ROOT / "tests" / "samples" / "adt_a01_v251_utf8.hl7").read_bytes().replace(b"\r\n", b"\r")
"""A real-shaped ADT^A01 (tests/samples): patient 王建国, resident ID 330203198503120171, mobile
13805740123."""
PHI = ["建国".encode(), b"330203198503120171", b"13805740123"]
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")
"""A log line of the in-process engine (same stdout as the CLI commands these tests run)."""


def config_text(sink_url: str, *, encryption: str = "",
                retry: str = "{initial_delay: 0.05, max_attempts: 50}") -> str:
    return f"""
engine:
  store: {{path: var/e.db{encryption}}}
  admin: {{listen: "127.0.0.1:0", token: {TOKEN}}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
destinations:
  - name: platform
    type: http
    routes: ["*"]
    retry: {retry}
    http: {{url: "{sink_url}/r"}}
routes:
  - {ROOT}/mappings/adt_person.yaml
"""


def write_key(tmp_path: Path, name: str) -> tuple[Path, str]:
    key = new_key()
    path = tmp_path / name
    path.write_text(key_text(key))
    return path, key_id(key)


def keyring_of(path: Path) -> Keyring:
    return Keyring(base64.b64decode(path.read_text()))


def with_keys(current: Path, *previous: Path) -> str:
    prev = ", ".join(f"{{key_file: {p}}}" for p in previous)
    return f", encryption: {{key_file: {current}, previous_keys: [{prev}]}}"


async def send(engine: Engine, payload: bytes = SAMPLE) -> bytes:
    port = engine.channels["his"].inbound.describe()["listen"].rsplit(":", 1)[1]  # type: ignore[union-attr]
    async with MllpClient("127.0.0.1", int(port)) as client:
        return await client.send(payload)


async def api(engine: Engine, path: str) -> tuple[int, Any]:
    assert engine.admin is not None
    async with aiohttp.ClientSession() as http, http.get(engine.admin.url + path, headers=AUTH) as resp:
        return resp.status, await resp.json()


async def only_message_id(engine: Engine) -> str:
    _, doc = await api(engine, "/messages")
    return str(doc["items"][0]["id"])


def store_bytes(tmp_path: Path) -> bytes:
    """Everything on disk for the store: the database file and its WAL."""
    db = tmp_path / "var" / "e.db"
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


@pytest.fixture
async def sink() -> Any:
    s = await S.Sink().start()
    yield s
    await s.stop()


async def run_to_delivery(make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
                          sink: Any, encryption: str) -> tuple[Engine, str]:
    engine: Engine = await engine_factory(make_config(config_text(sink.url, encryption=encryption)))
    assert b"MSA|CA|" in await send(engine)  # MSH-15 AL: the commit ACK
    await S.wait_for(lambda: sink.accepted)
    mid = await only_message_id(engine)
    await S.wait_for(lambda: S.rows(engine, "SELECT 1 FROM deliveries WHERE state = 'sent'"))
    return engine, mid


async def test_with_encryption_on_the_store_file_holds_no_patient_data_yet_everything_works(
        tmp_path: Path, sink: Any, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    key, kid = write_key(tmp_path, "store.key")
    engine, mid = await run_to_delivery(make_config, engine_factory, sink, with_keys(key))

    # mapped and delivered in plaintext to the receiver
    assert "王建国" in sink.accepted[0].body.decode()
    # the admin sees the raw message and the mapped record
    status, doc = await api(engine, f"/messages/{mid}")
    assert status == 200 and "王^建国" in doc["raw"]
    assert doc["results"][0]["record"]["name"] == "王建国"
    # every stored copy of the content is sealed with the configured key
    sealed = await S.rows(engine, "SELECT substr(raw, 1, 4), hex(substr(raw, 6, 4)) FROM messages")
    assert {(bytes(m), k.lower()) for m, k in sealed} == {(b"\x00YLK", kid)}
    records = await S.rows(engine, "SELECT record FROM results")
    assert records and all(r[0].startswith("ylk1:") for r in records)
    # `yonglink quality` recomputes from the sealed records what the engine counted live
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await asyncio.to_thread(cli.main, ["quality", "--config", str(tmp_path / "config.yaml"),
                                                  "--json"]) == 0
    report = json.loads("\n".join(x for x in out.getvalue().splitlines() if not LOG_LINE.match(x)))
    live = engine.router.quality_snapshot()["organisations"]
    assert report["organisations"] == live and live["NBDYYY"]["person"]["mapped"] == 1

    await engine.stop()  # and the file: no name, ID number or phone from the message anywhere
    on_disk = store_bytes(tmp_path)
    assert [p for p in PHI if p in on_disk] == []


async def test_without_encryption_the_same_grep_finds_the_patient_in_the_store_file(
        tmp_path: Path, sink: Any, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    """The control for the test above: its grep would see the data if it were there."""
    engine, _ = await run_to_delivery(make_config, engine_factory, sink, "")
    await engine.stop()
    on_disk = store_bytes(tmp_path)
    assert [p for p in PHI if p in on_disk] == PHI


async def store_cli(*argv: str) -> tuple[int, str]:
    """`yonglink store ...` in a thread (it runs its own event loop); its stdout without the in-process
    engine's log lines (same stdout in this test)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(cli.main, ["store", *argv])
    return code, "\n".join(line for line in out.getvalue().splitlines() if not LOG_LINE.match(line))


async def test_rotation_old_rows_stay_readable_with_the_previous_key_and_rekey_moves_them(
        tmp_path: Path, sink: Any, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    old, old_id = write_key(tmp_path, "old.key")
    engine, mid = await run_to_delivery(make_config, engine_factory, sink, with_keys(old))
    await engine.stop()

    # rotate: a new current key, the old one kept for reading
    new_code, new_out = await store_cli("keygen", str(tmp_path / "new.key"))
    assert new_code == 0 and (tmp_path / "new.key").stat().st_mode & 0o777 == 0o600
    new_id = new_out.split()[2]
    config = make_config(config_text(sink.url, encryption=with_keys(tmp_path / "new.key", old)))
    engine = await engine_factory(config)
    status, doc = await api(engine, f"/messages/{mid}")
    assert status == 200 and "王^建国" in doc["raw"]
    assert b"MSA|CA|" in await send(engine, SAMPLE.replace(b"000123|P|", b"000124|P|"))
    await S.wait_for(lambda: len(sink.accepted) == 2)

    cfg = str(tmp_path / "config.yaml")
    code, out = await store_cli("keys", "--config", cfg, "--json")
    stored = json.loads(out)["stored"]
    assert code == 0 and stored["messages.raw"] == {old_id: 1, new_id: 1}
    # rekey beside the running engine
    code, out = await store_cli("rekey", "--config", cfg, "--json", "--batch", "1")
    resealed = {column: n for column, n in json.loads(out)["resealed"].items() if n}  # export_records: 0
    assert code == 0 and resealed == {"messages.raw": 1, "deliveries.payload": 1, "results.record": 1}
    code, out = await store_cli("keys", "--config", cfg, "--json")
    assert set(json.loads(out)["stored"]["messages.raw"]) == {new_id}
    await engine.stop()

    # the old key is no longer needed
    engine = await engine_factory(make_config(config_text(sink.url,
                                                          encryption=with_keys(tmp_path / "new.key"))))
    status, doc = await api(engine, f"/messages/{mid}")
    assert status == 200 and "王^建国" in doc["raw"] and doc["results"][0]["record"]["name"] == "王建国"


async def test_rekey_seals_rows_written_before_encryption_was_turned_on(
        tmp_path: Path, sink: Any, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    engine, _ = await run_to_delivery(make_config, engine_factory, sink, "")
    await engine.stop()
    key, _ = write_key(tmp_path, "store.key")
    make_config(config_text(sink.url, encryption=with_keys(key)))
    code, _ = await store_cli("rekey", "--config", str(tmp_path / "config.yaml"))
    assert code == 0
    assert [p for p in PHI if p in store_bytes(tmp_path)] == []  # old plaintext pages were rewritten


async def test_the_engine_refuses_to_start_when_its_key_file_is_missing_or_invalid(
        tmp_path: Path, sink: Any, make_config: Callable[[str], Config],
        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.key"
    config = make_config(config_text(sink.url, encryption=with_keys(missing)))
    with pytest.raises(KeyringError, match="does not exist"):
        Engine(config)
    assert cli.main(["run", "--config", str(tmp_path / "config.yaml")]) == 1
    assert f"store key file {missing} does not exist" in capsys.readouterr().err

    (tmp_path / "bad.key").write_text("c2hvcnQ=\n")
    make_config(config_text(sink.url, encryption=with_keys(tmp_path / "bad.key")))
    assert cli.main(["run", "--config", str(tmp_path / "config.yaml")]) == 1
    assert "holds 5 bytes" in capsys.readouterr().err
    assert not (tmp_path / "var" / "e.db").exists()  # refused before touching the store


async def test_a_lost_key_fails_each_message_and_delivery_clearly_and_the_engine_goes_on(
        tmp_path: Path, sink: Any, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    lost, lost_id = write_key(tmp_path, "lost.key")
    sink.default = 503  # the first delivery stays queued, sealed with the key about to be lost
    engine: Engine = await engine_factory(make_config(config_text(sink.url, encryption=with_keys(lost))))
    await send(engine)
    await S.wait_for(lambda: sink.requests)
    mid = await only_message_id(engine)
    await engine.stop()
    # ... and a message accepted but not yet mapped when the engine stopped (a crash), sealed the same way
    db = tmp_path / "var" / "e.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        unmapped = messages.insert(conn, InboundMessage(channel="his", raw=SAMPLE, content_type=HL7V2,
                                                        received_at=1.0e9, control_id="UNMAPPED"),
                                   dedupe_window=0, seal=keyring_of(lost).seal).message_id

    sink.default = 200
    current, _ = write_key(tmp_path, "current.key")
    engine = await engine_factory(make_config(config_text(sink.url, encryption=with_keys(current))))

    # the raw view answers 409 naming the key, not a traceback
    status, doc = await api(engine, f"/messages/{mid}")
    assert status == 409 and doc["key_id"] == lost_id and lost_id in doc["error"]
    # the queued delivery and the unmapped message are dead letters whose reason names the key
    async def two_letters() -> Any:
        found = await S.rows(engine, "SELECT message_id, kind, error FROM dead_letters")
        return found if len(found) == 2 else None

    letters = await S.wait_for(two_letters)
    assert {(m, k) for m, k, _ in letters} == {(mid, "delivery"), (unmapped, "mapping")}
    assert all(f"key id {lost_id}" in e and "not in the keyring" in e for _, _, e in letters)
    assert sink.accepted == []  # nothing undecryptable was sent
    # the dead letter's payload view says why it has no payload
    (dead_id,) = await S.rows(engine, "SELECT id FROM dead_letters WHERE kind = 'delivery'")
    status, item = await api(engine, f"/dlq/{dead_id[0]}")
    assert status == 200 and item["payload"] is None and item["key_id"] == lost_id
    assert lost_id in item["payload_error"]
    # and the engine goes on: a new message is mapped and delivered
    assert b"MSA|CA|" in await send(engine, SAMPLE.replace(b"000123|P|", b"000125|P|"))
    await S.wait_for(lambda: sink.accepted)
    assert "王建国" in sink.accepted[0].body.decode()
    await engine.stop()

    # the key is found again: back in previous_keys, the dead letters replay (re-send and re-map)
    engine = await engine_factory(make_config(config_text(sink.url, encryption=with_keys(current, lost))))
    _, doc = await api(engine, "/dlq")
    for item in doc["items"]:
        assert engine.admin is not None
        async with aiohttp.ClientSession() as http, http.post(
                f"{engine.admin.url}/dlq/{item['id']}/replay", json={}, headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
    await S.wait_for(lambda: len(sink.accepted) == 3)
    assert {r.message_id for r in sink.accepted} == {mid, unmapped, sink.accepted[0].message_id}
    assert all("王建国" in r.body.decode() for r in sink.accepted)


async def test_an_altered_row_is_reported_as_failing_authentication(
        tmp_path: Path, sink: Any, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    key, kid = write_key(tmp_path, "store.key")
    engine, mid = await run_to_delivery(make_config, engine_factory, sink, with_keys(key))
    await engine.stop()
    with contextlib.closing(sqlite3.connect(tmp_path / "var" / "e.db", isolation_level=None)) as conn:
        raw = bytearray(conn.execute("SELECT raw FROM messages WHERE id = ?", (mid,)).fetchone()[0])
        raw[40] ^= 0x20
        conn.execute("UPDATE messages SET raw = ? WHERE id = ?", (bytes(raw), mid))
    engine = await engine_factory(make_config(config_text(sink.url, encryption=with_keys(key))))
    status, doc = await api(engine, f"/messages/{mid}")
    assert status == 409 and doc["key_id"] == kid
    assert "authentication failed (the stored value was altered)" in doc["error"]
