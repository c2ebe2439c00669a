"""Hot reload through the admin API (`POST /reload`) and SIGHUP, against a running engine.

Each test writes `config.yaml` (and a route file) in a temp dir, starts the engine with its admin API
and MLLP channels on 127.0.0.1 port 0, edits the files and asks for a reload.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine import reload as hot
from engine.config import Config
from engine.runtime import Engine

CONFIG = """\
engine:
  store:
    path: var/reload.db
  admin:
    listen: 127.0.0.1:0
channels:
  - name: adt
    type: mllp
    mllp:
      listen: 127.0.0.1:0
  - name: lab
    type: mllp
    mllp:
      listen: 127.0.0.1:0
      max_connections: {lab_max}
destinations:
  - name: sink
    type: stub
{extra_dests}routes:
  - routes/*.yaml
"""

ROUTE_ADT = """\
id: pass_adt
match:
  message_type: ADT^A01
passthrough: true
destinations: [sink]
"""

ROUTE_ORM = ROUTE_ADT.replace("pass_adt", "pass_orm").replace("ADT^A01", "ORM^O01")


def hl7(control_id: str, message_type: str = "ADT^A01") -> bytes:
    return (f"MSH|^~\\&|HIS|NBH001|YL|YL|20240101120000||{message_type}|{control_id}|P|2.5.1\r"
            f"PID|1||{control_id}^^^^PI\r").encode()


class MllpClient:
    """A raw asyncio MLLP client: 0x0B payload 0x1C 0x0D, one ACK read per message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, listen: str) -> MllpClient:
        host, _, port = listen.rpartition(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, payload: bytes) -> str:
        """Send one framed message and return the MSA-1 code of its ACK."""
        self.writer.write(b"\x0b" + payload + b"\x1c\x0d")
        await self.writer.drain()
        ack = await asyncio.wait_for(self.reader.readuntil(b"\x1c\x0d"), 10)
        msa = next(s for s in ack.strip(b"\x0b\x1c\x0d").split(b"\r") if s.startswith(b"MSA"))
        return msa.split(b"|")[1].decode()

    async def closed_by_peer(self) -> bool:
        """True when the server closed this connection (EOF or reset)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), 10) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def config_text(*, lab_max: int = 50, extra_dests: str = "") -> str:
    return CONFIG.format(lab_max=lab_max, extra_dests=extra_dests)


def write_config(tmp_path: Path, *, lab_max: int = 50, routes: tuple[str, ...] = (ROUTE_ADT,),
                 extra_dests: str = "") -> Path:
    """Write config.yaml and one route file per route (`routes/*.yaml` in the config)."""
    folder = tmp_path / "routes"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    for i, text in enumerate(routes):
        (folder / f"r{i}.yaml").write_text(text, encoding="utf-8")
    file = tmp_path / "config.yaml"
    file.write_text(config_text(lab_max=lab_max, extra_dests=extra_dests), encoding="utf-8")
    return file


@pytest.fixture
async def engine(tmp_path: Path, make_config: Callable[[str], Config],
                 engine_factory: Callable[[Config], Any]) -> Engine:
    write_config(tmp_path)
    started: Engine = await engine_factory(make_config((tmp_path / "config.yaml").read_text()))
    return started


async def api(engine: Engine, method: str, path: str) -> tuple[int, Any]:
    # X-Requested-With: what a script (not a cross-site form) sends; see engine/admin/auth.py's CSRF check
    async with aiohttp.ClientSession() as http, http.request(method, engine.admin.url + path,
                                                            headers={"X-Requested-With": "test"}) as resp:
        return resp.status, await resp.json()


def listen_of(status: dict[str, Any], name: str) -> str:
    return str(next(c for c in status["channels"] if c["name"] == name)["listen"])


async def wait_for(cond: Callable[[], Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
    """Poll until `cond()` is truthy; fail after `timeout` seconds (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return value


async def state_of(engine: Engine, message_id_control: str) -> str | None:
    rows = await engine.store.read(lambda c: c.execute(
        "SELECT state FROM messages WHERE control_id = ?", (message_id_control,)).fetchall())
    return rows[0][0] if rows else None


async def test_a_good_change_swaps_routes_and_restarts_only_the_changed_channel(
        engine: Engine, tmp_path: Path) -> None:
    """A valid edit is applied: the new route maps the next message, only `lab` restarts, and /status
    shows the new config version and load time."""
    _, status = await api(engine, "GET", "/status")
    before = status["engine"]["config"]
    adt_inbound = engine.channels["adt"].inbound
    client = await MllpClient.connect(listen_of(status, "adt"))
    assert await client.send(hl7("ORM1", "ORM^O01")) == "AA"
    assert await wait_for(lambda: engine.channels["adt"].stats.counts["filtered"] == 1)

    write_config(tmp_path, lab_max=60, routes=(ROUTE_ADT, ROUTE_ORM))
    code, result = await api(engine, "POST", "/reload")

    assert code == 200, result
    assert result["ok"] is True and result["errors"] == []
    assert result["channels_restarted"] == ["lab"]
    assert result["channels_unchanged"] == ["adt"]
    assert result["routes"] == 2
    assert engine.channels["adt"].inbound is adt_inbound
    _, status = await api(engine, "GET", "/status")
    after = status["engine"]["config"]
    assert after["version"] == result["version"] != before["version"]
    assert after["loaded_at"] > before["loaded_at"]
    assert [c["state"] for c in status["channels"]] == ["started", "started"]

    assert await client.send(hl7("ORM2", "ORM^O01")) == "AA"
    await wait_for(lambda: engine.channels["adt"].stats.counts["mapped"] == 1)
    assert await state_of(engine, "ORM2") == "mapped"
    _, last = await api(engine, "GET", "/reload")
    assert last["last"]["version"] == result["version"]
    await client.close()


TYPO_LINE = config_text().splitlines().index("      max_connections: 50") + 1


@pytest.mark.parametrize("edit, where", [
    ("config", f"config.yaml:{TYPO_LINE}"),
    ("route", "r0.yaml:5"),
    ("yaml", "config.yaml:"),
])
async def test_a_bad_change_is_refused_with_file_and_line_and_nothing_changes(
        engine: Engine, tmp_path: Path, edit: str, where: str) -> None:
    """An unknown config key, a route naming an unknown destination, or broken YAML: 400 with the file
    and line; the running config, router and channels are exactly as before."""
    live = engine.live
    inbounds = {n: c.inbound for n, c in engine.channels.items()}
    if edit == "config":
        text = config_text().replace("max_connections: 50", "max_conections: 60")
        (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    elif edit == "route":
        write_config(tmp_path, routes=(ROUTE_ADT.replace("[sink]", "[nowhere]"),))
    else:
        (tmp_path / "config.yaml").write_text(config_text() + "  - [unclosed\n", encoding="utf-8")

    code, result = await api(engine, "POST", "/reload")

    assert code == 400, result
    assert result["ok"] is False
    assert any(where in e for e in result["errors"]), result["errors"]
    if edit == "config":
        assert "did you mean max_connections?" in result["errors"][0]
    assert engine.live is live
    assert {n: c.inbound for n, c in engine.channels.items()} == inbounds
    _, status = await api(engine, "GET", "/status")
    assert status["engine"]["config"]["version"] == live.config.version
    client = await MllpClient.connect(listen_of(status, "adt"))
    assert await client.send(hl7("AFTER-REFUSAL")) == "AA"
    await client.close()


async def test_an_open_mllp_connection_of_an_unchanged_channel_survives_a_reload(
        engine: Engine, tmp_path: Path) -> None:
    """The connection to `adt` (unchanged) carries messages before and after the reload; the one to
    `lab` (its settings changed) is closed by the restart."""
    _, status = await api(engine, "GET", "/status")
    adt = await MllpClient.connect(listen_of(status, "adt"))
    lab = await MllpClient.connect(listen_of(status, "lab"))
    assert await adt.send(hl7("BEFORE")) == "AA"
    assert await lab.send(hl7("LAB-BEFORE")) == "AA"
    assert engine.channels["adt"].stats.connections_open == 1

    write_config(tmp_path, lab_max=70)
    code, result = await api(engine, "POST", "/reload")
    assert code == 200, result

    assert await adt.send(hl7("AFTER")) == "AA"
    assert engine.channels["adt"].stats.connections_open == 1
    assert await lab.closed_by_peer()
    assert await state_of(engine, "AFTER") is not None
    await adt.close()
    await lab.close()


async def test_a_reload_adds_new_channels_and_stops_removed_ones(engine: Engine, tmp_path: Path) -> None:
    """A channel added to the file starts listening; one removed from it stops and leaves /status."""
    text = config_text()
    lab_block = text[text.index("  - name: lab"):text.index("destinations:")]
    extra_block = (lab_block.replace("name: lab", "name: extra")
                   .replace("max_connections: 50", "ack: on_receipt"))
    (tmp_path / "config.yaml").write_text(text.replace(lab_block, extra_block), encoding="utf-8")
    old_lab_listen = engine.channels["lab"].inbound.describe()["listen"]  # type: ignore[union-attr]

    code, result = await api(engine, "POST", "/reload")

    assert code == 200, result
    assert result["channels_added"] == ["extra"] and result["channels_removed"] == ["lab"]
    _, status = await api(engine, "GET", "/status")
    assert [c["name"] for c in status["channels"]] == ["adt", "extra"]
    extra = await MllpClient.connect(listen_of(status, "extra"))
    assert await extra.send(hl7("EXTRA1")) == "AA"
    await extra.close()
    with pytest.raises(OSError):
        await MllpClient.connect(old_lab_listen)


async def test_a_destination_change_is_refused_until_restart(engine: Engine, tmp_path: Path) -> None:
    """The delivery service cannot swap destinations live yet: such a reload is refused, not half done."""
    write_config(tmp_path, extra_dests="  - name: second\n    type: stub\n")
    config = engine.config

    code, result = await api(engine, "POST", "/reload")

    assert code == 400, result
    assert "second" in result["errors"][0] and "restart" in result["errors"][0]
    assert engine.config is config


async def test_sighup_reloads_the_config(engine: Engine, tmp_path: Path) -> None:
    """`install_sighup` makes SIGHUP re-read the file, as `kill -HUP` does in production."""
    loop = asyncio.get_running_loop()
    engine.install_sighup()
    try:
        write_config(tmp_path, lab_max=80)
        os.kill(os.getpid(), signal.SIGHUP)
        result = await wait_for(lambda: engine.last_reload)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
    assert result.ok and result.channels_restarted == ["lab"]
    assert engine.config.channel("lab").settings["max_connections"] == 80


def test_channel_comparison_ignores_line_numbers_and_route_lists() -> None:
    """Moving a channel down the file or changing its `routes:` is not a reason to restart it."""
    from engine.config import ChannelConfig

    a = ChannelConfig(name="x", type="mllp", settings={"listen": "127.0.0.1:0"}, line=3, routes=None)
    b = ChannelConfig(name="x", type="mllp", settings={"listen": "127.0.0.1:0"}, line=9, routes=("r",))
    c = ChannelConfig(name="x", type="mllp", settings={"listen": "127.0.0.1:1"}, line=3)
    assert hot.connector_key(a) == hot.connector_key(b) != hot.connector_key(c)



async def test_messages_keep_flowing_through_reloads_and_each_is_mapped_by_one_router(
        engine: Engine, tmp_path: Path) -> None:
    """While 300 messages stream over one connection, three reloads swap the routes: every message is
    acknowledged, none is left unprocessed or failed, and each one's results come from exactly one
    router (old or new, never a mix)."""
    _, status = await api(engine, "GET", "/status")
    client = await MllpClient.connect(listen_of(status, "adt"))

    async def stream() -> list[str]:
        return [await client.send(hl7(f"S{i}")) for i in range(300)]

    sender = asyncio.create_task(stream())
    for n in range(3):
        routes = (ROUTE_ADT, ROUTE_ORM) if n % 2 == 0 else (ROUTE_ADT,)
        write_config(tmp_path, lab_max=90 + n, routes=routes)
        code, result = await api(engine, "POST", "/reload")
        assert code == 200, result
    acks = await sender
    await client.close()

    assert acks == ["AA"] * 300
    await engine.pipeline.drain()
    rows = await engine.store.read(lambda c: c.execute(
        "SELECT m.state, count(r.route_id) FROM messages m LEFT JOIN results r ON r.message_id = m.id"
        " WHERE m.control_id LIKE 'S%' GROUP BY m.id").fetchall())
    assert len(rows) == 300
    assert {state for state, _ in rows} == {"mapped"}
    assert {n for _, n in rows} == {1}
