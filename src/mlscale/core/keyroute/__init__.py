"""Shard keys read from SQL, for single-shard routing of sharded tables.

``KeyReader(tables).route(sql, params)`` answers, for a statement as a psycopg
user writes it (``%s``/``%(name)s`` placeholders, or ``$n`` for raw cursors, or
none), one of a closed set of results:

- :class:`Unsharded` -- no sharded table is referenced; route as before.
- :class:`ByKeys` -- a SELECT/UPDATE/DELETE whose WHERE pins the shard key
  (``= value``, ``IN (...)``, ``= ANY(%s)``), co-located joins included;
  :meth:`ByKeys.split` cuts it per shard when the keys span several.
- :class:`InsertRows` -- ``INSERT ... VALUES``, one key per row; :meth:`InsertRows.split`
  gives one INSERT per shard.
- :class:`CopyIn` -- ``COPY ... FROM STDIN``: where each row's key is.
- :class:`Broadcast` -- DDL on a sharded table: every shard group.
- :class:`NoKey` -- a sharded table is touched but no key pins it: every shard.
- :class:`Refused` -- cannot be routed safely at all (a key UPDATE, tables of
  different families, several statements...), with a reason for the user.

When unsure the answer is NoKey, never one shard picked by guess. The modules:
``results`` (the types), ``placeholders`` (psycopg <-> ``$n``), ``values`` (key
sources and casts), ``query`` (SELECT/UPDATE/DELETE), ``rows`` (INSERT/COPY),
``plans`` (compiled, cached, split), ``router`` (dispatch and cache), ``tree``
(small pglast tree readers).
"""

from .reader import KeyReader, read_keys
from .results import (
    Broadcast,
    ByKeys,
    CopyIn,
    InsertRows,
    Key,
    KeyReading,
    NoKey,
    Params,
    Refused,
    ShardedTable,
    Unsharded,
)

__all__ = [
    "Broadcast",
    "ByKeys",
    "CopyIn",
    "InsertRows",
    "Key",
    "KeyReader",
    "KeyReading",
    "NoKey",
    "Params",
    "Refused",
    "ShardedTable",
    "Unsharded",
    "read_keys",
]
