"""Identification tokens: what IdentifyExpert vouched for, signed, so CompleteCheckIn needs no stored row.

A token carries the kiosk, invitation, expert and batch, the face result, its expiry and the id of the
invitation's newest check-in when it was issued; HMAC-SM3 under a key derived from the data key signs
it. CompleteCheckIn verifies the signature and expiry and refuses the token once the invitation has
a newer check-in than the token saw (so a token checks in at most once, even after an annulment).
Tokens hold no personal data (internal ids and a face distance), and are opaque to kiosks.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
import secrets
import struct
from dataclasses import dataclass

from personal_data.crypto import DataKey, purpose_key

PURPOSE = "identification token v1"
_VERSION = 1
_TAG_BYTES = 32  # HMAC-SM3 output
MAX_TOKEN_CHARS = 512  # a real token is about 130 characters; anything longer is not ours
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")  # strict: one spelling per token


@dataclass(frozen=True, slots=True)
class Identification:
    """The claims of a token (face_distance/threshold None when no face was compared)."""

    kiosk_id: str
    invitation_id: int
    expert_id: int
    batch_id: int
    face_distance: float | None
    face_threshold: float | None
    expires_at_us: int  # microseconds since the epoch, UTC
    last_check_in_id: int  # the invitation's newest check-in when issued, 0 for none


# version, invitation, expert, batch, expiry (µs), newest check-in, face compared?, distance,
# threshold, nonce; the kiosk id (UTF-8) follows.
_LAYOUT = struct.Struct("<BqqqqqBdd8s")


def issue(key: DataKey, claims: Identification) -> str:
    """The signed token: base64url(packed claims, nonce, kiosk id) "." base64url(HMAC-SM3 tag)."""
    face = claims.face_distance is not None and claims.face_threshold is not None
    body = _LAYOUT.pack(
        _VERSION,
        claims.invitation_id,
        claims.expert_id,
        claims.batch_id,
        claims.expires_at_us,
        claims.last_check_in_id,
        face,
        claims.face_distance if face else 0.0,
        claims.face_threshold if face else 0.0,
        secrets.token_bytes(8),  # two identifications never share a token
    ) + claims.kiosk_id.encode("utf-8")
    return f"{_b64(body)}.{_b64(_tag(key, body))}"


def verify(key: DataKey, token: str) -> Identification | None:
    """The claims of a token this platform signed with this key, or None (garbled, forged, other key)."""
    if len(token) > MAX_TOKEN_CHARS or _TOKEN.fullmatch(token) is None:
        return None
    body_text, tag_text = token.split(".")
    try:
        body, tag = _unb64(body_text), _unb64(tag_text)
    except (binascii.Error, ValueError):
        return None
    if len(tag) != _TAG_BYTES or not hmac.compare_digest(tag, _tag(key, body)):
        return None
    # Signed by us, so well-formed; still checked, as a key shared with another format would be.
    if len(body) <= _LAYOUT.size or body[0] != _VERSION:
        return None
    _version, invitation_id, expert_id, batch_id, expires, last, face, distance, threshold, _nonce = (
        _LAYOUT.unpack_from(body)
    )
    try:
        kiosk_id = body[_LAYOUT.size :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Identification(
        kiosk_id,
        invitation_id,
        expert_id,
        batch_id,
        distance if face else None,
        threshold if face else None,
        expires,
        last,
    )


@functools.lru_cache(maxsize=8)
def _keyed_mac(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod="sm3")


def _tag(key: DataKey, body: bytes) -> bytes:
    """HMAC-SM3 of the body: the keyed state is set up once per key and copied per token."""
    mac = _keyed_mac(purpose_key(key, PURPOSE)).copy()
    mac.update(body)
    return mac.digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
