"""Run the engine as a real subprocess (`python -m engine.cli run`), for tests that kill it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


async def start_engine(config: Path) -> tuple[asyncio.subprocess.Process, int]:
    """Run `yonglink run` and return the process and its MLLP port (read from the JSON log)."""
    proc, event = await start_engine_until(config, "mllp listening")
    return proc, int(str(event["listen"]).rsplit(":", 1)[1])


async def start_engine_until(config: Path, ready: str = "engine started",
                             ) -> tuple[asyncio.subprocess.Process, dict[str, object]]:
    """Run `yonglink run` until its JSON log shows the event `ready`; return the process and that event."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "run", "--config", str(config), cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    stderr = proc.stderr
    if stderr is None:
        raise RuntimeError("no stderr pipe")
    async with asyncio.timeout(60):
        while True:
            line = await stderr.readline()
            if not line:
                raise RuntimeError(f"engine exited early with code {await proc.wait()}")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == ready:
                break
    asyncio.get_running_loop().create_task(_drain(stderr))
    return proc, event


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass



async def start_engine_logged(config: Path, log_file: Path, *, env: dict[str, str] | None = None,
                              ready: str = "engine started",
                              ) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    """Run `yonglink run` in its own process group, its JSON log appended to `log_file` (kept for
    failure messages and for tests that read what a node logged); return once the log shows `ready`.

    `env` is added to the environment: several nodes share one config file and differ only by the
    `${VAR}`s it names (ports, node id). The process group lets a test kill -9 the node together with
    any worker process it started.
    """
    return await asyncio.to_thread(run_engine_logged, config, log_file, env=env, ready=ready)


def run_engine_logged(config: Path, log_file: Path, *, env: dict[str, str] | None = None,
                      ready: str = "engine started", timeout: float = 60.0,
                      ) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    """`start_engine_logged` for synchronous callers (benchmarks)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    offset = log_file.stat().st_size if log_file.exists() else 0
    with open(log_file, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--config", str(config)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_file, "rb") as log:
            log.seek(offset)
            for line in log:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == ready:
                    return proc, event
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited early with code {proc.returncode}; log {log_file}:\n"
                               + _tail(log_file, offset))
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise RuntimeError(f"engine did not log {ready!r} within {timeout:g}s; log {log_file}:\n"
                       + _tail(log_file, offset))


def _tail(path: Path, offset: int = 0, lines: int = 30) -> str:
    with open(path, "rb") as log:
        log.seek(offset)
        return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])
