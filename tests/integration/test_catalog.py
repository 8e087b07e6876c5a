"""The catalog on a scratch database of the real control server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mlscale import CatalogError, LocalCluster
from mlscale.core.topology import nodes_of
from mlscale.engine import migrations as catalog
from mlscale.engine.connect import connect


def test_up_registered_the_topology(local_cluster: LocalCluster) -> None:
    config = local_cluster.config()
    with connect(nodes_of(config)[0], config) as conn:
        assert catalog.catalog_version(conn) == catalog.MIGRATIONS[-1].version
        epoch, nodes = catalog.read_topology(conn)
    assert epoch >= 1
    assert sorted(nodes, key=lambda n: n.name) == sorted(nodes_of(config), key=lambda n: n.name)


@pytest.fixture()
def scratch(local_cluster: LocalCluster) -> Iterator[psycopg.Connection[Any]]:
    config = local_cluster.config()
    control = nodes_of(config)[0]
    name = "it_catalog_scratch"
    with connect(control, config) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect(control, config, dbname=name) as conn:
            yield conn
    finally:
        with connect(control, config) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_migrations_are_idempotent_and_epochs_follow_changes(
    local_cluster: LocalCluster, scratch: psycopg.Connection[Any]
) -> None:
    nodes = nodes_of(local_cluster.config())
    assert catalog.catalog_version(scratch) == 0
    with pytest.raises(CatalogError, match="catalog migrate"):
        catalog.read_topology(scratch)
    assert [m.version for m in catalog.migrate(scratch)] == [m.version for m in catalog.MIGRATIONS]
    assert catalog.migrate(scratch) == []
    assert catalog.register_topology(scratch, nodes, "first") == 1
    assert catalog.register_topology(scratch, list(reversed(nodes)), "same again") == 1
    moved = [replace(n, port=n.port + 1000) if n.name == "g1-replica2" else n for n in nodes]
    assert catalog.register_topology(scratch, moved, "replica moved") == 2
    epoch, stored = catalog.read_topology(scratch)
    assert epoch == 2
    assert {n.name: n.port for n in stored}["g1-replica2"] == {n.name: n.port for n in nodes}[
        "g1-replica2"
    ] + 1000
    fewer = [n for n in nodes if n.group != "g1"]
    assert catalog.register_topology(scratch, fewer, "group removed") == 3
    groups = scratch.execute("SELECT name FROM mlscale_catalog.shard_groups").fetchall()
    assert groups == [("g0",)]


def test_catalog_refuses_two_primaries_in_a_group(
    local_cluster: LocalCluster, scratch: psycopg.Connection[Any]
) -> None:
    nodes = nodes_of(local_cluster.config())
    catalog.migrate(scratch)
    from mlscale import Role

    bad = [replace(n, role=Role.PRIMARY) if n.name == "g0-replica1" else n for n in nodes]
    with pytest.raises(psycopg.errors.UniqueViolation):
        catalog.register_topology(scratch, bad, "two primaries")
    assert catalog.read_topology(scratch)[0] == 0  # nothing half-written


def test_newer_catalog_is_refused(scratch: psycopg.Connection[Any]) -> None:
    catalog.migrate(scratch)
    scratch.execute(
        "INSERT INTO mlscale_catalog.schema_migrations (version, name) VALUES (%s, %s)",
        (999, "from the future"),
    )
    with pytest.raises(CatalogError, match="version 999, newer than this mlscale"):
        catalog.migrate(scratch)


def test_cli_catalog_migrate(local_cluster: LocalCluster) -> None:
    from tests.conftest import run_cli

    result = run_cli("catalog", "migrate", "--config", str(local_cluster.layout.config))
    assert result.returncode == 0, result.stderr
    latest = catalog.MIGRATIONS[-1].version
    assert f"catalog at version {latest}; topology epoch 1" in result.stdout
