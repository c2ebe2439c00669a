"""`yonglink store keygen|keys|rekey`: the keys of payloads at rest (docs/security.md, key rotation).

- `keygen FILE`: write a new random store key (base64, 0600) and print its key id.
- `keys`: the key ids of the configured keyring, and how many stored values each key id sealed.
- `rekey`: re-seal every value not sealed with the current key (previous keys, and values written
  before encryption was turned on), in batches, beside a running engine (engine/store/rekey.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from engine.commands import default_config


def register(sub: Any) -> None:
    p = sub.add_parser("store", help="store encryption keys: keygen, keys, rekey")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    gen = actions.add_parser("keygen", help="write a new store key file (0600) and print its key id")
    gen.add_argument("file", help="key file to create (refuses to overwrite one)")
    gen.set_defaults(func=keygen)
    for name, func, text in (("keys", keys, "key ids of the keyring and the values each sealed"),
                             ("rekey", rekey, "re-seal stored content with the current key, in batches")):
        q = actions.add_parser(name, help=text)
        q.add_argument("--config", "-c", default=default_config(), help="config file")
        q.add_argument("--json", action="store_true", help="print JSON")
        if name == "rekey":
            q.add_argument("--batch", type=int, default=500, help="rows per write transaction")
        q.set_defaults(func=func)


def keygen(args: argparse.Namespace) -> int:
    from engine.store.cipher import key_id, key_text, new_key

    key = new_key()
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"yonglink: {args.file} exists; a key file is never overwritten", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"yonglink: cannot create {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key_text(key))
        out.flush()
        os.fsync(out.fileno())
    print(f"key id {key_id(key)} written to {Path(args.file).resolve()}")
    return 0


def keys(args: argparse.Namespace) -> int:
    return asyncio.run(_with_store(args, _keys))


def rekey(args: argparse.Namespace) -> int:
    return asyncio.run(_with_store(args, _rekey))


async def _with_store(args: argparse.Namespace, action: Any) -> int:
    from engine.config import load_config
    from engine.errors import ConfigError, StoreError
    from engine.store.backends import build_store
    from engine.store.cipher import load_cipher
    from engine.store.connection import Dialect

    try:
        config = load_config(args.config)
        cipher = load_cipher(config.engine.store.encryption)
    except ConfigError as exc:
        print(f"yonglink: {exc}", file=sys.stderr)
        return 1
    sqlite = config.engine.store.backend is Dialect.SQLITE
    path = config.engine.store.path
    if sqlite and not path.exists():
        print(f"yonglink: no store at {path}", file=sys.stderr)
        return 1
    # beside a running engine; secure_delete (SQLite): a re-sealed row's old bytes are zeroed, not left in
    # free space. PostgreSQL keeps old row versions until VACUUM: docs/security.md says to run it.
    store = build_store(config.engine.store, engine_lock=False, cipher=cipher, secure_delete=True)
    try:
        await store.open()
        code: int = await action(args, store)
    except StoreError as exc:
        print(f"yonglink: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    if args.func is rekey and sqlite:
        _truncate_wal(path)
    return code


def _truncate_wal(path: Path) -> None:
    """Copy the WAL into the database and truncate it: its old frames held the rows before re-sealing."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as exc:
        busy, detail = 1, str(exc)
    else:
        detail = "a reader was busy"
    if busy:
        print(f"yonglink: the WAL was not truncated ({detail}); the engine's next checkpoints overwrite it",
              file=sys.stderr)


async def _keys(args: argparse.Namespace, store: Any) -> int:
    from engine.store.rekey import census

    found = await store.read(census)
    ring = list(store.cipher.key_ids())
    if args.json:
        print(json.dumps({"current": store.cipher.current_id, "keyring": ring, "stored": found}, indent=2))
        return 0
    print(f"current key: {store.cipher.current_id or '(encryption off)'}")
    print(f"keyring:     {', '.join(ring) or '(none)'}")
    for column, counts in found.items():
        parts = [f"{kid}{'' if kid in ring or kid == 'plaintext' else ' (NOT IN KEYRING)'}: {n}"
                 for kid, n in sorted(counts.items())]
        print(f"{column:<24} {'; '.join(parts) or 'empty'}")
    return 0


async def _rekey(args: argparse.Namespace, store: Any) -> int:
    from engine.store.cipher import Keyring
    from engine.store.rekey import rekey as run_rekey

    if not isinstance(store.cipher, Keyring):
        print("yonglink: engine.store.encryption is not configured: nothing to re-seal with",
              file=sys.stderr)
        return 1

    def progress(column: str, done: int) -> None:
        if not args.json:
            print(f"\r{column}: {done} re-sealed", end="", file=sys.stderr, flush=True)

    report = await run_rekey(store, store.cipher, batch=max(1, args.batch), progress=progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(file=sys.stderr)
        for column, n in report.resealed.items():
            print(f"{column:<24} {n} re-sealed with key {store.cipher.current_id}")
        for column, bad in report.unreadable.items():
            for kid, n in bad.items():
                print(f"{column:<24} {n} sealed with key id {kid}, not in the keyring: left as they are")
    return 3 if report.unreadable else 0
