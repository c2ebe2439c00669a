"""`yonglink status` against a running engine: tables, JSON, token handling and exit codes."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine import cli
from engine.commands.status import duration, problems, render, table
from engine.config import Config
from engine.runtime import Engine
from engine.types import InboundMessage

TOKEN = "cli-token"
CONFIG = """
engine:
  store: {path: var/cli.db}
  admin: {listen: "127.0.0.1:0", token: %s}
channels:
  - name: his-adt
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
"""


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def cli_output(capsys: pytest.CaptureFixture[str]) -> str:
    """Captured stdout without the engine's own log lines (structlog's default prints to stdout)."""
    return "\n".join(line for line in capsys.readouterr().out.splitlines() if not LOG_LINE.match(line))


async def run_cli(*argv: str) -> int:
    """`engine.cli.main` in a thread: it blocks on HTTP while the engine runs on this loop."""
    return await asyncio.to_thread(cli.main, list(argv))


async def test_status_prints_a_table_of_channels_and_the_store(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG % TOKEN))
    rt = engine.channels["his-adt"]
    acc = await rt.accept(InboundMessage(channel="his-adt", raw=b"MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\r",
                                         content_type="x-application/hl7-v2+er7", received_at=time.time()))
    await rt.wait_processed(acc.message_id, timeout=5)
    capsys.readouterr()
    assert await run_cli("status", "--url", engine.admin.url, "--token", TOKEN) == 0
    out = cli_output(capsys)
    assert out.startswith("yonglink ") and "store: sqlite" in out and "cli.db" in out
    header, row = out.splitlines()[3:5]
    assert header.split()[:4] == ["CHANNEL", "TYPE", "LISTEN", "STATE"]
    cells = row.split()
    assert cells[0] == "his-adt" and cells[1] == "mllp" and cells[2].startswith("127.0.0.1:")
    assert cells[3] == "started" and cells[4] == "1"


async def test_status_json_is_the_raw_document(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG % TOKEN))
    monkeypatch.setenv("YONGLINK_ADMIN_TOKEN", TOKEN)
    capsys.readouterr()
    assert await run_cli("status", "--url", engine.admin.url, "--json") == 0
    doc = json.loads(cli_output(capsys))
    assert doc["channels"][0]["name"] == "his-adt" and "store" in doc


async def test_status_without_the_token_exits_1_and_says_why(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG % TOKEN))
    monkeypatch.delenv("YONGLINK_ADMIN_TOKEN", raising=False)
    assert await run_cli("status", "--url", engine.admin.url) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "admin token required" in err and "--token" in err


async def test_status_exits_2_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert await run_cli("status", "--url", f"http://127.0.0.1:{port}", "--timeout", "2") == 2
    assert "cannot reach the admin API" in capsys.readouterr().err


def test_render_shows_destinations_with_queue_age_and_last_error() -> None:
    doc = {"engine": {"version": "0.1.0", "uptime_seconds": 7300}, "store": {"type": "sqlite", "path": "x.db",
                                                                             "size_bytes": 3 * 1024 * 1024},
           "channels": [], "destinations": [{"name": "hub", "type": "http", "state": "down", "queued": 12,
                                             "retrying": 3, "sent": 40, "dead": 1,
                                             "oldest_queued_age_seconds": 125.0,
                                             "last_error": {"at": 990.0, "text": "HTTP 503"}}]}
    text = render(doc, now=1000.0)
    assert "up 2h 01m" in text and "3.0 MiB" in text and "no channels configured" in text
    row = text.splitlines()[-1].split()
    assert row[:8] == ["hub", "http", "down", "12", "3", "40", "1", "2m"]
    assert text.endswith("10s ago: HTTP 503")


def test_columns_line_up_with_chinese_text() -> None:
    lines = table(["A", "B"], [["宁波", 1], ["x", 22]]).splitlines()
    assert lines[1] == "宁波   1" and lines[2] == "x     22"
    assert duration(None) == "-" and duration(90061) == "1d 1h"


async def test_messages_command_lists_matches_and_shows_one_in_full(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG % TOKEN))
    rt = engine.channels["his-adt"]
    acc = await rt.accept(InboundMessage(channel="his-adt", raw=b"MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\r",
                                         content_type="x-application/hl7-v2+er7", received_at=time.time(),
                                         control_id="CTRL42", message_type="ADT^A01", sending_facility="B"))
    await rt.wait_processed(acc.message_id, timeout=5)
    capsys.readouterr()
    api = ("--url", engine.admin.url, "--token", TOKEN)
    assert await run_cli("messages", *api, "--control-id", "CTRL42") == 0
    header, row = cli_output(capsys).splitlines()[:2]
    assert header.split()[:3] == ["RECEIVED", "ID", "CHANNEL"]
    assert acc.message_id in row and "CTRL42" in row and "ADT^A01" in row
    assert await run_cli("messages", *api, "--id", acc.message_id, "--json") == 0
    doc = json.loads(cli_output(capsys))
    assert doc["id"] == acc.message_id and doc["raw"].startswith("MSH|")
    # without --json: the message's path with local times, then the raw segments
    assert await run_cli("messages", *api, "--id", acc.message_id) == 0
    shown = cli_output(capsys)
    local = time.strftime("%Y-%m-%d %H:%M", time.localtime(doc["received_at"]))
    assert f"message {acc.message_id}" in shown and "control id CTRL42" in shown
    assert f"{local}" in shown and "received on his-adt" in shown
    assert "raw:\n  MSH|^~\\&|A|B" in shown
    assert await run_cli("messages", *api, "--id", "NOPE") == 1
    assert "no message NOPE" in capsys.readouterr().err


CLUSTER_DOC = {
    "engine": {"version": "0.1.0", "uptime_seconds": 60, "config": {"file": "c.yaml", "version": "v2"}},
    "store": {"type": "postgres", "database": "yonglink"}, "channels": [], "destinations": [],
    "cluster": {"node_id": "node-a", "backend": "postgres", "heartbeat": 2.0, "lease": 15.0, "nodes": [
        {"id": "node-a", "host": "h1", "pid": 11, "state": "running", "heartbeat_age": 0.0,
         "config_version": "v2", "channels": ["his-adt"], "singletons": ["recovery", "retention"]},
        {"id": "node-b", "host": "h2", "pid": 12, "state": "running", "heartbeat_age": 1.5,
         "config_version": "v1", "channels": ["his-adt"], "singletons": []},
        {"id": "node-c", "host": "h3", "pid": 13, "state": "running", "heartbeat_age": 95.0,
         "config_version": "v2", "channels": [], "singletons": []},
        {"id": "node-d", "host": "h4", "pid": 14, "state": "stopped", "heartbeat_age": 300.0,
         "config_version": "v1", "channels": [], "singletons": []}]}}


def test_render_shows_each_node_of_a_cluster_with_its_heartbeat_config_and_singletons() -> None:
    text = render(CLUSTER_DOC, now=1000.0)
    assert "cluster: this node node-a, heartbeat 2.0 s, lease 15.0 s" in text
    row = next(line for line in text.splitlines() if line.startswith("node-a")).split()
    assert row == ["node-a", "h1", "11", "running", "0s", "ago", "v2", "his-adt", "recovery,retention"]


def test_check_names_a_silent_node_and_a_node_on_another_config_but_not_a_stopped_one() -> None:
    assert problems(CLUSTER_DOC) == [
        "node node-b runs config version v1, this node v2",
        "node node-c has not been heard of for 1m 35s (its deliveries and singletons moved to other nodes)"]


def test_render_of_a_single_sqlite_node_has_no_node_table() -> None:
    doc = {**CLUSTER_DOC, "cluster": {**CLUSTER_DOC["cluster"], "backend": "local"}}
    assert "NODE" not in render(doc, now=1000.0)
