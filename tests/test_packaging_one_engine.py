"""One engine per store, and an address already in use: one line, exit 1, no traceback (real processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import StoreError
from engine.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 60
"""Seconds a command may take before the test fails (a deadline, not a performance target)."""


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A `yonglink init` project (one MLLP channel, admin API; addresses from the environment)."""
    assert main(["init", str(tmp_path / "project")]) == 0
    capsys.readouterr()
    return tmp_path / "project"


def _env(mllp: str = "127.0.0.1:0", admin: str = "127.0.0.1:0") -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "YONGLINK_MLLP_LISTEN": mllp,
            "YONGLINK_ADMIN_LISTEN": admin}


def _run(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`yonglink run` expected to exit by itself."""
    return subprocess.run([sys.executable, "-m", "engine.cli", "run"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=DEADLINE)


class RunningEngine:
    """`yonglink run` in the background, started (it logged `engine started`), its log drained."""

    def __init__(self, project: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run"], cwd=project, env=_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        self._stream = self.proc.stderr
        for line in self._stream:
            if line.startswith("{") and json.loads(line).get("event") == "engine started":
                break
        else:
            code = self.proc.wait()
            self._stream.close()
            raise AssertionError(f"the engine exited ({code}) before starting")
        self._reader = threading.Thread(target=self._stream.read, daemon=True)
        self._reader.start()

    def finish(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=DEADLINE)
        self._reader.join(DEADLINE)
        self._stream.close()
        return code


@pytest.fixture
def running(project: Path) -> Iterator[RunningEngine]:
    engine = RunningEngine(project)
    yield engine
    if engine.proc.poll() is None:
        engine.finish(signal.SIGKILL)
    else:
        engine._stream.close()


@pytest.mark.slow
def test_a_second_engine_on_the_same_store_exits_at_once_naming_the_store_and_the_pid(
        project: Path, running: RunningEngine) -> None:
    second = _run(project, _env())
    assert second.returncode == 1
    store = project / "var" / "yonglink.db"
    assert second.stderr.splitlines() == [
        f"yonglink: store {store} is in use by another engine (pid {running.proc.pid}); stop that one first"
        " or give this one its own engine.store.path"]
    assert running.proc.poll() is None  # the first one runs on


@pytest.mark.slow
def test_the_second_engine_stops_at_the_store_before_loading_its_routes(
        project: Path, running: RunningEngine) -> None:
    """The store is claimed first: a second engine whose routes would not even load is told the store is
    in use, without spending the seconds that loading routes and dataset schemas takes."""
    config = (project / "config.yaml").read_text(encoding="utf-8")
    (project / "second.yaml").write_text(config.replace("routes/*.yaml", "no-such-folder/*.yaml"),
                                         encoding="utf-8")
    second = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--config", "second.yaml"],
                            cwd=project, env=_env(), capture_output=True, text=True, timeout=DEADLINE)
    assert second.returncode == 1
    assert second.stderr.startswith(f"yonglink: store {project / 'var' / 'yonglink.db'} is in use")


@pytest.mark.slow
def test_the_store_is_free_again_once_its_engine_stopped_or_was_killed(project: Path) -> None:
    """SIGTERM releases the lock, and so does kill -9 (the kernel drops the lock with the process)."""
    assert RunningEngine(project).finish(signal.SIGTERM) == 0  # stops cleanly, even right after start
    assert RunningEngine(project).finish(signal.SIGKILL) == -signal.SIGKILL
    engine = RunningEngine(project)  # would exit 1 (store in use) if the killed one had left it locked
    assert engine.finish(signal.SIGTERM) == 0


@pytest.fixture
def taken() -> Iterator[str]:
    """An address another server is listening on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.slow
def test_a_channel_port_already_in_use_is_one_line_naming_the_channel_and_the_address(
        project: Path, taken: str) -> None:
    result = _run(project, _env(mllp=taken))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == \
        f"yonglink: channel mllp-in: cannot listen on {taken}: address already in use"


@pytest.mark.slow
def test_an_admin_port_already_in_use_is_one_line_naming_the_admin_api_and_the_address(
        project: Path, taken: str) -> None:
    result = _run(project, _env(admin=taken))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == \
        f"yonglink: admin API: cannot listen on {taken}: address already in use"


async def test_one_process_cannot_open_a_store_twice(tmp_path: Path) -> None:
    """The lock holds within one process too (`flock` is per open file): the second open fails, and
    closing the first frees the store."""
    first, second = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    await first.open()
    with pytest.raises(StoreError, match=rf"store {tmp_path / 's.db'} is in use by another engine "
                                         rf"\(pid {os.getpid()}\)"):
        await second.open()
    await first.close()
    await second.open()
    await second.close()
