"""Feast, the peer of ``mlscale bench features``, on the session cluster's PostgreSQL
and Redis: its own venv (installed on demand, so these tests are ``slow``), 2,000
entities of 50 features written and read back exactly, secrets kept out of argv and
of the files Feast writes, every probe stopped.

The last tests need no Feast: a stand-in "interpreter" shows that a probe that
hangs or fails is reported and stopped, never waited on forever.
"""

from __future__ import annotations

import random
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlscale import LocalCluster
from mlscale.bench.feast_peer import (
    FeastProbe,
    FeastProbeError,
    PgSize,
    PgTarget,
    RedisSize,
    RedisTarget,
    feast_python,
    passfile_password,
    pg_target,
    redis_target,
)
from mlscale.config import load_config
from mlscale.core.topology import Node, Role, find_node, nodes_of, primary_name

ENTITIES = 2_000
FEATURES = 50
BATCH = 100


@pytest.fixture(scope="module")
def feast() -> Path:
    python, how = feast_python()
    if python is None:
        pytest.skip(f"Feast unavailable: {how}")
    return python


@pytest.fixture(scope="module")
def targets(local_cluster: LocalCluster) -> tuple[PgTarget, RedisTarget]:
    config = load_config(local_cluster.layout.config)
    primary = find_node(nodes_of(config), primary_name(config.shard_groups[0].name))
    return pg_target(config, primary), redis_target(config)


@pytest.fixture()
def probe_of(
    feast: Path, targets: tuple[PgTarget, RedisTarget], tmp_path: Path
) -> Iterator[dict[str, FeastProbe]]:
    """One probe per store, each on a project of its own, torn down and stopped."""
    pg, rd = targets
    probes: dict[str, FeastProbe] = {}
    try:
        for store in ("postgres", "redis"):
            project = f"it_{store}_{uuid.uuid4().hex[:8]}"
            probes[store] = FeastProbe(
                feast, store=store, repo_dir=tmp_path / store, project=project,
                pg=pg, redis=rd, features=FEATURES,
            )  # fmt: skip
        yield probes
    finally:
        for probe in probes.values():
            try:
                probe.teardown(timeout_s=120)
            except FeastProbeError:
                pass
            finally:
                probe.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a cold install of Feast's wheels, then two probes
def test_feast_reads_back_what_it_wrote_on_both_stores(
    probe_of: dict[str, FeastProbe], targets: tuple[PgTarget, RedisTarget], tmp_path: Path
) -> None:
    rng = random.Random(14)
    ids = [rng.randrange(ENTITIES) for _ in range(1_000)]
    for store, probe in probe_of.items():
        assert probe.ready.feast_version.startswith("0.6"), store
        before = probe.size()
        loaded = probe.load(0, ENTITIES, chunk=500)
        assert loaded.loaded == ENTITIES and loaded.entities_per_s > 0, store

        got = probe.round(ids, batch=BATCH)
        assert got.mismatches == 0, (store, got.mismatch_examples)
        assert (got.batches, got.entities) == (len(ids) // BATCH, len(ids)), store
        assert got.values_checked == len(ids) * FEATURES, store
        assert 0 < got.p50_ms <= got.p99_ms and got.entities_per_s > 0, store

        size = probe.size()
        if store == "postgres":
            assert isinstance(size, PgSize) and isinstance(before, PgSize)
            # One row per entity and feature, in the project's one table.
            assert size.rows == ENTITIES * FEATURES and before.rows == 0
            assert len(size.tables) == 1 and size.bytes > before.bytes
        else:
            assert isinstance(size, RedisSize) and isinstance(before, RedisSize)
            # One hash per entity.
            assert size.project_keys == ENTITIES and before.project_keys == 0
            assert size.used_memory > before.used_memory

        probe.teardown()
        after = probe.size()
        assert (after.tables == ()) if isinstance(after, PgSize) else (after.project_keys == 0)

    # No secret in the files Feast reads, nor in any probe's command line.
    secrets = [s for t in targets for s in (t.password,) if s]
    assert secrets
    for store, probe in probe_of.items():
        text = (tmp_path / store / "feature_store.yaml").read_text()
        argv = " ".join(map(str, probe.proc.args))
        for secret in secrets:
            assert secret not in text and secret not in argv, store
        assert "${MLSCALE_BENCH_" in text


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_failed_command_is_an_error_and_stops_the_probe(
    feast: Path, targets: tuple[PgTarget, RedisTarget], tmp_path: Path
) -> None:
    _, rd = targets
    probe = FeastProbe(feast, store="redis", repo_dir=tmp_path / "r", project="it_bad", redis=rd)
    try:
        with pytest.raises(FeastProbeError, match="Feast failed 'explode': unknown command"):
            probe.ask("explode")
        assert probe.proc.poll() is not None
        with pytest.raises(FeastProbeError, match="closed"):
            probe.size()
    finally:
        probe.close()


# -- no Feast needed ---------------------------------------------------------------------------


def _fake_python(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_probe_that_never_answers_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    python = _fake_python(tmp_path / "hang", "exec sleep 60")
    with pytest.raises(FeastProbeError, match="did not answer 'start' within 1 s") as err:
        FeastProbe(python, store="redis", repo_dir=tmp_path / "r", project="p",
                   redis=RedisTarget("127.0.0.1", 1, 0, "pw"), start_timeout_s=1.0)  # fmt: skip
    assert "pw" not in str(err.value)


def test_a_probe_that_fails_to_start_says_why(tmp_path: Path) -> None:
    python = _fake_python(tmp_path / "fail", 'echo "no module named feast" >&2; '
                          'echo \'{"error": "ImportError: no feast"}\'; exit 1')  # fmt: skip
    with pytest.raises(FeastProbeError, match="Feast failed 'start': ImportError: no feast"):
        FeastProbe(python, store="redis", repo_dir=tmp_path / "r", project="p",
                   redis=RedisTarget("127.0.0.1", 1), start_timeout_s=10.0)  # fmt: skip
    python = _fake_python(tmp_path / "die", 'echo "Traceback: boom" >&2; exit 3')
    with pytest.raises(FeastProbeError, match="stopped during 'start': Traceback: boom"):
        FeastProbe(python, store="redis", repo_dir=tmp_path / "r2", project="p",
                   redis=RedisTarget("127.0.0.1", 1), start_timeout_s=10.0)  # fmt: skip


def test_the_passfile_gives_the_password_libpq_would(tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(
        "# comment\n"
        "otherhost:5432:*:u:nope\n"
        "127.0.0.1:5433:db:u:pa\\:ss:word\n"
        "*:*:*:u:fallback\n"
    )
    node = Node("g0-primary", Role.PRIMARY, "g0", "127.0.0.1", 5433, "db", "u")
    assert passfile_password(passfile, node) == "pa:ss:word"
    other = Node("g1-primary", Role.PRIMARY, "g1", "127.0.0.1", 5434, "db", "u")
    assert passfile_password(passfile, other) == "fallback"
    stranger = Node("g1-primary", Role.PRIMARY, "g1", "127.0.0.1", 5434, "db", "v")
    assert passfile_password(passfile, stranger) is None
