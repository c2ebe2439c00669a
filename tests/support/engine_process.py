"""Run the engine as a real subprocess (`python -m engine.cli run`), for tests that kill it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
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
