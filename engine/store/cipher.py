"""Payloads at rest: AES-256-GCM sealing of message content with a keyring that names each key by id.

What the store seals (issue #17): `messages.raw`, `deliveries.payload`, `results.record` and
`export_records.payload`. A sealed value is

    b"\\x00YLK" | version 0x01 | key id (4 bytes) | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)

(`seal_text` wraps the same in ``ylk1:`` + base64 for TEXT columns). The header (magic, version, key id)
is the GCM associated data, so a value cannot be passed off as sealed by another key of the ring. The
key id is the first 4 bytes of SHA-256 over a label and the key (`key_id`): it identifies a key without
revealing it, and lets a row say which key sealed it, so a keyring of the current key plus previous ones
reads every row while only the current key writes (rotation: docs/security.md).

Nonces are 96 random bits per seal (NIST SP 800-38D §8.2.2): safe for 2^32 seals per key, which is why
docs/security.md asks for a rotation well before that (and yearly).

A value without the magic is a row written before encryption was turned on and is returned as it is.
HL7 v2 starts with `MSH`/`FHS`/`BHS`, JSON with `{` or `[`: none starts with a NUL byte. (A *rejected*
input is stored whatever its bytes; one starting with the magic, stored while encryption was off, reads
as an unreadable sealed value - it was garbage either way.)

`PLAIN` is the cipher when encryption is off; the hot paths then get no `seal` at all (`seal=None`) and
store the bytes as they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import KeyringError, TamperedPayloadError, UnknownKeyError

if TYPE_CHECKING:
    from engine.config import EncryptionConfig, KeySource

MAGIC = b"\x00YLK"
"""First bytes of every sealed value (a NUL: no HL7 v2 or JSON payload starts with one)."""
VERSION = 1
KEY_ID_BYTES = 4
NONCE_BYTES = 12
"""96-bit GCM nonce, the size NIST SP 800-38D recommends."""
HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES
OVERHEAD = HEADER_BYTES + NONCE_BYTES + 16
"""Bytes a sealed value adds to its plaintext (header, nonce, 16-byte tag): 37."""
KEY_BYTES = 32
"""AES-256."""
TEXT_PREFIX = "ylk1:"
"""A sealed TEXT column value (`results.record`): this prefix and the sealed bytes in base64."""
_KEY_ID_LABEL = b"yonglink store key id\x00"


def key_id(key: bytes) -> str:
    """The 8-hex-digit id of a key (what errors, `yonglink store keys` and each sealed value carry)."""
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_BYTES].hex()


def is_sealed(value: bytes | None) -> bool:
    """True for a value `seal` produced (whatever key); False for plaintext and None."""
    return value is not None and value[:4] == MAGIC


def sealed_key_id(value: bytes) -> str | None:
    """The key id a sealed value names, or None for plaintext."""
    if not is_sealed(value) or len(value) < HEADER_BYTES:
        return None
    return value[len(MAGIC) + 1:HEADER_BYTES].hex()


class PayloadCipher:
    """Encryption off: `seal` keeps plaintext; `unseal` passes plaintext and refuses sealed values."""

    enabled = False
    current_id: str | None = None

    def seal(self, data: bytes) -> bytes:
        """The value to store for `data`."""
        return data

    def unseal(self, data: bytes) -> bytes:
        """The plaintext of a stored value; raises UnknownKeyError / TamperedPayloadError."""
        if data[:4] == MAGIC:
            raise UnknownKeyError(sealed_key_id(data) or "?", known=())
        return data

    def seal_text(self, text: str) -> str:
        """`seal` for a TEXT column."""
        return text

    def unseal_text(self, text: str) -> str:
        """`unseal` for a TEXT column."""
        if text.startswith(TEXT_PREFIX):
            return self.unseal(_from_text(text)).decode("utf-8")
        return text

    def key_ids(self) -> tuple[str, ...]:
        """Ids of the keys that can read (current first)."""
        return ()


PLAIN = PayloadCipher()
"""The cipher of a store without `engine.store.encryption`."""


class Keyring(PayloadCipher):
    """The current key (seals and reads) and previous keys (read only), each known by its id."""

    enabled = True

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        for key in (current, *previous):
            if len(key) != KEY_BYTES:
                raise KeyringError(f"a store key must be {KEY_BYTES} bytes, got {len(key)}")
        self.current_id = key_id(current)
        self._header = MAGIC + bytes([VERSION]) + bytes.fromhex(self.current_id)
        self._sealer = AESGCM(current)
        self._readers: dict[bytes, AESGCM] = {}
        for key in (current, *previous):
            self._readers.setdefault(bytes.fromhex(key_id(key)), AESGCM(key))

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return self._header + nonce + self._sealer.encrypt(nonce, data, self._header)

    def unseal(self, data: bytes) -> bytes:
        if data[:4] != MAGIC:
            return data  # written before encryption was turned on
        if len(data) < OVERHEAD or data[4] != VERSION:
            raise TamperedPayloadError(sealed_key_id(data) or "?",
                                       f"not a sealed value of version {VERSION} (truncated or altered)")
        header = data[:HEADER_BYTES]
        reader = self._readers.get(header[len(MAGIC) + 1:])
        if reader is None:
            raise UnknownKeyError(header[len(MAGIC) + 1:].hex(), known=self.key_ids())
        nonce, body = data[HEADER_BYTES:HEADER_BYTES + NONCE_BYTES], data[HEADER_BYTES + NONCE_BYTES:]
        try:
            return reader.decrypt(nonce, body, header)
        except InvalidTag:
            raise TamperedPayloadError(header[len(MAGIC) + 1:].hex(),
                                       "authentication failed (the stored value was altered)") from None

    def seal_text(self, text: str) -> str:
        return TEXT_PREFIX + base64.b64encode(self.seal(text.encode("utf-8"))).decode("ascii")

    def key_ids(self) -> tuple[str, ...]:
        return tuple(k.hex() for k in self._readers)


def _from_text(text: str) -> bytes:
    try:
        return base64.b64decode(text[len(TEXT_PREFIX):], validate=True)
    except binascii.Error:
        raise TamperedPayloadError("?", "a sealed text value is not valid base64 (altered)") from None


# --- keys: where they come from ------------------------------------------------------------------


def read_key(source: KeySource) -> bytes:
    """The 32-byte key of `source`; KeyringError naming the file or variable when missing or invalid."""
    if source.file is not None:
        try:
            text = source.file.read_text(encoding="ascii")
        except FileNotFoundError:
            raise KeyringError(f"store key file {source.file} does not exist"
                               " (create one with `yonglink store keygen`)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyringError(f"cannot read store key file {source.file}: {exc}") from None
    elif source.env is not None:
        value = os.environ.get(source.env)
        if not value:
            raise KeyringError(f"environment variable {source.env} (a store key) is not set")
        text = value
    else:
        raise KeyringError("a store key needs key_file or key_env")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise KeyringError(f"{source.describe()} does not hold a base64 key") from None
    if len(key) != KEY_BYTES:
        raise KeyringError(f"{source.describe()} holds {len(key)} bytes; a store key is {KEY_BYTES}"
                           " bytes in base64 (`yonglink store keygen`)")
    return key


def load_cipher(settings: EncryptionConfig | None) -> PayloadCipher:
    """The cipher of `engine.store.encryption` (PLAIN without it); KeyringError when a key does not load:
    every key must, or the engine does not start."""
    if settings is None:
        return PLAIN
    return Keyring(read_key(settings.current), [read_key(s) for s in settings.previous])


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def key_text(key: bytes) -> str:
    """A key as its file (or environment variable) holds it."""
    return base64.b64encode(key).decode("ascii") + "\n"
