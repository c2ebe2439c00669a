"""File destination: each delivery becomes `<dir>/<dataset>/<YYYYMMDD>/<delivery id>.json` (or `.hl7`).

The isolated-directory ("隔离区") exchange: a unit drops files into a directory that another system
collects from, so a collector must never see half a file. Each file is written under a hidden temp
name in the same directory, fsynced, renamed into place (atomic on POSIX), and the directory fsynced
so the rename itself survives power loss. A crash before the rename leaves only a `.*.tmp` file, which
collectors ignore (leading dot, `.tmp` suffix) and `start()` removes. A re-delivery after a crash
rewrites the same name (the delivery id), so collectors see one file per delivery.

`dir` is relative to the config file's directory; pass-through messages go under `passthrough/`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from channels.base import Outbound
from engine.errors import TransientDeliveryError
from engine.types import HL7V2, DeliveryItem, DeliveryResult

TEMP_SUFFIX = ".tmp"
PASSTHROUGH_DIR = "passthrough"


def extension(content_type: str) -> str:
    """`.hl7` for HL7 v2 ER7, `.xml` for XML, else `.json`."""
    if content_type == HL7V2:
        return ".hl7"
    if "xml" in content_type:
        return ".xml"
    return ".json"


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (POSIX: the directory entry is only on disk after this)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(target: Path, data: bytes, *, fsync: bool = True, unique_temp: bool = False) -> None:
    """Write `data` to `target` so that readers see either no file or the whole file.

    `unique_temp`: name the temp file after the process and thread too, for targets that two writers
    may write at once (an export period rewritten by `yonglink export replay` while the engine runs).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = f".{os.getpid()}-{threading.get_ident()}" if unique_temp else ""
    temp = target.with_name(f".{target.name}{tag}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, target)
    if fsync:
        fsync_dir(target.parent)


def clean_temp_files(root: Path) -> int:
    """Remove temp files a crash left between write and rename; returns how many."""
    removed = 0
    if not root.is_dir():
        return 0
    for path in root.rglob(f".*{TEMP_SUFFIX}"):
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed


class FileOutbound(Outbound):
    """Writes each delivery to its own file; blocking I/O runs in a worker thread."""

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name=name, settings=settings)
        self.root = Path(str(settings.get("dir", "var/outbox")))
        self.fsync = bool(settings.get("fsync", True))
        self.cleaned = 0

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cleaned = await asyncio.to_thread(clean_temp_files, self.root)

    def path_for(self, item: DeliveryItem, now: float | None = None) -> Path:
        day = time.strftime("%Y%m%d", time.localtime(now))
        dataset = item.dataset or PASSTHROUGH_DIR
        return self.root / dataset / day / f"{item.delivery_id}{extension(item.content_type)}"

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        target = self.path_for(item)
        try:
            await asyncio.to_thread(write_atomically, target, item.payload, fsync=self.fsync)
        except OSError as exc:
            raise TransientDeliveryError(f"cannot write {target}: {exc.strerror or exc}") from None
        return DeliveryResult(response=str(target))
