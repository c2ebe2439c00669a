"""The keyring seals and opens stored content, names the key of every value, and refuses what it cannot
authenticate (engine/store/cipher.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EncryptionConfig, KeySource
from engine.errors import KeyringError, TamperedPayloadError, UnknownKeyError
from engine.store.cipher import (
    OVERHEAD,
    PLAIN,
    Keyring,
    is_sealed,
    key_id,
    key_text,
    load_cipher,
    new_key,
    sealed_key_id,
)

HL7 = "MSH|^~\\&|HIS|NBDYYY|||20240301||ADT^A01|C1|P|2.5.1\rPID|1||42^^^^PI||王^建国\r".encode()


def test_a_sealed_value_hides_the_plaintext_names_its_key_and_opens_again() -> None:
    key = new_key()
    ring = Keyring(key)
    sealed = ring.seal(HL7)
    assert "建国".encode() not in sealed and b"PID" not in sealed
    assert len(sealed) == len(HL7) + OVERHEAD
    assert sealed_key_id(sealed) == key_id(key) == ring.current_id
    assert ring.unseal(sealed) == HL7
    assert ring.seal(HL7) != sealed  # a fresh nonce per seal


def test_a_value_written_before_encryption_was_on_is_read_as_it_is() -> None:
    assert not is_sealed(HL7)
    assert Keyring(new_key()).unseal(HL7) == HL7


def test_a_previous_key_still_reads_while_only_the_current_key_seals() -> None:
    old, new = new_key(), new_key()
    written_before = Keyring(old).seal(HL7)
    ring = Keyring(new, [old])
    assert ring.unseal(written_before) == HL7
    assert sealed_key_id(ring.seal(HL7)) == key_id(new)
    assert ring.key_ids() == (key_id(new), key_id(old))


def test_a_value_of_a_key_not_in_the_keyring_is_refused_naming_that_key_id() -> None:
    lost = new_key()
    sealed = Keyring(lost).seal(HL7)
    with pytest.raises(UnknownKeyError) as err:
        Keyring(new_key()).unseal(sealed)
    assert err.value.key_id == key_id(lost)
    assert key_id(lost) in str(err.value) and "previous_keys" in str(err.value)
    with pytest.raises(UnknownKeyError, match="not configured"):  # encryption turned off
        PLAIN.unseal(sealed)


@pytest.mark.parametrize("where", [-1, 30, 6])  # the tag, the ciphertext, the key id in the header
def test_an_altered_value_fails_authentication(where: int) -> None:
    key = new_key()
    ring = Keyring(key, [new_key()])
    sealed = bytearray(ring.seal(HL7))
    sealed[where] ^= 0x01
    with pytest.raises((TamperedPayloadError, UnknownKeyError)) as err:
        ring.unseal(bytes(sealed))
    if where != 6:  # an altered key id names a key the keyring does not hold
        assert isinstance(err.value, TamperedPayloadError)
        assert "authentication failed" in str(err.value) and key_id(key) in str(err.value)


def test_a_truncated_value_is_reported_as_altered() -> None:
    ring = Keyring(new_key())
    with pytest.raises(TamperedPayloadError, match="truncated or altered"):
        ring.unseal(ring.seal(HL7)[:20])


def test_text_columns_are_sealed_as_text_and_open_again() -> None:
    ring = Keyring(new_key())
    record = '{"name": "王建国", "id_no": "330203198503120171"}'
    sealed = ring.seal_text(record)
    assert sealed.startswith("ylk1:") and "330203198503120171" not in sealed
    assert ring.unseal_text(sealed) == record
    assert ring.unseal_text(record) == record  # written before encryption was on


def test_keys_load_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = new_key(), new_key()
    (tmp_path / "a.key").write_text(key_text(a))
    monkeypatch.setenv("OLD_STORE_KEY", key_text(b).strip())
    ring = load_cipher(EncryptionConfig(current=KeySource(file=tmp_path / "a.key"),
                                        previous=(KeySource(env="OLD_STORE_KEY"),)))
    assert ring.current_id == key_id(a) and ring.key_ids() == (key_id(a), key_id(b))
    assert load_cipher(None) is PLAIN


@pytest.mark.parametrize(("content", "says"), [
    (None, "does not exist"),
    ("not base64 at all!", "does not hold a base64 key"),
    ("c2hvcnQ=", "holds 5 bytes"),
])
def test_a_missing_or_invalid_key_file_is_a_clear_error_naming_it(tmp_path: Path, content: str | None,
                                                                  says: str) -> None:
    path = tmp_path / "store.key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KeyringError) as err:
        load_cipher(EncryptionConfig(current=KeySource(file=path)))
    assert says in str(err.value) and str(path) in str(err.value)


def test_an_unset_key_variable_is_a_clear_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YONGLINK_STORE_KEY", raising=False)
    with pytest.raises(KeyringError, match="YONGLINK_STORE_KEY"):
        load_cipher(EncryptionConfig(current=KeySource(env="YONGLINK_STORE_KEY")))
