"""psycopg placeholders to ``$n`` parameters and back.

The statement text a psycopg user writes has ``%s``/``%b``/``%t`` or ``%(name)s``
placeholders and ``%%`` for a literal ``%`` -- but only when parameters are passed;
with ``params=None`` psycopg sends the text untouched. :func:`number_placeholders`
reads the text exactly the way psycopg's ``_split_query`` does (over the whole text,
string literals included, because that is what psycopg sends), so the keys read
here are the values the server will compare. ``classify._numbered_placeholders``
looks only at operator tokens, which is right for a read/write verdict but would
leave ``'50%%'`` doubled in a literal, and it does not say which ``$n`` is which
name. A text with ``$n`` parameters and no psycopg placeholder is taken as written
for psycopg's raw cursors (``$n`` is ``params[n - 1]``).

:func:`render` goes back: ``$n`` tokens (found by PostgreSQL's own scanner) become
``%s`` in order, with the values in that order, and every other ``%`` is doubled.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pglast.parser import ParseError, scan

from .results import Params

__all__ = ["Numbered", "PlaceholderError", "Style", "number_placeholders", "render"]

# psycopg's own pattern (psycopg/_queries.py, ``_re_placeholder``): a '%' and a name
# in parentheses followed by a format, or any one character.
_PSYCOPG = re.compile(r"%(?:(?:\(([^)]+)\).)|(?:.))")


class Style(enum.Enum):
    """How the caller's text names its parameters."""

    NONE = "no parameters"  # params=None: psycopg sends the text as is
    PSYCOPG = "psycopg"  # %s / %(name)s, '%%' for '%'
    DOLLAR = "dollar"  # $1, $2 ... (psycopg's raw cursors)


class PlaceholderError(ValueError):
    """The text has a placeholder psycopg would refuse."""


@dataclass(frozen=True, slots=True)
class Numbered:
    """The text as the server parses it, and where each ``$n`` takes its value.

    ``keys[n - 1]`` is the params index (int) or name (str) of ``$n``;
    ``formats[n - 1]`` its psycopg format letter (``s``, ``b`` or ``t``).
    """

    text: str
    style: Style
    keys: tuple[int | str, ...] = ()
    formats: tuple[str, ...] = ()

    @property
    def named(self) -> bool:
        return bool(self.keys) and isinstance(self.keys[0], str)


def number_placeholders(sql: str, with_params: bool) -> Numbered:
    """``sql`` with psycopg's placeholders as ``$n``, as psycopg would send it.

    Raises :class:`PlaceholderError` where psycopg would raise (unless the text is
    written for a raw cursor: ``$n`` parameters and no psycopg placeholder).
    """
    if not with_params:
        return Numbered(sql, Style.NONE)
    try:
        numbered = _psycopg(sql)
    except PlaceholderError:
        highest = _highest_dollar(sql)
        if highest == 0:
            raise
        return _dollar(sql, highest)
    if numbered.keys or "$" not in sql:
        return numbered
    highest = _highest_dollar(sql)
    return numbered if highest == 0 else _dollar(sql, highest)


def _dollar(sql: str, highest: int) -> Numbered:
    return Numbered(sql, Style.DOLLAR, tuple(range(highest)), ("s",) * highest)


def _psycopg(sql: str) -> Numbered:
    out: list[str] = []
    keys: list[int | str] = []
    formats: list[str] = []
    numbers: dict[str, int] = {}
    kind: type | None = None
    cur = 0
    for m in _PSYCOPG.finditer(sql):
        out.append(sql[cur : m.start()])
        cur = m.end()
        ph = m.group(0)
        if ph == "%%":
            out.append("%")
            continue
        if ph == "%(":
            raise PlaceholderError(f"incomplete placeholder: {sql[m.start() :].split()[0]!r}")
        if ph == "% ":
            raise PlaceholderError(
                "incomplete placeholder: '%'; to use '%' as an operator, double it: '%%'"
            )
        fmt = ph[-1]
        if fmt not in "sbt":
            raise PlaceholderError(f"only '%s', '%b', '%t' are placeholders, got {ph!r}")
        name = m.group(1)
        this = int if name is None else str
        if kind is None:
            kind = this
        elif kind is not this:
            raise PlaceholderError("positional and named placeholders cannot be mixed")
        if name is None:
            keys.append(len(keys))
            formats.append(fmt)
            out.append(f"${len(keys)}")
            continue
        number = numbers.get(name)
        if number is None:
            keys.append(name)
            formats.append(fmt)
            number = numbers[name] = len(keys)
        elif formats[number - 1] != fmt:
            raise PlaceholderError(f"placeholder {name!r} cannot have different formats")
        out.append(f"${number}")
    out.append(sql[cur:])
    return Numbered("".join(out), Style.PSYCOPG, tuple(keys), tuple(formats))


def _highest_dollar(sql: str) -> int:
    try:
        tokens = scan(sql)
    except ParseError:
        return 0
    return max((int(sql[t.start + 1 : t.end + 1]) for t in tokens if t.name == "PARAM"), default=0)


def render(text: str, numbered: Numbered, value_of: Callable[[int], Any]) -> tuple[str, Params]:
    """``text`` (with ``$n`` parameters) in the caller's style, and its params in order.

    ``value_of(n)`` gives the value for ``$n``; a number past ``numbered.keys`` is a
    parameter the rewrite added (format ``%s``).
    """
    if numbered.style is Style.NONE:
        return text, None
    psycopg = numbered.style is Style.PSYCOPG
    out: list[str] = []
    values: list[Any] = []
    renumbered: dict[int, int] = {}
    cur = 0
    for token in scan(text):
        if token.name != "PARAM":
            continue
        chunk = text[cur : token.start]
        out.append(chunk.replace("%", "%%") if psycopg else chunk)
        n = int(text[token.start + 1 : token.end + 1])
        if psycopg:
            fmt = numbered.formats[n - 1] if n <= len(numbered.formats) else "s"
            out.append(f"%{fmt}")
            values.append(value_of(n))
        else:  # raw cursors may reuse a number: keep one value per number
            if n not in renumbered:
                renumbered[n] = len(renumbered) + 1
                values.append(value_of(n))
            out.append(f"${renumbered[n]}")
        cur = token.end + 1
    rest = text[cur:]
    out.append(rest.replace("%", "%%") if psycopg else rest)
    return "".join(out), tuple(values)
