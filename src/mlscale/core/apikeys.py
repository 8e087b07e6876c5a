"""API keys of the HTTP service: how a key is made, read back and checked (no I/O).

A key reads ``mlsk_<id>_<secret>``: ``id`` is 16 hex digits (64 random bits) that
name the key in the catalog and in ``mlscale keys list`` (never secret), ``secret``
43 base64url characters (256 random bits). The catalog keeps only a digest of the
whole key, so a copy of the catalog grants nothing.

Why a fast hash (SHA-256) and not bcrypt/scrypt/argon2: slow hashes exist to make
guessing a *low-entropy* password from its digest expensive. A key here carries 256
random bits; no amount of hashing speed makes guessing it feasible, so the slow
hash would only cost every uncached request ~50-100 ms of CPU for no security.
The digest is compared in constant time.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets

__all__ = [
    "KEY_PREFIX",
    "KeyScope",
    "ParsedKey",
    "digest",
    "grants",
    "new_key",
    "parse_key",
    "same_digest",
]

KEY_PREFIX = "mlsk_"
_KEY = re.compile(r"mlsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
# Digests are of this context plus the key, so they never equal a hash of the bare
# key made for another purpose.
_CONTEXT = b"mlscale api key v1\x00"


class KeyScope(enum.StrEnum):
    """What a key may do: ``read`` (reads only) or ``write`` (writes, and reads)."""

    READ = "read"
    WRITE = "write"


class ParsedKey:
    """A key's parts, once its shape is known right (see :func:`parse_key`)."""

    __slots__ = ("key_id", "text")

    def __init__(self, key_id: str, text: str) -> None:
        self.key_id = key_id
        self.text = text

    def __repr__(self) -> str:  # never the secret
        return f"ParsedKey({self.key_id!r})"


def new_key() -> tuple[str, str]:
    """A new key: (its id, the whole key text). Shown once, stored as :func:`digest`."""
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}"


def parse_key(text: str) -> ParsedKey | None:
    """The key ``text`` holds, or None when it does not have a key's shape."""
    if not _KEY.fullmatch(text):
        return None
    return ParsedKey(text[len(KEY_PREFIX) : len(KEY_PREFIX) + 16], text)


def digest(key_text: str) -> bytes:
    """The 32-byte SHA-256 digest stored for ``key_text`` (see the module docstring)."""
    return hashlib.sha256(_CONTEXT + key_text.encode()).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    """Whether two digests are equal, in time that does not depend on where they differ."""
    return hmac.compare_digest(a, b)


def grants(have: KeyScope, need: KeyScope) -> bool:
    """Whether a key of scope ``have`` may do what needs ``need`` (write implies read)."""
    return have is KeyScope.WRITE or need is KeyScope.READ
