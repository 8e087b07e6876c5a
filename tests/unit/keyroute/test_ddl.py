"""DDL and other utility statements: broadcast, refused or unsharded."""

from __future__ import annotations

import pytest

from . import UNSHARDED, Row, broadcast, check, ids, refused, row

# -- DDL and other utility statements --------------------------------------------------------

DDL_CASES = [
    row("CREATE INDEX ON users (email)", None, broadcast("CREATE INDEX on sharded table(s) users")),
    row("ALTER TABLE users ADD COLUMN age int", None, broadcast("ALTER TABLE")),
    row("DROP TABLE users", None, broadcast("DROP TABLE")),
    row("DROP TABLE IF EXISTS public.orders, order_items", None, broadcast("orders, order_items")),
    row("DROP TABLE users, models", None, refused("names sharded (users) and other tables")),
    row("TRUNCATE users", None, broadcast("TRUNCATE")),
    row("TRUNCATE users, models", None, refused("run it separately")),
    row("CREATE TABLE users (id bigint PRIMARY KEY)", None, broadcast("CREATE TABLE")),
    row(
        "CREATE TABLE audit (user_id bigint REFERENCES users (id))",
        None,
        broadcast("users applies to every shard group"),
        id="foreign key to a sharded table",
    ),
    row("GRANT SELECT ON users TO reader", None, broadcast("GRANT")),
    row("VACUUM ANALYZE users", None, broadcast("VACUUM")),
    row("ALTER TABLE users RENAME COLUMN name TO full_name", None, broadcast("RENAME")),
    row(
        "ALTER TABLE users ALTER COLUMN id TYPE text",
        None,
        refused("changing the type of shard key column users.id"),
    ),
    row("ALTER TABLE users DROP COLUMN id", None, refused("dropping shard key column users.id")),
    row("ALTER TABLE users RENAME TO people", None, refused("renaming sharded table users")),
    row(
        "ALTER TABLE users RENAME COLUMN id TO uid",
        None,
        refused("renaming shard key column users.id"),
    ),
    row(
        "CREATE TABLE copy AS SELECT * FROM users WHERE id = 1",
        None,
        refused("CREATE TABLE AS / SELECT INTO"),
    ),
    row("SELECT * INTO copy FROM users WHERE id = 1", None, refused("SELECT INTO")),
    row(
        "PREPARE q AS SELECT * FROM users WHERE id = $1",
        None,
        refused("let psycopg prepare it"),
    ),
    row("CREATE INDEX ON models (name)", None, UNSHARDED),
    row("SET statement_timeout = 1000", None, UNSHARDED),
    row("BEGIN", None, UNSHARDED),
    row(
        "BEGIN; ALTER TABLE users ADD COLUMN a int; CREATE INDEX ON orders (total); COMMIT",
        None,
        broadcast("a script of 4 statements"),
    ),
]


@pytest.mark.parametrize("r", DDL_CASES, ids=ids)
def test_ddl(r: Row) -> None:
    check(r)
