"""Cache entries as bytes: msgpack plus a few extension types, never pickle.

Anything read from the cache came from a shared server that other programs (or an
older mlscale) can write to, so decoding must be safe on hostile input: it builds
only plain values, numpy arrays of fixed-size dtypes and a handful of standard
library types, and it raises :class:`CorruptEntry` on anything else. Callers treat
that as a miss and count it.

Entry layout (all integers little-endian)::

    offset 0   magic      b"\\xc1ML"  (0xc1 is the one byte msgpack never emits, so no
                          bare msgpack, JSON, pickle or text value starts with it)
    offset 3   version    u8, FORMAT_VERSION; another version is a miss, not a guess
    offset 4   crc32      u32 over every byte from offset 8 to the end
    offset 8   length     u32, length of the msgpack payload
    offset 12  payload    msgpack; numpy arrays are ext type 1 holding only dtype+shape
    ...        buffers    the arrays' raw C-order bytes, in the order the arrays appear
                          in the payload, each starting on a 16-byte boundary

Keeping array bytes out of the msgpack payload lets :func:`decode` return arrays
that are read-only views of the entry itself: no copy, whatever their size. The
checksum costs about 0.25 ms per MB encoded or decoded (zlib crc32); it turns a
truncated, bit-flipped or foreign entry into a counted miss instead of a wrong value.

What round-trips, exactly (type and value):

- ``None``, ``bool``, ``int`` (any size), ``float`` (NaN and signed zero too), ``str``,
  ``bytes``; ``bytearray`` and ``memoryview`` come back as ``bytes``.
- ``list`` stays ``list`` and ``tuple`` stays ``tuple`` (tuples are an extension type,
  so a tuple used as a dict key still works after decoding); ``dict`` keeps its key
  order and its key types (int, tuple, ... keys are allowed).
- ``decimal.Decimal`` exactly (digits, exponent, sign, NaN/Infinity), ``uuid.UUID``.
- ``datetime.datetime`` / ``datetime.time`` naive, with a fixed-offset
  ``datetime.timezone`` (the offset is kept, a custom zone name is not) or with a
  ``zoneinfo.ZoneInfo`` (its key is kept); ``fold`` is kept. ``datetime.date`` and
  ``datetime.timedelta``.
- ``numpy.ndarray`` of bool, integer, float, complex, datetime64, timedelta64, bytes
  (``S``), unicode (``U``) and plain void (``V``) dtypes, byte order included. A
  Fortran-ordered or strided array comes back C-ordered with equal values. Decoded
  arrays are read-only (they are views of the entry). numpy scalars (``np.float32(1)``)
  come back as numpy scalars of the same dtype.

Refused with :class:`UnsupportedValue` (nothing is silently converted): object and
structured dtypes, ndarray subclasses (masked arrays, matrices), subclasses of the
built-in types (IntEnum, namedtuple, OrderedDict, ...), sets, other tzinfo classes
(pytz, dateutil: use zoneinfo), strings with lone surrogates, nesting deeper than
msgpack's limit, and any other type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
import zlib
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import numpy as np

from ..errors import CacheError, CacheValueTooLarge

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "CorruptEntry",
    "UnsupportedValue",
    "decode",
    "encode",
]

MAGIC = b"\xc1ML"
"""First bytes of every entry mlscale writes."""

FORMAT_VERSION = 1
"""Entry format this module writes and reads; bumped on any incompatible change."""

_PREFIX = struct.Struct("<3sBI")  # magic, version, crc32 (of everything after it)
_HEADER = struct.Struct("<3sBII")  # the prefix, then the payload length
_ALIGN = 16  # array buffers start on this boundary (numpy's widest scalar alignment)

# Extension type codes. Code -1 is msgpack's timestamp, which mlscale never writes.
_EXT_NDARRAY = 1
_EXT_NPSCALAR = 2
_EXT_TUPLE = 3
_EXT_DECIMAL = 4
_EXT_DATETIME = 5
_EXT_DATE = 6
_EXT_TIME = 7
_EXT_TIMEDELTA = 8
_EXT_UUID = 9
_EXT_BIGINT = 10

# Fixed-size dtype kinds whose raw bytes are the whole value (no Python objects).
_ARRAY_KINDS = frozenset("biufcmMSUV")
_MAX_DTYPE_STR = 32
_MAX_NDIM = 64


class CorruptEntry(CacheError):
    """A cache entry is not one mlscale wrote in this format: wrong magic or format
    version, bad checksum, truncated, or malformed inside. Callers treat it as a miss
    and count it; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cache entry is corrupt or foreign: {reason}")
        self.reason = reason


class UnsupportedValue(CacheError, TypeError):
    """A value cannot be cached because the codec cannot encode it exactly (an object
    array, a custom class, a subclass of a built-in type, ...). Also a ``TypeError``,
    as ``json.dumps`` raises for the same mistake."""


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _pack(value: Any, default: Callable[[Any], Any] | None) -> bytes:
    # strict_types: subclasses of int/str/list/dict/tuple reach `default` instead of
    # being flattened into their base type (which would lose the tuple/list split).
    packed: bytes = msgpack.packb(value, default=default, strict_types=True, use_bin_type=True)
    return packed


def _check_array_dtype(dtype: np.dtype[Any]) -> str | None:
    """Why ``dtype`` cannot be stored as raw bytes, or None if it can."""
    if dtype.hasobject:
        return f"dtype {dtype} holds Python objects (never pickled)"
    if dtype.fields is not None or dtype.subdtype is not None:
        return f"structured dtype {dtype} is not supported"
    if dtype.kind not in _ARRAY_KINDS:
        return f"dtype {dtype} is not supported"
    return None


def _tz_out(tz: dt.tzinfo | None, value: object) -> int | str | None:
    if tz is None:
        return None
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None)
        return (offset.days * 86_400 + offset.seconds) * 1_000_000 + offset.microseconds
    if isinstance(tz, ZoneInfo) and tz.key:
        return str(tz.key)
    raise UnsupportedValue(
        f"cannot cache {value!r}: tzinfo {type(tz).__name__} cannot be restored exactly; "
        "use datetime.timezone or zoneinfo.ZoneInfo"
    )


def _tz_in(tz: object) -> dt.tzinfo | None:
    if tz is None:
        return None
    if type(tz) is int:
        return dt.UTC if tz == 0 else dt.timezone(dt.timedelta(microseconds=tz))
    if type(tz) is str:
        return ZoneInfo(tz)
    raise ValueError(f"bad tz field {tz!r}")


class _Encoder:
    """One encode call: collects array buffers in payload order."""

    __slots__ = ("buffers", "end")

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []  # raw bytes of each non-empty array
        self.end = 0  # bytes of the buffer area so far, padding included

    def _add_buffer(self, arr: np.ndarray[Any, Any]) -> None:
        if arr.nbytes == 0:
            return
        start = _align(self.end)
        if start != self.end:
            self.buffers.append(memoryview(bytes(start - self.end)))
        carr = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
        self.buffers.append(carr.reshape(-1).view(np.uint8).data)
        self.end = start + arr.nbytes

    def default(self, obj: Any) -> msgpack.ExtType:
        kind = type(obj)
        if kind is tuple:
            return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj), self.default))
        if kind is np.ndarray:
            reason = _check_array_dtype(obj.dtype)
            if reason is not None:
                raise UnsupportedValue(f"cannot cache array: {reason}")
            head = _pack([obj.dtype.str, list(obj.shape)], self.default)
            self._add_buffer(obj)
            return msgpack.ExtType(_EXT_NDARRAY, head)
        if isinstance(obj, np.generic):
            reason = _check_array_dtype(obj.dtype)
            if reason is not None:
                raise UnsupportedValue(f"cannot cache numpy scalar: {reason}")
            return msgpack.ExtType(_EXT_NPSCALAR, _pack([obj.dtype.str, obj.tobytes()], None))
        if kind is int:  # outside msgpack's 64-bit range
            size = (obj.bit_length() + 8) // 8  # +1 bit for the sign
            return msgpack.ExtType(_EXT_BIGINT, obj.to_bytes(size, "little", signed=True))
        if kind is decimal.Decimal:
            return msgpack.ExtType(_EXT_DECIMAL, str(obj).encode("ascii"))
        if kind is dt.datetime:
            fields = [obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second]
            fields += [obj.microsecond, obj.fold, _tz_out(obj.tzinfo, obj)]
            return msgpack.ExtType(_EXT_DATETIME, _pack(fields, None))
        if kind is dt.date:
            return msgpack.ExtType(_EXT_DATE, _pack([obj.year, obj.month, obj.day], None))
        if kind is dt.time:
            fields = [obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold]
            fields.append(_tz_out(obj.tzinfo, obj))
            return msgpack.ExtType(_EXT_TIME, _pack(fields, None))
        if kind is dt.timedelta:
            fields = [obj.days, obj.seconds, obj.microseconds]
            return msgpack.ExtType(_EXT_TIMEDELTA, _pack(fields, None))
        if kind is uuid.UUID:
            return msgpack.ExtType(_EXT_UUID, obj.bytes)
        raise UnsupportedValue(
            f"cannot cache a value of type {kind.__module__}.{kind.__qualname__}"
        )


def encode(value: Any, *, max_bytes: int | None = None) -> bytes:
    """Encode ``value`` into one cache entry (see the module docstring for the types).

    ``max_bytes`` bounds the whole entry, header included; a larger value raises
    :class:`~mlscale.errors.CacheValueTooLarge` before the entry is assembled.
    Raises :class:`UnsupportedValue` for a value that cannot round-trip exactly.
    """
    enc = _Encoder()
    try:
        payload = _pack(value, enc.default)
    except UnsupportedValue:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        # msgpack's own refusals: nesting too deep, lone surrogates in a str, ...
        raise UnsupportedValue(f"cannot cache value: {exc}") from exc
    head_end = _HEADER.size + len(payload)
    area = _align(head_end) if enc.buffers else head_end
    total = area + enc.end
    if max_bytes is not None and total > max_bytes:
        raise CacheValueTooLarge(
            f"value is {total:,} bytes encoded, over the cache limit of {max_bytes:,} bytes"
        )
    if len(payload) > 0xFFFFFFFF:
        raise CacheValueTooLarge(f"value's msgpack part is {len(payload):,} bytes, over 4 GiB")
    padding = bytes(area - head_end)
    body: list[bytes | memoryview] = [struct.pack("<I", len(payload)), payload, padding]
    body += enc.buffers
    crc = 0
    for part in body:
        crc = zlib.crc32(part, crc)
    return b"".join([_PREFIX.pack(MAGIC, FORMAT_VERSION, crc), *body])


class _Decoder:
    """One decode call: hands out array views of ``data`` in payload order."""

    __slots__ = ("cursor", "data")

    def __init__(self, data: memoryview, area: int) -> None:
        self.data = data
        self.cursor = area  # where the next array's bytes may start (before alignment)

    def unpack(self, payload: bytes | memoryview) -> Any:
        return msgpack.unpackb(
            payload,
            ext_hook=self.ext_hook,
            raw=False,
            strict_map_key=False,
            use_list=True,
            timestamp=3,  # msgpack's own ext -1 (never written here): a plain datetime
        )

    def _array(self, head: bytes) -> np.ndarray[Any, Any]:
        dtype_str, shape = msgpack.unpackb(head, raw=False, use_list=True)
        if type(dtype_str) is not str or len(dtype_str) > _MAX_DTYPE_STR:
            raise ValueError("bad dtype field")
        if type(shape) is not list or len(shape) > _MAX_NDIM:
            raise ValueError("bad shape field")
        if any(type(n) is not int or n < 0 for n in shape):
            raise ValueError("bad shape field")
        dtype = np.dtype(dtype_str)
        reason = _check_array_dtype(dtype)
        if reason is not None:
            raise ValueError(reason)
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        if nbytes == 0:
            arr = np.zeros(tuple(shape), dtype=dtype)
            arr.flags.writeable = False
            return arr
        start = _align(self.cursor)
        end = start + nbytes
        if end > len(self.data):
            raise ValueError("array bytes run past the end of the entry")
        self.cursor = end
        flat = np.frombuffer(self.data, dtype=dtype, count=count, offset=start)
        flat.flags.writeable = False
        return flat.reshape(tuple(shape))

    def ext_hook(self, code: int, data: bytes) -> Any:
        if code == _EXT_TUPLE:
            inner = self.unpack(data)
            if type(inner) is not list:
                raise ValueError("bad tuple")
            return tuple(inner)
        if code == _EXT_NDARRAY:
            return self._array(data)
        if code == _EXT_NPSCALAR:
            dtype_str, raw = msgpack.unpackb(data, raw=False)
            dtype = np.dtype(dtype_str)
            reason = _check_array_dtype(dtype)
            if reason is not None or type(raw) is not bytes or len(raw) != dtype.itemsize:
                raise ValueError("bad numpy scalar")
            if dtype.itemsize == 0:
                return np.zeros(1, dtype=dtype)[0]
            return np.frombuffer(raw, dtype=dtype, count=1)[0]
        if code == _EXT_BIGINT:
            return int.from_bytes(data, "little", signed=True)
        if code == _EXT_DECIMAL:
            return decimal.Decimal(data.decode("ascii"))
        if code == _EXT_DATETIME:
            y, mo, d, h, mi, s, us, fold, tz = msgpack.unpackb(data, raw=False)
            return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=_tz_in(tz), fold=fold)
        if code == _EXT_DATE:
            y, mo, d = msgpack.unpackb(data)
            return dt.date(y, mo, d)
        if code == _EXT_TIME:
            h, mi, s, us, fold, tz = msgpack.unpackb(data, raw=False)
            return dt.time(h, mi, s, us, tzinfo=_tz_in(tz), fold=fold)
        if code == _EXT_TIMEDELTA:
            days, secs, us = msgpack.unpackb(data)
            return dt.timedelta(days=days, seconds=secs, microseconds=us)
        if code == _EXT_UUID:
            return uuid.UUID(bytes=data)
        raise ValueError(f"unknown extension type {code}")


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one entry written by :func:`encode`.

    Arrays in the result are read-only views of ``data`` (no copy), so they keep
    ``data`` alive. Raises :class:`CorruptEntry`, and nothing else, for any input
    that is not an intact entry of this format version.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1 or not view.c_contiguous:
        view = memoryview(view.tobytes())
    if len(view) < _HEADER.size:
        raise CorruptEntry(f"{len(view)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, version, crc, length = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise CorruptEntry("not an mlscale entry (bad magic)")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"format version {version}, this mlscale reads {FORMAT_VERSION}")
    if zlib.crc32(view[8:]) != crc:
        raise CorruptEntry("checksum mismatch (truncated or damaged)")
    head_end = _HEADER.size + length
    if head_end > len(view):
        raise CorruptEntry("payload runs past the end of the entry")
    decoder = _Decoder(view, head_end)
    try:
        value = decoder.unpack(view[_HEADER.size : head_end])
    except Exception as exc:  # anything msgpack, numpy or a constructor raised
        raise CorruptEntry(f"malformed payload ({type(exc).__name__}: {exc})") from exc
    if decoder.cursor != len(view):
        raise CorruptEntry("entry has bytes no value accounts for")
    return value
