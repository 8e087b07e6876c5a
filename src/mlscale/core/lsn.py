"""PostgreSQL WAL positions (LSNs) as integers."""

from __future__ import annotations

__all__ = ["format_lsn", "lag_bytes", "parse_lsn"]


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` -> byte position in the WAL stream."""
    hi, sep, lo = text.partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(pos: int) -> str:
    """Byte position -> PostgreSQL's ``'X/Y'`` notation."""
    if pos < 0:
        raise ValueError(f"LSN must be non-negative, got {pos}")
    return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"


def lag_bytes(primary: int, replayed: int) -> int:
    """Bytes of WAL a replica has yet to replay; never negative.

    The two positions are sampled at different instants, so a replica sampled
    after its primary can appear ahead; that counts as no lag.
    """
    return max(0, primary - replayed)
