"""One chunk's value out of a binary COPY stream (core/checkpoints/wire.py)."""

from __future__ import annotations

import pytest

from mlscale.core.checkpoints.wire import WireError, single_value
from mlscale.core.copydecode import SIGNATURE

HEAD = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"


def row(value: bytes) -> bytes:
    return b"\x00\x01" + len(value).to_bytes(4, "big") + value


def test_the_value_is_a_view_of_the_piece_that_holds_it() -> None:
    value = bytes(range(256)) * 40
    piece = bytearray(HEAD + row(value))
    got = single_value([piece, TRAILER])
    assert got is not None and bytes(got) == value
    piece[len(HEAD) + 6] ^= 0xFF  # a view, not a copy: it sees the buffer change
    assert got[0] == value[0] ^ 0xFF


def test_no_row_is_none() -> None:
    assert single_value([HEAD + TRAILER]) is None
    assert single_value([HEAD, TRAILER]) is None


@pytest.mark.parametrize("cut", [3, len(HEAD), len(HEAD) + 4, len(HEAD) + 9, -1])
def test_a_stream_cut_anywhere_is_joined(cut: int) -> None:
    stream = HEAD + row(b"abcdefgh" * 5) + TRAILER
    got = single_value([stream[:cut], stream[cut:]])
    assert got is not None and bytes(got) == b"abcdefgh" * 5


def test_a_header_extension_is_skipped() -> None:
    head = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03xyz"
    got = single_value([head + row(b"v"), TRAILER])
    assert got is not None and bytes(got) == b"v"


@pytest.mark.parametrize(
    ("pieces", "why"),
    [
        ([], "empty"),
        ([b"PGCOPX\n\xff\r\n\x00" + HEAD[11:] + TRAILER], "signature"),
        ([HEAD + b"\x00\x02" + TRAILER], "2 fields"),
        ([HEAD + b"\x00\x01\xff\xff\xff\xff", TRAILER], "NULL"),
        ([HEAD + row(b"abc")[:-1]], "ends"),
        ([HEAD + row(b"abc") + row(b"def") + TRAILER], "more than one row"),
        ([HEAD + row(b"abc")], "no trailer"),
    ],
)
def test_malformed_streams_raise(pieces: list[bytes], why: str) -> None:
    with pytest.raises(WireError, match=why):
        single_value(pieces)
