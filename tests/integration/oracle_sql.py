"""Hypothesis strategies for SQL that a standby may or may not run.

The grammar mixes read-only expressions with writers (sequence calls, xid
assignment, advisory locks, settings, notifications, large objects, a plpgsql
function that INSERTs) and hides them in subqueries, LATERAL joins, CTEs,
FROM-clause functions, EXPLAIN ANALYZE and COPY wrappers; it adds row locks
at every depth, SELECT INTO and a few non-SELECT statements. The generator does
not know which statements are read-only: the classifier says, the standby judges.

Every statement reads ``oracle.items i`` (the fixture table), so expressions
may use ``i.id`` (int), ``i.name`` (text), ``i.score`` (float8), ``i.attrs``
(jsonb) and ``i.tags`` (text[]). Parameter slots and the modulo operator are
written as markers and rendered per style: inline literals, psycopg ``%s``
(modulo as ``%%``) or psycopg ``%(name)s``.
"""

# ruff: noqa: S608 -- composing SQL text is what this module is for; nothing comes from users

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# The objects the oracle test creates on the primary before generating.
SETUP_SQL = [
    "DROP SCHEMA IF EXISTS oracle CASCADE",
    "CREATE SCHEMA oracle",
    "CREATE TABLE oracle.items (id int PRIMARY KEY, name text, score float8, attrs jsonb, "
    "tags text[])",
    "INSERT INTO oracle.items SELECT n, 'item-' || n, n / 7.0, "
    "jsonb_build_object('k', 'v' || n, 'n', n), ARRAY['a', 'b' || (n % 3)] "
    "FROM generate_series(1, 40) n",
    "CREATE TABLE oracle.log (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT now())",
    "CREATE SEQUENCE oracle.seq",
    # A write hidden behind a function call: VOLATILE plpgsql that INSERTs.
    "CREATE OR REPLACE FUNCTION public.writes_something() RETURNS int LANGUAGE plpgsql "
    "VOLATILE AS $$BEGIN INSERT INTO oracle.log(note) VALUES ('written'); RETURN 1; END$$",
    # Same name as the built-in lower() but for the quotes, and it writes.
    'CREATE OR REPLACE FUNCTION public."Lower"(t text) RETURNS text LANGUAGE plpgsql '
    "VOLATILE AS $$BEGIN INSERT INTO oracle.log(note) VALUES (t); RETURN lower(t); END$$",
    # Read-only, and vouched for by the oracle's classifier.
    "CREATE OR REPLACE FUNCTION public.stable_reader() RETURNS bigint LANGUAGE sql STABLE "
    "AS 'SELECT count(*) FROM oracle.items'",
]
TEARDOWN_SQL = [
    "DROP SCHEMA IF EXISTS oracle CASCADE",
    "DROP FUNCTION IF EXISTS public.writes_something()",
    'DROP FUNCTION IF EXISTS public."Lower"(text)',
    "DROP FUNCTION IF EXISTS public.stable_reader()",
]
VOUCHED = ["public.stable_reader"]

_PARAM = "\x00P{}\x00"  # a parameter slot holding an int
_MOD = "\x00MOD\x00"  # the modulo operator: '%' inline, '%%' for psycopg
_MARKER = re.compile(r"\x00P(-?\d+)\x00|\x00MOD\x00")

NUM_READ = [
    "i.id",
    "i.score",
    "abs(i.score)",
    "round(i.score::numeric, 2)",
    "length(i.name)",
    "random()",
    "pg_backend_pid()",
    "extract(epoch FROM now())",
    "array_length(i.tags, 1)",
    "cardinality(i.tags)",
    "(i.attrs->>'n')::int",
    "coalesce(i.score, 0)",
    "greatest(i.id, 3)",
    "pg_relation_size('oracle.items')",
    "pg_total_relation_size('oracle.items')",
    "public.stable_reader()",
    "stable_reader()",  # vouched for only when qualified: the classifier says primary
    "pg_catalog.abs(-i.id)",
    "ABS(I.ID)",
    "width_bucket(i.score, 0, 6, 4)",
    "(i.id " + _MOD + " 3)",
    "txid_current_if_assigned()",
    "pg_sequence_last_value('oracle.seq')",
    "(SELECT last_value FROM oracle.seq)",
]
NUM_WRITE = [
    "nextval('oracle.seq')",
    "pg_catalog.nextval('oracle.seq')",
    "NEXTVAL('oracle.seq')",
    "\"nextval\"('oracle.seq')",
    "setval('oracle.seq', 100)",
    "currval('oracle.seq')",
    "lastval()",
    "txid_current()",
    "pg_current_xact_id()::text::bigint",
    "lo_create(0)::bigint",
    "public.writes_something()",
    "writes_something()",
    'length(public."Lower"(i.name))',
    'length("Lower"(i.name))',
    "length(pg_advisory_lock(7)::text)",
    "length(pg_advisory_xact_lock(8)::text)",
    "pg_try_advisory_lock(9)::int",
    "length(set_config('oracle.flag', 'on', false))",
    "length(set_config('oracle.flag', 'on', true))",
    "length(pg_notify('oracle', 'x')::text)",
]
TEXT_READ = [
    "i.name",
    "lower(i.name)",
    '"lower"(i.name)',  # quoted, but still the built-in
    "upper(i.name)",
    "md5(i.name)",
    "now()::text",
    "i.attrs->>'k'",
    "jsonb_build_object('id', i.id, 's', i.score)::text",
    "to_char(now(), 'YYYY')",
    "current_setting('work_mem')",
    "gen_random_uuid()::text",
    "pg_is_in_recovery()::text",
    "clock_timestamp()::text",
    "split_part(i.name, '-', 1)",
    "array_to_string(i.tags, ',')",
    "jsonb_typeof(i.attrs)",
    "pg_sleep(0)::text",
    "pg_current_snapshot()::text",
    "concat_ws('/', i.name, i.id)",
    "i.tags[1]",
    "coalesce(i.name, 'none')",
    "substring(i.name FROM 1 FOR 3)",
    "date_trunc('day', now())::text",
]
TEXT_WRITE = [
    'public."Lower"(i.name)',
    "set_config('oracle.flag', 'on', false)",
    "pg_notify('oracle', i.name)::text",
    "txid_current()::text",
    "pg_export_snapshot()",
]
LOCKS = ["FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE", "for update skip locked"]
FROM_FUNCTIONS_READ = [
    "generate_series(1, 2) g(n)",
    "unnest(i.tags) u(tag)",
    "jsonb_each_text(i.attrs) kv(k, v)",
    "ROWS FROM (generate_series(1, 2)) r(n)",
]
FROM_FUNCTIONS_WRITE = [
    "nextval('oracle.seq') s(v)",
    "public.writes_something() w(v)",
    "txid_current() x(v)",
]
CTE_WRITES = [
    "INSERT INTO oracle.log(note) VALUES ('cte') RETURNING id",
    "UPDATE oracle.items SET score = score WHERE id = 1 RETURNING id",
    "DELETE FROM oracle.log WHERE id < 0 RETURNING id",
]
OTHER_STATEMENTS = [
    "INSERT INTO oracle.log(note) VALUES ('x')",
    "UPDATE oracle.items SET score = score + 0 WHERE id = 2",
    "DELETE FROM oracle.log WHERE id < 0",
    "LOCK TABLE oracle.items IN ACCESS SHARE MODE",
    "NOTIFY oracle",
    "LISTEN oracle",
    "SET work_mem = '8MB'",
    "SET LOCAL work_mem = '8MB'",
    "SHOW work_mem",
    "TABLE oracle.items",
    "VALUES (1, 'a'), (2, 'b')",
    "DO $$BEGIN PERFORM 1; END$$",
    "CREATE TEMP TABLE oracle_tmp (a int)",
    "PREPARE oracle_p AS SELECT 1",
    "DECLARE oracle_c CURSOR FOR SELECT 1",
    "TRUNCATE oracle.log",
    "SELECT 1; SELECT 2",
    "SELECT 1; SELECT nextval('oracle.seq')",
    "COPY oracle.items TO STDOUT",
    "COPY oracle.log FROM STDIN",
    "EXPLAIN INSERT INTO oracle.log(note) VALUES ('x')",
    "SAVEPOINT oracle_s",
    "SELECT * FROM pg_stat_activity WHERE pid = pg_backend_pid()",
]


@dataclass(frozen=True)
class Statement:
    """A generated statement, rendered for one placeholder style."""

    sql: str
    params: tuple[Any, ...] | dict[str, Any] | None
    copy: bool = False  # run with cursor.copy(), reading what it sends

    def __str__(self) -> str:
        return f"{self.sql!r} params={self.params!r}"


def _pick(pool: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(pool)


@st.composite
def num_expr(draw: st.DrawFn, depth: int = 2) -> str:
    """A numeric expression over ``i``."""
    choices = ["read"] * 12 + ["write", "param", "param"]
    if depth > 0:
        choices += ["arith", "case", "scalar", "count", "array"]
    kind = draw(st.sampled_from(choices))
    if kind == "read":
        return draw(_pick(NUM_READ))
    if kind == "write":
        return draw(_pick(NUM_WRITE))
    if kind == "param":
        return _PARAM.format(draw(st.integers(-5, 50)))
    if kind == "arith":
        op = draw(st.sampled_from(["+", "-", "*"]))
        return f"({draw(num_expr(depth - 1))} {op} {draw(num_expr(depth - 1))})"
    if kind == "case":
        return (
            f"CASE WHEN {draw(condition(depth - 1))} THEN {draw(num_expr(depth - 1))} "
            f"ELSE {draw(num_expr(depth - 1))} END"
        )
    if kind == "scalar":
        lock = draw(_lock())
        return (
            f"(SELECT {draw(num_expr(depth - 1))} FROM oracle.items i "
            f"WHERE i.id = {draw(st.integers(1, 45))} ORDER BY i.id LIMIT 1{lock})"
        )
    if kind == "array":
        return (
            f"(ARRAY(SELECT {draw(num_expr(depth - 1))} FROM oracle.items i "
            f"ORDER BY i.id LIMIT 2{draw(_lock())}))[1]"
        )
    return f"(SELECT count(*) FROM oracle.items i WHERE {draw(condition(depth - 1))})"


@st.composite
def text_expr(draw: st.DrawFn, depth: int = 2) -> str:
    """A text expression over ``i``."""
    kind = draw(st.sampled_from(["read"] * 12 + ["write", "num", "concat"]))
    if kind == "read":
        return draw(_pick(TEXT_READ))
    if kind == "write":
        return draw(_pick(TEXT_WRITE))
    if kind == "num" or depth == 0:
        return f"({draw(num_expr(max(depth - 1, 0)))})::text"
    return f"(({draw(text_expr(depth - 1))}) || ({draw(text_expr(depth - 1))}))"


@st.composite
def condition(draw: st.DrawFn, depth: int = 1) -> str:
    """A boolean over ``i``."""
    choices = ["cmp", "cmp", "text", "null", "array", "jsonb", "any", "between", "distinct"]
    if depth > 0:
        choices += ["exists", "in", "not", "and"]
    kind = draw(st.sampled_from(choices))
    if kind == "cmp":
        op = draw(st.sampled_from(["<", ">", "=", "<>", ">="]))
        return f"{draw(num_expr(depth))} {op} {draw(num_expr(0))}"
    if kind == "text":
        return f"{draw(text_expr(depth))} <> 'zzz'"
    if kind == "null":
        return f"{draw(num_expr(depth))} IS NOT NULL"
    if kind == "any":
        return f"{draw(num_expr(depth))} = ANY(ARRAY[{draw(num_expr(0))}, {draw(num_expr(0))}])"
    if kind == "between":
        return f"{draw(num_expr(depth))} BETWEEN {draw(num_expr(0))} AND {draw(num_expr(0))}"
    if kind == "distinct":
        return f"{draw(num_expr(depth))} IS DISTINCT FROM {draw(num_expr(0))}"
    if kind == "array":
        return "i.tags && ARRAY['a', 'b1']"
    if kind == "jsonb":
        return "i.attrs ? 'k'"
    if kind == "exists":
        return (
            f"EXISTS (SELECT 1 FROM oracle.items i WHERE {draw(condition(depth - 1))}"
            f"{draw(_lock())})"
        )
    if kind == "in":
        return (
            f"i.id IN (SELECT i.id FROM oracle.items i WHERE {draw(condition(depth - 1))}"
            f"{draw(_lock())})"
        )
    if kind == "not":
        return f"NOT ({draw(condition(depth - 1))})"
    return f"({draw(condition(depth - 1))} AND {draw(condition(depth - 1))})"


def _lock() -> st.SearchStrategy[str]:
    """Mostly no row lock; sometimes one."""
    return st.sampled_from([""] * 16 + [" " + lock for lock in LOCKS])


@st.composite
def select_parts(draw: st.DrawFn, depth: int = 2, columns: int | None = None) -> tuple[str, str]:
    """The select list and what follows FROM, for shapes that wrap them."""
    n = columns or draw(st.integers(1, 3))
    exprs = [
        draw(st.one_of(num_expr(depth), text_expr(depth)) if columns is None else text_expr(depth))
        for _ in range(n)
    ]
    if columns is not None:
        exprs = [f"({e})::text" for e in exprs]
    if columns is None and draw(st.integers(0, 5)) == 0:
        exprs.append(
            f"sum({draw(num_expr(0))}) OVER (PARTITION BY i.id {_MOD} 2 "
            f"ORDER BY {draw(num_expr(0))})"
        )
    items = ", ".join(f"{e} AS c{k}" for k, e in enumerate(exprs))
    # In this order: a LATERAL subquery and the ON clause must see i, which a
    # comma-joined item would hide from them.
    order = ["self", "lateral", "fn_read", "fn_write"]
    weights = ["self", "lateral", "lateral", "fn_read", "fn_read", "fn_read", "fn_write"]
    picked = draw(st.lists(st.sampled_from(weights), max_size=2, unique=True))
    joins = sorted(picked, key=order.index)
    from_ = "oracle.items i"
    for join in joins:
        if join == "lateral":
            from_ += (
                f" CROSS JOIN LATERAL (SELECT {draw(num_expr(max(depth - 1, 0)))} AS lx "
                f"FROM oracle.items i2 WHERE i2.id = i.id LIMIT 1{draw(_lock())}) l"
            )
        elif join == "fn_read":
            from_ += ", " + draw(_pick(FROM_FUNCTIONS_READ))
        elif join == "fn_write":
            from_ += ", " + draw(_pick(FROM_FUNCTIONS_WRITE))
        else:
            from_ += " JOIN oracle.items j ON j.id = i.id"
    tail = from_
    if draw(st.booleans()):
        tail += f" WHERE {draw(condition(1))}"
    # "+ 0": a bare integer in ORDER BY would be a select-list position
    order_by = f"({draw(num_expr(0))}) + 0, i.id" if draw(st.integers(0, 4)) == 0 else "i.id"
    tail += f" ORDER BY {order_by} LIMIT {draw(st.integers(1, 5))}"
    return items, tail + draw(_lock())


def select_core(depth: int = 2, columns: int | None = None) -> st.SearchStrategy[str]:
    """``SELECT ... FROM oracle.items i ...`` with optional joins, WHERE, locks."""
    return select_parts(depth, columns).map(lambda p: f"SELECT {p[0]} FROM {p[1]}")


@st.composite
def query(draw: st.DrawFn) -> str:
    """A top-level SELECT in one of several shapes, or another statement."""
    shape = draw(
        st.sampled_from(
            ["plain"] * 5
            + ["cte", "cte", "union", "into", "explain", "explain", "other", "multi", "agg"]
        )
    )
    if shape == "plain":
        return draw(select_core())
    if shape == "cte":
        if draw(st.integers(0, 2)) == 0:
            body = draw(_pick(CTE_WRITES))
        else:
            body = draw(select_core(depth=1, columns=1))
        items, tail = draw(select_parts(depth=1))
        return f"WITH c AS ({body}) SELECT {items}, (SELECT count(*) FROM c) AS cn FROM {tail}"
    if shape == "union":
        op = draw(st.sampled_from(["UNION ALL", "UNION", "EXCEPT", "INTERSECT"]))
        left = draw(select_core(depth=1, columns=1))
        right = draw(select_core(depth=1, columns=1))
        return f"({left}) {op} ({right})"
    if shape == "into":
        items, tail = draw(select_parts(depth=1))
        table = draw(st.sampled_from(["TEMP oracle_into", "oracle.into_table", "UNLOGGED u"]))
        return f"SELECT {items} INTO {table} FROM {tail}"
    if shape == "explain":
        wrapper = draw(
            st.sampled_from(
                ["EXPLAIN", "EXPLAIN ANALYZE", "EXPLAIN (ANALYZE, BUFFERS)", "explain (analyze)"]
            )
        )
        return f"{wrapper} {draw(select_core(depth=1))}"
    if shape == "agg":
        return (
            f"SELECT i.id {_MOD} 3 AS g, count(*), max({draw(num_expr(1))}) "
            f"FROM oracle.items i GROUP BY 1 HAVING max({draw(num_expr(1))}) IS NOT NULL "
            f"ORDER BY 1{draw(_lock())}"
        )
    if shape == "multi":
        return f"{draw(select_core(depth=1))}; {draw(select_core(depth=1))}"
    return draw(_pick(OTHER_STATEMENTS))


def render(sql: str, style: str) -> tuple[str, tuple[Any, ...] | dict[str, Any] | None]:
    """``sql`` with its markers as inline values or psycopg placeholders."""
    positional: list[Any] = []
    named: dict[str, Any] = {}

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is None:  # modulo
            return "%" if style == "inline" else "%%"
        value = int(m.group(1))
        if style == "inline":
            return f"({value})"
        if style == "named":
            key = f"p{len(named)}"
            named[key] = value
            return f"%({key})s::int"
        positional.append(value)
        return "%s::int"

    out = _MARKER.sub(sub, sql)
    if style == "named":
        return out, named
    if style == "positional":
        return out, tuple(positional)
    return out, None


@st.composite
def statements(draw: st.DrawFn) -> Statement:
    """A statement ready to run: its text, its parameters, and how to run it."""
    sql = draw(query())
    copy = False
    if sql.startswith("SELECT") and ";" not in sql and draw(st.integers(0, 7)) == 0:
        sql, copy = f"COPY ({sql}) TO STDOUT", True
    elif sql.startswith("COPY") and "STDOUT" in sql:
        copy = True
    single = ";" not in sql and not copy
    style = draw(st.sampled_from(["inline", "positional", "named"])) if single else "inline"
    text, params = render(sql, style)
    return Statement(text, params, copy)
