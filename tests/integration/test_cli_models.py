"""``mlscale models list|show|versions|history|promote`` against the session cluster, run
as a user runs them (a subprocess): their output, their JSON, and their errors."""

from __future__ import annotations

import json
import uuid

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.stores.registry import ModelRegistry
from tests.conftest import run_cli
from tests.integration.sharding_cleanup import restore_sharding

pytestmark = pytest.mark.integration


def test_models_commands(cluster: Cluster, local_cluster: LocalCluster) -> None:
    config = str(local_cluster.layout.config)

    def cli(*args: str) -> tuple[int, str, str]:
        res = run_cli("models", *args, "--config", config, timeout=120)
        return res.returncode, res.stdout, res.stderr

    before = cluster.refresh_shards()
    try:
        registry = ModelRegistry(cluster)
        name = f"cli-{uuid.uuid4().hex[:6]}"
        registry.create_model(name, description="from the cli test", actor="ana")
        for i in (1, 2):
            registry.register_version(
                name, artifact_uri=f"s3://m/{i}", metrics={"auc": 0.8 + i / 100}, actor="ana"
            )

        code, out, _ = cli("promote", name, "1", "--reason", "first", "--actor", "ana", "--json")
        assert code == 0
        assert json.loads(out)["revision"] == 1 and json.loads(out)["previous_version"] is None
        code, out, _ = cli("promote", name, "2", "--expect-revision", "1", "--reason", "better")
        assert code == 0 and "from version 1 to version 2 (revision 2)" in out
        code, _, err = cli("promote", name, "1", "--expect-revision", "1", "--reason", "late")
        assert code == 2 and "at version 2 (revision 2)" in err and "expected revision 1" in err

        code, out, _ = cli("list", "--json")
        mine = [m for m in json.loads(out) if m["name"] == name]
        assert code == 0 and mine[0]["aliases"] == {"production": 2}
        code, out, _ = cli("show", name)
        assert code == 0 and "production=2" in out and "from the cli test" in out
        code, out, _ = cli("versions", name, "--json")
        assert code == 0 and [v["aliases"] for v in json.loads(out)] == [[], ["production"]]
        code, out, _ = cli("history", name, "--alias", "production", "--json")
        rows = json.loads(out)
        assert code == 0 and [(r["from_version"], r["to_version"]) for r in rows] == [
            (None, 1),
            (1, 2),
        ]
        assert rows[0]["actor"] == "ana" and rows[1]["reason"] == "better"

        code, _, err = cli("show", "no-such-model")
        assert code == 2 and "no model 'no-such-model'" in err
        code, _, err = cli("promote", name, "9", "--reason", "x")
        assert code == 2 and "has no version 9" in err
    finally:
        restore_sharding(cluster, before)
