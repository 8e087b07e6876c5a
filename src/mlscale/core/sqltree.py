"""Parsed SQL shared by statement classification and key routing.

:func:`parse` parses a text with pglast (libpg_query) once per process: the
classifier and the key router read the same statement text, and parsing is what
costs (about 70 us for a point SELECT, 2 ms for a 4 KB INSERT). :func:`walk`
visits a tree and :func:`statement_label` names a statement kind as people write
it; both modules read trees through them.

Trees from :func:`parse` are shared between callers and threads, so they are
read-only: nothing may set an attribute on any node, and that includes printing
one with pglast's ``RawStream``, which writes each node's ``ancestors``. A caller
that rewrites a tree takes its own from :func:`parse_fresh`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from threading import Lock
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

__all__ = [
    "CACHED_TEXT_MAX",
    "parse",
    "parse_fresh",
    "references_tables",
    "statement_label",
    "walk",
]

# Like psycopg's own statement cache: long texts are generated, not repeated.
CACHED_TEXT_MAX = 4096
# Bounds of the parse cache. A tree takes 16 to 40 bytes per character of its text
# (measured with tracemalloc, pglast 8.8), so 1 Mi characters of text is 16-40 MB of
# trees; the entry count bounds the bookkeeping when texts are short.
_CACHE_ENTRIES = 4096
_CACHE_CHARS = 1 << 20

Parsed = tuple[ast.RawStmt, ...]


@dataclass(frozen=True, slots=True)
class _Unparsable:
    """A text that does not parse, kept as its ParseError's arguments: a new error is
    raised each time, as one shared exception would gather every caller's traceback."""

    args: tuple[Any, ...]


_cache: OrderedDict[str, Parsed | _Unparsable] = OrderedDict()
_cached_chars = 0
_lock = Lock()


def _after_fork_in_child() -> None:
    # A parent thread may have held the lock at the fork: the child makes its own.
    global _lock
    _lock = Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def parse(text: str) -> Parsed:
    """The statements of ``text``, parsed once per process (cached by the exact text).

    Read-only: the trees are shared (see the module docstring). Raises pglast's
    ``ParseError`` if ``text`` does not parse; that verdict is cached too. Texts over
    :data:`CACHED_TEXT_MAX` characters are parsed on every call. Thread-safe; two
    threads that miss the same text at once may both parse it.
    """
    global _cached_chars
    with _lock:
        found = _cache.get(text)
        if found is not None:
            _cache.move_to_end(text)
    if found is None:
        try:
            found = tuple(parse_sql(text))
        except ParseError as exc:
            found = _Unparsable(exc.args)
        if len(text) <= CACHED_TEXT_MAX:
            with _lock:
                if text not in _cache:
                    _cache[text] = found
                    _cached_chars += len(text)
                    while len(_cache) > _CACHE_ENTRIES or _cached_chars > _CACHE_CHARS:
                        old, _ = _cache.popitem(last=False)
                        _cached_chars -= len(old)
    if isinstance(found, _Unparsable):
        raise ParseError(*found.args)
    return found


def parse_fresh(text: str) -> Parsed:
    """The statements of ``text`` in a new tree of the caller's own, to rewrite or print.

    Not cached: a fresh parse costs about a third of a deep copy of a cached tree.
    """
    return tuple(parse_sql(text))


def walk(
    node: Any, prune: tuple[type[ast.Node], ...] = (), keep_pruned: bool = False
) -> Iterator[ast.Node]:
    """Every AST node below (and including) ``node``, depth first.

    Nodes of a ``prune`` type are not entered (and are yielded only with
    ``keep_pruned``): e.g. an expression's own nodes without its subqueries.
    The order is stable for a given text, so a node can be named by its ordinal.
    """
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            if prune and isinstance(item, prune):
                if keep_pruned:
                    yield item
                continue
            yield item
            for name in getattr(type(item), "__slots__", ()):
                value = getattr(item, name, None)
                if isinstance(value, ast.Node | tuple | list):
                    stack.append(value)
        elif isinstance(item, tuple | list):
            stack.extend(item)


def references_tables(text: str) -> bool:
    """Whether ``text`` names any relation (a table, view or CTE); True if it does not
    parse. ``SELECT 1`` and ``SELECT now()`` do not."""
    try:
        statements = parse(text)
    except ParseError:
        return True
    return any(isinstance(node, ast.RangeVar) for node in walk(statements))


def statement_label(stmt: ast.Node) -> str:
    """A statement kind as people write it: ``AlterTableStmt`` -> ``'ALTER TABLE'``."""
    if isinstance(stmt, ast.GrantStmt):
        return "GRANT" if stmt.is_grant else "REVOKE"
    if isinstance(stmt, ast.VacuumStmt):
        return "VACUUM" if stmt.is_vacuumcmd else "ANALYZE"
    if isinstance(stmt, ast.CreateFunctionStmt):
        return "CREATE PROCEDURE" if stmt.is_procedure else "CREATE FUNCTION"
    if isinstance(stmt, ast.DropStmt):
        what = getattr(stmt.removeType, "name", "")
        return f"DROP {_OBJECTS.get(what, what.removeprefix('OBJECT_').replace('_', ' '))}".strip()
    kind = type(stmt).__name__
    return _LABELS.get(kind) or _ddl_label(kind.removesuffix("Stmt"))


# Statement kinds whose node name is not how people write them.
_LABELS = {
    "IndexStmt": "CREATE INDEX",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
    "CheckPointStmt": "CHECKPOINT",
    "CreateTrigStmt": "CREATE TRIGGER",
    "AlterSeqStmt": "ALTER SEQUENCE",
    "CreateEnumStmt": "CREATE TYPE",
    "CompositeTypeStmt": "CREATE TYPE",
    "CreateRangeStmt": "CREATE TYPE",
    "SecLabelStmt": "SECURITY LABEL",
    "CreateStatsStmt": "CREATE STATISTICS",
    "RenameStmt": "ALTER ... RENAME",
    "AlterObjectSchemaStmt": "ALTER ... SET SCHEMA",
}
_OBJECTS = {"OBJECT_MATVIEW": "MATERIALIZED VIEW", "OBJECT_FOREIGN_TABLE": "FOREIGN TABLE"}


def _ddl_label(kind: str) -> str:
    """``'AlterTable'`` -> ``'ALTER TABLE'``."""
    out = ""
    for ch in kind:
        if ch.isupper() and out:
            out += " "
        out += ch
    return out.upper()
