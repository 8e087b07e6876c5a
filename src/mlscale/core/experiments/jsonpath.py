"""SQL/JSON path text for one path and one predicate (lax mode), the text bound as a
``jsonpath`` parameter (never pasted into SQL).

Keys and strings are written as JSON string literals (``json.dumps``, ASCII with
``\\uXXXX`` escapes), which jsonpath reads the same way, so a key or a value cannot
end the literal early. Lax mode gives MongoDB's array rules: a key applied to an
array applies to its elements (one level), a filter applied to an array tests its
elements; ``@.type() != "array"`` keeps an array nested in an array from being
unwrapped a second time (MongoDB does not look inside it).
"""

from __future__ import annotations

import json
import math

from .query import Path

__all__ = ["ELEMENTS", "literal", "path_text", "predicate"]

ELEMENTS = "$[*]"  # the candidates of a path's values gathered in an array (indexed form)


def path_text(path: Path) -> str:
    """``$."a"."b"`` for path ``("a", "b")``."""
    return "$" + "".join("." + json.dumps(key) for key in path)


def literal(value: bool | int | float | str | None) -> str:
    """A jsonpath literal for a scalar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a JSON number")
        return repr(value) if value != int(value) or abs(value) >= 1e16 else str(int(value))
    return json.dumps(value)


def predicate(root: str, op: str, values: tuple[bool | int | float | str | None, ...]) -> str:
    """``root ? (@.type() != "array" && (@ op v1 || @ op v2 ...))``: some candidate
    under ``root`` compares so with one of ``values``."""
    tests = " || ".join(f"@ {op} {literal(v)}" for v in values)
    return f'{root} ? (@.type() != "array" && ({tests}))'
