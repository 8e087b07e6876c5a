"""What the model registry accepts: names, aliases, versions, actors, metadata, metrics,
lineage references. Every check raises a :class:`~mlscale.errors.RegistryError` that
names the field and says what is allowed, before anything is written.

Rules, and why:

- a model name is 1 to 128 characters of letters, digits, ``_``, ``.`` and ``-``,
  starting with a letter or digit: it travels in URL paths (the HTTP service) and shell
  arguments unquoted, so no ``/``, spaces or control characters;
- an alias is 1 to 64 lower-case letters, digits, ``_`` and ``-``, starting with a
  letter; ``latest`` and ``v<digits>`` are reserved (they read as version selectors);
  ``staging``, ``production`` and ``archived`` are the well-known ones;
- metadata is a JSON object of at most 64 KiB encoded (no NaN or infinity: JSON has
  none), metrics a mapping of name -> finite number, tags a mapping of str -> str;
- a lineage reference is ``view`` or ``view:version`` (``view@version`` is read the
  same), with the feature store's view-name rule; it is kept as written, normalised to
  the ``:`` form.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import RegistryError

__all__ = [
    "ARCHIVED",
    "MAX_METADATA_BYTES",
    "PRODUCTION",
    "STAGING",
    "WELL_KNOWN_ALIASES",
    "check_actor",
    "check_alias",
    "check_artifact_uri",
    "check_description",
    "check_expected_revision",
    "check_feature_views",
    "check_metadata",
    "check_metrics",
    "check_model_name",
    "check_reason",
    "check_run_id",
    "check_tags",
    "check_version",
    "parse_view_ref",
]

STAGING = "staging"
PRODUCTION = "production"
ARCHIVED = "archived"
WELL_KNOWN_ALIASES = (STAGING, PRODUCTION, ARCHIVED)

MAX_METADATA_BYTES = 64 * 1024
MAX_URI = 2048
MAX_TEXT = 128  # actor, run id, metric and tag names
MAX_REASON = 2000
MAX_DESCRIPTION = 4000
MAX_TAGS = 100
MAX_METRICS = 1000
MAX_VIEWS = 100
MAX_VERSION = 2**31 - 1  # the int4 column

_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_ALIAS = re.compile(r"[a-z][a-z0-9_\-]{0,63}")
_RESERVED_ALIAS = re.compile(r"latest|v[0-9]+")
_VIEW = re.compile(r"([a-z][a-z0-9_]{0,39})(?:[:@]([0-9]{1,9}))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_model_name(value: object) -> str:
    """``value`` if it is a valid model name (see the module docstring)."""
    if not isinstance(value, str) or not _MODEL.fullmatch(value):
        raise RegistryError(
            f"model name {value!r} is not valid: use 1 to 128 letters, digits, '_', '.' "
            "or '-', starting with a letter or digit"
        )
    return value


def check_alias(value: object) -> str:
    """``value`` if it is a valid alias (e.g. ``production``; see the module docstring)."""
    if not isinstance(value, str) or not _ALIAS.fullmatch(value):
        raise RegistryError(
            f"alias {value!r} is not valid: use 1 to 64 lower-case letters, digits, '_' or "
            "'-', starting with a letter (e.g. staging, production, archived)"
        )
    if _RESERVED_ALIAS.fullmatch(value):
        raise RegistryError(
            f"alias {value!r} is reserved (it reads as a version selector): pick another name"
        )
    return value


def check_version(value: object, what: str = "version") -> int:
    """``value`` if it is a version number (an int >= 1; bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise RegistryError(f"{what} must be a whole number >= 1, not {value!r}")
    return value


def check_expected_revision(value: object) -> int | None:
    """``value`` if it is None (no check) or a revision (an int >= 0; 0: never set)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RegistryError(
            f"expected_revision must be None or a whole number >= 0 (0: the alias was never "
            f"set), not {value!r}"
        )
    return value


def _text(value: object, what: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{what} must be a str, not {type(value).__name__}")
    if not empty and not value.strip():
        raise RegistryError(f"{what} must not be empty")
    if len(value) > limit:
        raise RegistryError(f"{what} is {len(value)} characters long; at most {limit} allowed")
    return value


def check_actor(value: object) -> str:
    """``value`` if it names who acts (1 to 128 characters, no control characters)."""
    text = _text(value, "actor", MAX_TEXT)
    if _CONTROL.search(text):
        raise RegistryError(f"actor {text!r} contains control characters")
    return text


def check_reason(value: object) -> str:
    """``value`` if it is a transition's reason (may be empty; at most 2,000 characters)."""
    return _text(value, "reason", MAX_REASON, empty=True)


def check_description(value: object) -> str:
    """``value`` if it is a model's description (may be empty; at most 4,000 characters)."""
    return _text(value, "description", MAX_DESCRIPTION, empty=True)


def check_artifact_uri(value: object) -> str:
    """``value`` if it is an artifact URI (1 to 2,048 characters, no control characters)."""
    text = _text(value, "artifact_uri", MAX_URI)
    if _CONTROL.search(text) or text != text.strip():
        raise RegistryError(
            f"artifact_uri {text!r} has control characters or surrounding whitespace"
        )
    return text


def check_run_id(value: object) -> str | None:
    """``value`` if it is None or a run id (1 to 128 characters)."""
    if value is None:
        return None
    text = _text(value, "run_id", MAX_TEXT)
    if _CONTROL.search(text):
        raise RegistryError(f"run_id {text!r} contains control characters")
    return text


def check_tags(value: object) -> dict[str, str]:
    """``value`` (None: no tags) as a dict of str -> str, at most 100 of them."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RegistryError(f"tags must be a mapping of str -> str, not {type(value).__name__}")
    if len(value) > MAX_TAGS:
        raise RegistryError(f"{len(value)} tags; at most {MAX_TAGS} allowed")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or len(k) > MAX_TEXT:
            raise RegistryError(f"tag name {k!r} must be a str of 1 to {MAX_TEXT} characters")
        if not isinstance(v, str) or len(v) > MAX_DESCRIPTION:
            raise RegistryError(
                f"tag {k!r}: its value must be a str of at most {MAX_DESCRIPTION} characters, "
                f"not {v!r}"
            )
        out[k] = v
    return out


def check_metadata(value: object) -> dict[str, Any]:
    """``value`` (None: empty) if it is a JSON object of at most 64 KiB encoded."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RegistryError(f"metadata must be a JSON object (a dict), not {type(value).__name__}")
    try:
        text = json.dumps(dict(value), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"metadata is not JSON: {exc}") from exc
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise RegistryError(
            f"metadata is {len(text.encode()):,} bytes as JSON; at most "
            f"{MAX_METADATA_BYTES:,} allowed (store big things at the artifact URI)"
        )
    loaded: dict[str, Any] = json.loads(text)  # what the database will give back
    return loaded


def check_metrics(value: object) -> dict[str, float]:
    """``value`` (None: empty) as a dict of metric name -> finite float."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RegistryError(
            f"metrics must be a mapping of name -> number, not {type(value).__name__}"
        )
    if len(value) > MAX_METRICS:
        raise RegistryError(f"{len(value)} metrics; at most {MAX_METRICS} allowed")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or len(k) > MAX_TEXT:
            raise RegistryError(f"metric name {k!r} must be a str of 1 to {MAX_TEXT} characters")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise RegistryError(f"metric {k!r} must be a number, not {v!r}")
        number = float(v)
        if not math.isfinite(number):
            raise RegistryError(f"metric {k!r} is {number}: only finite numbers are stored")
        out[k] = number
    return out


def parse_view_ref(value: object) -> tuple[str, int | None]:
    """A lineage reference ``view`` or ``view:version`` (or ``view@version``) as
    (view name, version or None)."""
    match = _VIEW.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise RegistryError(
            f"feature view reference {value!r} is not valid: write 'view' or 'view:version' "
            "(a view name is 1 to 40 lower-case letters, digits or '_', starting with a letter)"
        )
    version = match.group(2)
    if version is not None and int(version) < 1:
        raise RegistryError(f"feature view reference {value!r}: versions start at 1")
    return match.group(1), None if version is None else int(version)


def check_feature_views(value: object) -> tuple[str, ...]:
    """``value`` (a sequence of references; a lone str is refused) normalised to
    ``view`` / ``view:version`` strings, duplicates dropped, order kept."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise RegistryError(
            "feature_views must be a sequence of references like ['user_stats', 'clicks:2'], "
            f"not {value!r}"
        )
    refs: list[str] = []
    for item in value:
        name, version = parse_view_ref(item)
        ref = name if version is None else f"{name}:{version}"
        if ref not in refs:
            refs.append(ref)
    if len(refs) > MAX_VIEWS:
        raise RegistryError(f"{len(refs)} feature views; at most {MAX_VIEWS} allowed")
    return tuple(refs)
