"""The operator's CLI against a running engine: which engine it talks to (config, env, --url),
`status --check` for monitoring scripts, `reload`, `tail` and shell completion."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from channels.mllp.client import MllpClient
from engine import cli
from engine.config import Config
from engine.runtime import Engine

TOKEN = "ops-cli-token"
CONFIG = """
engine:
  store: {path: var/ops.db}
  admin: {listen: "127.0.0.1:0", token: %s}
channels:
  - name: his
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
destinations:
  - name: good
    type: stub
  - name: broken
    type: stub
    retry: {max_attempts: 100, initial_delay: 0.01s, max_delay: 0.02s}
    stub: {fail_first: 1000}
routes: [routes/*.yaml]
"""
ROUTE = "id: %s\nmatch:\n  message_type: %s\npassthrough: true\ndestinations: [%s]\n"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")
"""The in-process engine's own log lines, printed to the same stdout."""
ADT = "MSH|^~\\&|HIS|NBH|EMPI|NB|20261101120000||{mtype}|{cid}|P|2.5.1\rPID|1||P1^^^NBH^PI||X^Y||19900101|M\r"


@pytest.fixture
def start(tmp_path: Path, make_config: Callable[[str], Config],
          engine_factory: Callable[[Config], Any]) -> Callable[..., Any]:
    async def go(*, broken: bool = False) -> Engine:
        (tmp_path / "routes").mkdir(exist_ok=True)
        dests = "good, broken" if broken else "good"
        (tmp_path / "routes" / "fwd.yaml").write_text(ROUTE % ("fwd", "ADT^A04", dests), encoding="utf-8")
        engine: Engine = await engine_factory(make_config(CONFIG % TOKEN))
        return engine
    return go


async def send(engine: Engine, *cids: str, mtype: str = "ADT^A04") -> None:
    host, port = str(engine.channels["his"].describe()["listen"]).rsplit(":", 1)
    async with MllpClient(host, int(port)) as client:
        for cid in cids:
            assert b"MSA|AA|" in await client.send(ADT.format(mtype=mtype, cid=cid).encode())


def admin_config(tmp_path: Path, engine: Engine, name: str = "ops.yaml", *, token: str = TOKEN) -> Path:
    """A config file naming the running engine's admin address and token, as an operator's would."""
    port = engine.admin.url.rsplit(":", 1)[1]
    path = tmp_path / name
    path.write_text(f"engine:\n  store: {{path: var/ops.db}}\n  admin: {{listen: '127.0.0.1:{port}', "
                    f"token: {token}}}\n", encoding="utf-8")
    return path


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if not LOG_LINE.match(line)]
    return code, "\n".join(lines), out.err


async def test_status_finds_the_engine_and_token_in_the_config_and_says_so(
        start: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await start()
    monkeypatch.delenv("YONGLINK_ADMIN_URL", raising=False)
    monkeypatch.delenv("YONGLINK_ADMIN_TOKEN", raising=False)
    config = admin_config(tmp_path, engine)
    code, out, err = await run(capsys, "status", "--config", str(config))
    assert code == 0 and "his" in out
    assert f"engine at {engine.admin.url} (from {config})" in err
    # no --config: config.yaml in the working directory is used
    monkeypatch.chdir(tmp_path)
    config.rename(tmp_path / "config.yaml")
    code, out, err = await run(capsys, "status")
    assert code == 0 and "(from " in err and "config.yaml)" in err
    # the environment overrides the config: pointed elsewhere, the CLI says where and fails to reach it
    monkeypatch.setenv("YONGLINK_ADMIN_URL", "http://127.0.0.1:9")
    code, _out, err = await run(capsys, "status")
    assert code == 2 and "engine at http://127.0.0.1:9 (from $YONGLINK_ADMIN_URL)" in err
    # and --url overrides both
    code, _out, err = await run(capsys, "status", "--url", engine.admin.url)
    assert code == 0 and "(from --url)" in err


async def test_status_check_exits_1_while_a_destination_is_down(
        start: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = await start(broken=True)
    config = str(admin_config(tmp_path, engine))
    code, out, _err = await run(capsys, "status", "--config", config, "--check")
    assert code == 0 and out.startswith("OK")
    await send(engine, "D1")
    deadline = time.monotonic() + 20
    while not any(d["name"] == "broken" and d["state"] == "down" for d in engine.delivery.status()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    code, out, _err = await run(capsys, "status", "--config", config, "--check")
    assert code == 1
    assert "PROBLEM destination broken is down (1 queued)" in out and "stub failure" in out


async def test_reload_applies_a_changed_route_and_refuses_a_broken_one(
        start: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = await start()
    config = str(admin_config(tmp_path, engine))
    (tmp_path / "routes" / "orm.yaml").write_text(ROUTE % ("orm", "ORM^O01", "good"), encoding="utf-8")
    code, out, _err = await run(capsys, "reload", "--config", config)
    assert code == 0 and "reloaded: config version" in out and "2 routes" in out
    (tmp_path / "routes" / "bad.yaml").write_text("id: bad\nmatch: {message_type: X}\ntarget: nope\n",
                                                  encoding="utf-8")
    code, _out, err = await run(capsys, "reload", "--config", config)
    assert code == 1 and "reload refused" in err and "bad.yaml" in err


async def test_tail_prints_recent_messages_then_follows_new_ones(
        start: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = await start()
    config = str(admin_config(tmp_path, engine))
    await send(engine, "T1", "T2")
    code, out, _err = await run(capsys, "tail", "--config", config)
    assert code == 0
    assert [line.split()[5] for line in out.splitlines()] == ["T1", "T2"]  # oldest first

    followed: list[int] = []
    thread = threading.Thread(target=lambda: followed.append(cli.main(
        ["tail", "--config", config, "--follow", "--lines", "1", "--stop-after", "4"])))
    capsys.readouterr()
    thread.start()
    await asyncio.sleep(1.5)
    await send(engine, "T3")
    await asyncio.to_thread(thread.join, 30)
    lines = [line for line in capsys.readouterr().out.splitlines() if not LOG_LINE.match(line)]
    shown = [line.split()[5] for line in lines]
    assert followed == [0] and shown == ["T2", "T3"]


def test_bash_completion_completes_commands_verbs_and_options() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = subprocess.run([sys.executable, "-m", "engine.cli", "completion", "bash"], capture_output=True,
                            text=True, check=True).stdout

    def complete(*words: str) -> list[str]:
        probe = (f"{script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; _yonglink; "
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        return subprocess.run([bash, "-c", probe], capture_output=True, text=True, check=True).stdout.split()

    assert complete("yonglink", "sta") == ["status"]
    assert complete("yonglink", "dlq", "re") == ["replay"]
    assert complete("yonglink", "dlq", "replay", "--a") == ["--all"]
    assert "--check" in complete("yonglink", "status", "--")

