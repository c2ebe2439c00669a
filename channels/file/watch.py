"""Wake the drop-directory channel as soon as something lands in a directory (Linux inotify(7)).

Polling stays the rule (it is what works on every filesystem); this only shortens the wait: when a file
is closed after writing, renamed into, or created in a watched directory, the channel polls at once.
inotify is called through libc with ctypes, so there is no dependency; where it is missing (not Linux)
or cannot watch (a limit reached), `start` returns False and the channel just polls. Events made on
another machine of a network filesystem (NFS, SMB) are not seen by inotify: polling covers those.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# <sys/inotify.h> (Linux): event bits and inotify_init1 flags
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


class DirectoryWatch:
    """Calls `on_change()` on the event loop whenever one of `dirs` gets a new or rewritten entry."""

    def __init__(self, dirs: Sequence[Path], on_change: Callable[[], None]) -> None:
        self.dirs = list(dirs)
        self.on_change = on_change
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        """Begin watching; False when inotify is not available here (the caller keeps polling)."""
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        except (OSError, AttributeError):
            return False
        if fd < 0:
            return False
        for d in self.dirs:
            if libc.inotify_add_watch(fd, os.fsencode(str(d)), WATCH_MASK) < 0:
                os.close(fd)
                return False
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._drain)
        return True

    def _drain(self) -> None:
        if self._fd is None:
            return
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        self.on_change()

    def close(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
        self._fd = None
