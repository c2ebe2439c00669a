"""When a dropped file is complete: the rule a drop-directory channel applies before it reads a file.

A sender that writes into a shared directory (the 隔离区 exchange) needs a convention that tells the
reader a file is finished. Three are common, and a channel uses one (`complete:`):

- `temp_suffix`: the sender writes `x.hl7.tmp` (or `.part`) and renames it to `x.hl7` when done; a
  file without the suffix is complete.
- `marker`: the sender writes `x.hl7`, then an empty `x.hl7.done` / `x.hl7.ok` (or `x.done`); the data
  file is complete once its marker exists.
- `stable`: the sender just writes; a file is complete once its size and mtime have not changed for
  `stable_for` seconds (the only choice for senders that can do neither of the above).

Under every rule, hidden files (leading dot), files with a temporary suffix and marker files are never
taken as data. The channel also re-checks size and mtime after reading (channels/file/inbound.py).
"""

from __future__ import annotations

import enum
import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".filepart")
"""Suffixes senders (and scp / WinSCP / rsync-like tools) give a file while it is written."""
DEFAULT_MARKER_SUFFIXES = (".done", ".ok")
DEFAULT_STABLE_FOR = 5.0
"""Seconds a file's size and mtime must stay unchanged under the `stable` rule."""


class CompleteRule(enum.StrEnum):
    """How the channel decides that a sender has finished writing a file."""

    TEMP_SUFFIX = "temp_suffix"
    MARKER = "marker"
    STABLE = "stable"


@dataclass(frozen=True, slots=True)
class Entry:
    """One regular file of a listing."""

    name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Ready:
    """A complete data file, and the marker that completed it (moved along with it)."""

    entry: Entry
    marker: str | None = None


def list_files(directory: Path) -> list[Entry]:
    """Regular files directly in `directory` (subdirectories such as done/ and error/ are skipped)."""
    out = []
    with os.scandir(directory) as it:
        for de in it:
            try:
                if not de.is_file(follow_symlinks=False):
                    continue
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:  # taken or renamed meanwhile
                continue
            out.append(Entry(de.name, st.st_size, st.st_mtime_ns))
    return out


class Readiness:
    """Applies one `CompleteRule` to successive listings of a directory (the `stable` rule needs memory)."""

    def __init__(self, *, rule: CompleteRule, temp_suffixes: Sequence[str] = DEFAULT_TEMP_SUFFIXES,
                 marker_suffixes: Sequence[str] = DEFAULT_MARKER_SUFFIXES,
                 stable_for: float = DEFAULT_STABLE_FOR, pattern: str = "*") -> None:
        self.rule = rule
        self.temp_suffixes = tuple(s.lower() for s in temp_suffixes)
        self.marker_suffixes = tuple(s.lower() for s in marker_suffixes)
        self.stable_for = stable_for
        self.pattern = pattern
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, unchanged since)

    def is_candidate(self, name: str) -> bool:
        """A name that may be a data file (not hidden, not temporary, not a marker, matching `pattern`)."""
        low = name.lower()
        if name.startswith(".") or low.endswith(self.temp_suffixes) or low.endswith(self.marker_suffixes):
            return False
        return fnmatch.fnmatch(name, self.pattern)

    def marker_for(self, name: str, names: set[str]) -> str | None:
        """The marker of `name` present in `names`: `x.hl7.done`, or `x.done` for `x.hl7`."""
        stem = name.rsplit(".", 1)[0] if "." in name else name
        for suffix in self.marker_suffixes:
            for candidate in (name + suffix, stem + suffix):
                for present in (candidate, candidate.upper()):
                    if present in names:
                        return present
        return None

    def ready(self, entries: Iterable[Entry], now: float) -> list[Ready]:
        """The complete data files of one listing, oldest first; `now` is a monotonic clock reading."""
        listing = list(entries)
        names = {e.name for e in listing}
        out: list[Ready] = []
        seen: dict[str, tuple[int, int, float]] = {}
        for e in listing:
            if not self.is_candidate(e.name):
                continue
            if self.rule is CompleteRule.MARKER:
                marker = self.marker_for(e.name, names)
                if marker is not None:
                    out.append(Ready(e, marker))
            elif self.rule is CompleteRule.STABLE:
                size, mtime, since = self._seen.get(e.name, (-1, -1, now))
                if (size, mtime) != (e.size, e.mtime_ns):
                    since = now
                seen[e.name] = (e.size, e.mtime_ns, since)
                if now - since >= self.stable_for:
                    out.append(Ready(e))
            else:
                out.append(Ready(e))
        if self.rule is CompleteRule.STABLE:
            self._seen = seen  # forget files that went away
        out.sort(key=lambda r: (r.entry.mtime_ns, r.entry.name))
        return out

    def forget(self, name: str) -> None:
        """The file was taken (or moved away): start afresh if a file of that name appears again."""
        self._seen.pop(name, None)
