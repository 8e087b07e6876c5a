"""Typed results as plain data for JSON: what every result's ``to_dict()`` uses. No I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from .causal import CausalToken

__all__ = ["plain", "plain_dict"]


def plain(value: Any) -> Any:
    """``value`` with datetimes and dates as ISO strings, uuids and causal tokens as
    strings, dataclasses as dicts, mappings as dicts and sequences as lists, nested."""
    if isinstance(value, CausalToken):
        return value.to_string()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_dict(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def plain_dict(obj: Any) -> dict[str, Any]:
    """The fields of dataclass instance ``obj`` as plain data (see :func:`plain`)."""
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
