"""Encryption at rest (SM4-GCM) and keyed lookup hashes (HMAC-SM3) for personal data.

A `DataKey` holds a 16-byte SM4 key and a separate 32-byte hashing key, both derived from one
configured master secret, so the database can be searched by ID number without holding it.
"""

from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_LEN = 12
_TAG_LEN = 16
MIN_SECRET_BYTES = 16


class DecryptionError(ValueError):
    """Ciphertext that was not made with this key, or was changed since."""


@dataclass(frozen=True, slots=True)
class DataKey:
    """Keys derived from the master secret: one to encrypt, one to hash for lookups."""

    encryption_key: bytes
    lookup_key: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> DataKey:
        """Derive both keys from a master secret of at least 16 bytes (HKDF-SHA256)."""
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the data key secret must be at least {MIN_SECRET_BYTES} bytes")

        def derive(info: bytes, length: int) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)

        return cls(derive(b"expertcheckin sm4-gcm v1", 16), derive(b"expertcheckin lookup v1", 32))

    @classmethod
    def from_text(cls, text: str) -> DataKey:
        """A secret from configuration: base64 (44 characters for 32 bytes) or a long passphrase."""
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raw = b""
        return cls.from_secret(raw if len(raw) >= MIN_SECRET_BYTES else text.encode("utf-8"))

    @staticmethod
    def generate_text() -> str:
        """A fresh random secret, base64, for `platform-server keygen` and tests."""
        return base64.b64encode(os.urandom(32)).decode("ascii")


def encrypt(key: DataKey, plaintext: bytes, associated: bytes = b"") -> bytes:
    """SM4-GCM: version byte, 12-byte nonce, ciphertext, 16-byte tag."""
    nonce = os.urandom(_NONCE_LEN)
    encryptor = Cipher(algorithms.SM4(key.encryption_key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(associated)
    body = encryptor.update(plaintext) + encryptor.finalize()
    return _VERSION + nonce + body + encryptor.tag


def decrypt(key: DataKey, blob: bytes, associated: bytes = b"") -> bytes:
    """Reverse encrypt(); raise DecryptionError if the key or the bytes are wrong."""
    if len(blob) < 1 + _NONCE_LEN + _TAG_LEN or blob[:1] != _VERSION:
        raise DecryptionError("not an SM4-GCM blob of this format")
    nonce, body, tag = blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN : -_TAG_LEN], blob[-_TAG_LEN:]
    decryptor = Cipher(algorithms.SM4(key.encryption_key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(associated)
    try:
        return decryptor.update(body) + decryptor.finalize()
    except InvalidTag as err:
        raise DecryptionError("ciphertext does not authenticate with this key") from err


def encrypt_text(key: DataKey, text: str, associated: str = "") -> bytes:
    """encrypt() for UTF-8 text."""
    return encrypt(key, text.encode("utf-8"), associated.encode("utf-8"))


def decrypt_text(key: DataKey, blob: bytes, associated: str = "") -> str:
    """decrypt() for UTF-8 text."""
    return decrypt(key, blob, associated.encode("utf-8")).decode("utf-8")


def lookup_hash(key: DataKey, value: str) -> str:
    """Keyed hash (HMAC-SM3, hex) to find a row by ID or card number without storing it."""
    return hmac.new(key.lookup_key, value.encode("utf-8"), "sm3").hexdigest()
