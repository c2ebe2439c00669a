"""Drop-directory channel: takes complete files from one or more directories (the 隔离区 exchange).

Each poll lists every directory, applies the channel's completeness rule (channels/file/readiness.py)
and takes the complete files one at a time, oldest first:

1. read the file (off the event loop) and check its size and mtime did not change while reading;
2. parse it into messages (channels/file/intake.py) with the dedupe key `<channel>:file:<sha256>`;
3. commit every message (`ctx.accept`, durable), and only then
4. move it (and its marker) to `done/` — or, for a file that cannot be parsed, store it as rejected
   (`ctx.reject`), write `error/<name>.reason.txt`, then move it to `error/`.

A `kill -9` between 3 and 4 leaves the file in place; taken again, every message is found already
stored (counted `duplicate`), so nothing is lost and nothing is stored twice. The reason file records
the file's SHA-256, so a crash between the reject and the move does not store the rejection twice.
Moves are renames within the watched directory (same filesystem), followed by a directory fsync.
On Linux, inotify wakes the poll as soon as a file lands (channels/file/watch.py; `watch: false` to
poll only).
File names are logged at DEBUG only: hospital systems often put patient ids in them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from channels.base import ChannelContext, Inbound
from channels.file.intake import FileFormat, Intake, parse_file
from channels.file.outbound import fsync_dir, write_atomically
from channels.file.readiness import (
    DEFAULT_MARKER_SUFFIXES,
    DEFAULT_STABLE_FOR,
    DEFAULT_TEMP_SUFFIXES,
    CompleteRule,
    Entry,
    Readiness,
    Ready,
    list_files,
)
from channels.file.watch import DirectoryWatch
from channels.payload import Envelope
from engine.config import parse_duration, parse_size
from engine.errors import EngineError
from engine.types import Acceptance, InboundMessage

DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
"""Files larger than this go to error/ unread (the whole file is held in memory while parsed)."""
DONE_DIR = "done"
ERROR_DIR = "error"
REASON_SUFFIX = ".reason.txt"


@dataclass(frozen=True, slots=True)
class Inbox:
    """One watched directory and where its taken files go."""

    dir: Path
    done: Path
    error: Path


class FileChanged(EngineError):
    """Raised when a file changed while it was read (its sender is still writing): try again later."""


class FileInbound(Inbound):
    """Polls drop directories; a file is moved to done/ only after its messages are committed."""

    def __init__(self, *, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name=name, settings=settings, context=context)
        dirs = settings.get("dirs") or [settings.get("dir", "var/dropbox")]
        base = context.config_dir
        done, error = str(settings.get("done_dir", DONE_DIR)), str(settings.get("error_dir", ERROR_DIR))
        self.inboxes = [Inbox(dir=d, done=d / done, error=d / error)
                        for d in (base / str(x) for x in dirs)]
        self.poll_interval = parse_duration(settings.get("poll_interval", DEFAULT_POLL_INTERVAL))
        self.max_file_bytes = parse_size(settings.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES))
        self.format = FileFormat(settings.get("format", FileFormat.AUTO.value))
        self.charset: str | None = settings.get("charset")
        self.fhir_release = str(settings.get("fhir_release", "R4B"))
        self.fsync = bool(settings.get("fsync", True))
        rule = CompleteRule(settings.get("complete", CompleteRule.TEMP_SUFFIX.value))
        stable_for = parse_duration(settings.get("stable_for", DEFAULT_STABLE_FOR))
        self.readiness = {
            inbox.dir: Readiness(rule=rule,
                                 temp_suffixes=settings.get("temp_suffixes", DEFAULT_TEMP_SUFFIXES),
                                 marker_suffixes=settings.get("markers", DEFAULT_MARKER_SUFFIXES),
                                 stable_for=stable_for, pattern=str(settings.get("pattern", "*")))
            for inbox in self.inboxes}
        self.files_done = 0
        self.files_error = 0
        self.files_waiting = 0
        self.last_poll_at: float | None = None
        self._stopping = asyncio.Event()
        self._nudge = asyncio.Event()  # set by stop() and by the directory watch: poll now
        self._task: asyncio.Task[None] | None = None
        self.watch = DirectoryWatch([i.dir for i in self.inboxes], self._nudge.set) \
            if settings.get("watch", True) else None
        self.watching = False

    async def start(self) -> None:
        for inbox in self.inboxes:
            for d in (inbox.dir, inbox.done, inbox.error):
                await asyncio.to_thread(d.mkdir, parents=True, exist_ok=True)
        self._stopping.clear()
        self.watching = self.watch.start() if self.watch is not None else False
        self._task = asyncio.create_task(self._run(), name=f"yonglink-file-{self.name}")

    async def stop(self) -> None:
        """Finish the file in hand (its commits and move), then stop polling."""
        self._stopping.set()
        self._nudge.set()
        if self.watch is not None:
            self.watch.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def describe(self) -> dict[str, Any]:
        rule = next(iter(self.readiness.values())).rule.value
        return {"dirs": [str(i.dir) for i in self.inboxes], "complete": rule,
                "poll_interval": self.poll_interval, "watch": "inotify" if self.watching else "poll",
                "files_done": self.files_done,
                "files_error": self.files_error, "files_waiting": self.files_waiting,
                "last_poll_at": self.last_poll_at}

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll_once()
            except Exception as exc:  # a full disk, a lost mount: report, keep polling
                text = _os_error(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
                self.context.error(f"poll failed: {text}")
                self.context.log.error("file poll failed", error=text)
            try:
                await asyncio.wait_for(self._nudge.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._nudge.clear()

    async def poll_once(self) -> int:
        """List every directory and take its complete files; returns how many were taken."""
        taken = waiting = 0
        for inbox in self.inboxes:
            readiness = self.readiness[inbox.dir]
            entries = await asyncio.to_thread(list_files, inbox.dir)
            ready = readiness.ready(entries, time.monotonic())
            waiting += sum(1 for e in entries if readiness.is_candidate(e.name)) - len(ready)
            for item in ready:
                if self._stopping.is_set():
                    break
                try:
                    took = await self.take(inbox, item)
                except OSError as exc:  # one unreadable or unmovable file must not stop the others
                    self.context.error(f"file not taken: {_os_error(exc)}")
                    self.context.log.error("file not taken", error=_os_error(exc))
                    continue
                if took:
                    taken += 1
                    readiness.forget(item.entry.name)
        self.files_waiting = waiting
        self.last_poll_at = time.time()
        return taken

    async def take(self, inbox: Inbox, item: Ready) -> bool:
        """Commit one file's messages, then move it; False when it must wait (still written, store down)."""
        path = inbox.dir / item.entry.name
        if item.entry.size > self.max_file_bytes:
            reason = f"file is {item.entry.size} bytes, more than max_file_bytes ({self.max_file_bytes})"
            env = self._envelope(inbox, item.entry.name, "")
            whole = InboundMessage(channel=self.name, raw=b"", content_type="application/octet-stream",
                                   received_at=env.received_at, peer=env.peer, metadata=env.metadata)
            await self._reject(inbox, item, Intake(rejected=whole, reason=reason), "")
            return True
        try:
            raw = await asyncio.to_thread(_read_unchanged, path, item.entry)
        except (FileChanged, FileNotFoundError):
            return False
        sha = hashlib.sha256(raw).hexdigest()
        env = self._envelope(inbox, item.entry.name, sha)
        intake = await asyncio.to_thread(parse_file, raw, env, name=item.entry.name, fmt=self.format,
                                         charset=self.charset, fhir_release=self.fhir_release)
        if intake.rejected is not None:
            await self._reject(inbox, item, intake, sha)
            return True
        results = await asyncio.gather(*(self.context.accept(m) for m in intake.messages),
                                       return_exceptions=True)
        failed = [r for r in results if not isinstance(r, Acceptance)]
        if failed:  # nothing is moved: the next poll takes the file again (committed ones dedupe)
            self.context.error(f"cannot commit a file's messages: {failed[0]}")
            self.context.log.error("file not taken: store failed", file_sha256=sha[:16], error=str(failed[0]))
            return False
        await asyncio.to_thread(self._move, inbox.dir, item, inbox.done, sha)
        self.files_done += 1
        dupes = sum(1 for r in results if isinstance(r, Acceptance) and r.duplicate)
        self.context.log.info("file taken", messages=len(results), duplicates=dupes, file_sha256=sha[:16])
        self.context.log.debug("file taken", file=item.entry.name)
        return True

    def _envelope(self, inbox: Inbox, name: str, sha: str) -> Envelope:
        return Envelope(channel=self.name, received_at=time.time(), peer=f"file:{inbox.dir}",
                        key=f"{self.name}:file:{sha}" if sha else None,
                        metadata={"file": name, "file_sha256": sha} if sha else {"file": name})

    async def _reject(self, inbox: Inbox, item: Ready, intake: Intake, sha: str) -> None:
        reason = intake.reason or "unreadable file"
        reason_file = inbox.error / (item.entry.name + REASON_SUFFIX)
        already = bool(sha) and await asyncio.to_thread(_recorded, reason_file, sha)
        if not already and intake.rejected is not None:
            await self.context.reject(intake.rejected, reason)  # stored before the file moves
        text = f"{reason}\nsha256: {sha or '-'}\nrejected_at: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
        await asyncio.to_thread(write_atomically, reason_file, text.encode("utf-8"), fsync=self.fsync)
        await asyncio.to_thread(self._move, inbox.dir, item, inbox.error, sha)
        self.files_error += 1
        self.context.log.warning("file rejected", reason=reason, file_sha256=sha[:16])

    def _move(self, source: Path, item: Ready, target: Path, sha: str) -> None:
        name = item.entry.name
        dest = target / name
        if dest.exists():  # a sender reusing a name: keep both
            dest = target / f"{name}.{sha[:12] or int(time.time())}"
        os.replace(source / name, dest)
        if item.marker is not None:
            try:
                os.replace(source / item.marker, target / item.marker)
            except FileNotFoundError:
                pass
        if self.fsync:  # the new entry must survive power loss; if the old one comes back, the file
            fsync_dir(target)  # is taken again and its messages are found already stored (no 2nd fsync)


def _read_unchanged(path: Path, entry: Entry) -> bytes:
    """The file's bytes; FileChanged when size or mtime moved since the listing or during the read."""
    with path.open("rb") as fh:
        before = os.fstat(fh.fileno())
        data = fh.read()
        after = os.fstat(fh.fileno())
    if (before.st_size, before.st_mtime_ns) != (entry.size, entry.mtime_ns) or \
            (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or \
            len(data) != before.st_size:
        raise FileChanged(str(path))
    return data


def _recorded(reason_file: Path, sha: str) -> bool:
    """True when `reason_file` already records this content (rejected before a crash)."""
    try:
        return f"sha256: {sha}\n" in reason_file.read_text(encoding="utf-8")
    except OSError:
        return False


def _os_error(exc: OSError) -> str:
    """An OSError without its file name (names of dropped files may carry patient ids)."""
    return f"{type(exc).__name__}: {exc.strerror or 'error'} (errno {exc.errno})"
