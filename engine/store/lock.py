"""One engine per store: an exclusive `flock` on a lock file beside the SQLite file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.errors import StoreError

if sys.platform != "win32":  # yonglink runs on POSIX; elsewhere the store is not locked
    import fcntl

LOCK_SUFFIX = ".lock"
"""The one-engine lock file sits beside the SQLite file: `var/yonglink.db.lock`."""


class StoreLock:
    """One engine per store: an exclusive `flock` on `<store>.lock`, holding the owner's pid.

    Two engines on one SQLite file would each dedupe, deliver and prune on their own; the second must
    not start. The kernel drops an `flock` when its file is closed, which the exit of the process does,
    `kill -9` included, so a lock left by a crash never blocks the next start; the file itself stays
    (unlinking it would let a third process lock a new file while the second holds the old one).
    """

    def __init__(self, store: Path) -> None:
        self.store = store
        self.path = store.with_name(store.name + LOCK_SUFFIX)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreError naming the store and the pid holding it."""
        if sys.platform == "win32" or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by spawned workers
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(f"store {self.store} is in use by another engine (pid {holder}); stop that "
                             f"one first or give this one its own engine.store.path") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next engine in (exit does the same)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None
