"""What the key router answers: the sharded-table registry entry and a closed result type."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypeVar

__all__ = [
    "Broadcast",
    "ByKeys",
    "CopyIn",
    "InsertRows",
    "Key",
    "KeyReading",
    "NoKey",
    "Params",
    "Refused",
    "ShardedTable",
    "Unsharded",
]

Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None
"""Statement parameters as psycopg takes them: a sequence, a mapping, or None."""

Key: TypeAlias = tuple[Any, ...]
"""One shard key: a value per key column, in ``ShardedTable.key_columns`` order."""

G = TypeVar("G", bound=Hashable)


@dataclass(frozen=True, slots=True)
class ShardedTable:
    """A sharded table as the router knows it.

    ``name`` is unqualified and lower case, as PostgreSQL folds it (the ``public``
    schema is assumed; queries may also write ``public.name``). ``key_columns`` are
    the shard key column(s), one or more (composite). Tables of one ``family`` share
    placement, so their rows with equal keys live on the same shard.
    """

    name: str
    key_columns: tuple[str, ...]
    family: str

    def __post_init__(self) -> None:
        if not self.key_columns:
            raise ValueError(f"sharded table {self.name!r} needs at least one shard key column")
        if len(set(self.key_columns)) != len(self.key_columns):
            raise ValueError(f"sharded table {self.name!r} repeats a key column")


class Splitter(Protocol):
    """Cuts a statement into per-shard statements (implemented by the compiled plans)."""

    def split(
        self,
        sql: str,
        params: Params,
        keys: int,
        groups: Mapping[G, Sequence[int]],
        key_types: Sequence[str] = (),
    ) -> dict[G, tuple[str, Params]]: ...

    def binds_array(self, key_types: Sequence[str]) -> bool:
        """Whether :meth:`split` sends the keys as one array parameter (a long ``IN``
        list), so that even a group holding every key gets a new text."""
        ...


@dataclass(frozen=True, slots=True)
class Unsharded:
    """No sharded table is referenced: the caller routes the statement as before."""


@dataclass(frozen=True, slots=True)
class ByKeys:
    """A SELECT/UPDATE/DELETE whose rows all carry one of ``keys``.

    ``keys`` are the shard keys the WHERE clause pins (one per ``IN`` item or
    ``= ANY`` element; they may repeat, and may be empty when ``= ANY`` got an empty
    list: then the statement matches no row and may run on any one shard). ``table``
    is the sharded table whose key was read; every other sharded table in the
    statement is of its family and joined to it on the key.

    Send ``sql``/``params`` unchanged when all keys live on one shard; otherwise call
    :meth:`split`. ``unsplittable`` (set only when there are several keys) says why
    per-shard results could not simply be concatenated (an aggregate, ORDER BY, LIMIT,
    DISTINCT, ...); None when they can.
    """

    table: ShardedTable
    keys: tuple[Key, ...]
    sql: str
    params: Params
    unsplittable: str | None = None
    splitter: Splitter | None = field(default=None, repr=False, compare=False)

    def split(
        self, groups: Mapping[G, Sequence[int]], *, key_types: Sequence[str] = ()
    ) -> dict[G, tuple[str, Params]]:
        """Per group, the statement text and params to send to that group's shard.

        ``groups`` maps a caller's shard (any hashable) to indexes into ``keys``. A
        group holding every key gets ``sql``/``params`` unchanged (nothing is parsed);
        otherwise the ``IN`` list or ``ARRAY[...]`` keeps only the group's items, or
        the ``= ANY(%s)`` parameter gets the group's sub-list.

        ``key_types`` (the SQL type of each key column) lets a long list of
        parameters on one key column (``key IN (%s, %s, ...)``, more than
        :data:`~mlscale.core.keyroute.plans.LONG_KEY_LIST` items) be sent as one array
        parameter, ``key = ANY(%s::type[])``, in every group's text: a statement may
        have at most 65,535 parameters, and one array costs the server less to parse
        than thousands of parameters.
        """
        return _split(self.splitter, self.sql, self.params, len(self.keys), groups, key_types)


@dataclass(frozen=True, slots=True)
class InsertRows:
    """An ``INSERT ... VALUES`` into a sharded table: ``keys[i]`` is row ``i``'s shard key.

    Send ``sql``/``params`` unchanged when every row lives on one shard; otherwise
    :meth:`split` gives one INSERT per shard with only its rows (ON CONFLICT and
    RETURNING kept).
    """

    table: ShardedTable
    keys: tuple[Key, ...]
    sql: str
    params: Params
    splitter: Splitter | None = field(default=None, repr=False, compare=False)

    def split(self, groups: Mapping[G, Sequence[int]]) -> dict[G, tuple[str, Params]]:
        """Per group, an INSERT of the rows whose indexes the group lists."""
        return _split(self.splitter, self.sql, self.params, len(self.keys), groups)


@dataclass(frozen=True, slots=True)
class CopyIn:
    """``COPY table (columns) FROM STDIN`` into a sharded table.

    Row ``r`` of the data has its key at ``tuple(r[i] for i in key_indexes)`` (in
    ``table.key_columns`` order); the caller splits the rows and sends ``sql``
    unchanged to each shard with its rows.
    """

    table: ShardedTable
    columns: tuple[str, ...]
    key_indexes: tuple[int, ...]
    sql: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    """DDL (or another utility statement) on sharded tables: apply it on every shard group."""

    reason: str
    tables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoKey:
    """A sharded table is touched but no shard key could be read: it needs every shard.

    ``reason`` says what is missing and how to pin the key.
    """

    reason: str
    tables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """The statement cannot be routed safely, even to every shard; ``reason`` says why."""

    reason: str


KeyReading: TypeAlias = Unsharded | ByKeys | InsertRows | CopyIn | Broadcast | NoKey | Refused
"""Everything :meth:`~mlscale.core.keyroute.KeyReader.route` may answer."""


def _split(
    splitter: Splitter | None,
    sql: str,
    params: Params,
    keys: int,
    groups: Mapping[G, Sequence[int]],
    key_types: Sequence[str] = (),
) -> dict[G, tuple[str, Params]]:
    for group, indexes in groups.items():
        if not indexes:
            raise ValueError(f"group {group!r} has no key indexes")
        for i in indexes:
            if not 0 <= i < keys:
                raise IndexError(f"key index {i} out of range for {keys} keys")
    if len(groups) == 1:
        ((group, indexes),) = groups.items()
        if len(set(indexes)) == keys and (splitter is None or not splitter.binds_array(key_types)):
            return {group: (sql, params)}
    if splitter is None:  # a single key: one group can only hold it
        raise ValueError("a statement with one key cannot be split into several groups")
    return splitter.split(sql, params, keys, groups, key_types)
