"""The model registry's pure half: what it accepts, how a transition decides, what it
returns (no servers)."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from mlscale.core.registry import names
from mlscale.core.registry.results import ModelVersion, TransitionResult
from mlscale.core.registry.rules import Step, alias_cache_key, plan_transition
from mlscale.errors import MlscaleError, ModelNotFound, RegistryConflict, RegistryError


@pytest.mark.parametrize(
    "value", ["ranker", "Ranker-v2.1", "a", "9lives", "x" * 128, "fraud_detector"]
)
def test_model_names_accepted(value: str) -> None:
    assert names.check_model_name(value) == value


@pytest.mark.parametrize("value", ["", "-x", ".x", "a/b", "a b", "x" * 129, "é", 3, None, "a\n"])
def test_model_names_refused(value: object) -> None:
    with pytest.raises(RegistryError, match="model name"):
        names.check_model_name(value)


@pytest.mark.parametrize("value", ["production", "staging", "archived", "canary-2", "a_b"])
def test_aliases_accepted(value: str) -> None:
    assert names.check_alias(value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("Production", "not valid"),
        ("2prod", "not valid"),
        ("", "not valid"),
        ("a" * 65, "not valid"),
        ("latest", "reserved"),
        ("v3", "reserved"),
        (None, "not valid"),
    ],
)
def test_aliases_refused(value: object, why: str) -> None:
    with pytest.raises(RegistryError, match=why):
        names.check_alias(value)


@pytest.mark.parametrize("value", [0, -1, True, 1.0, "1", 2**31])
def test_versions_refused(value: object) -> None:
    with pytest.raises(RegistryError, match="whole number"):
        names.check_version(value)


@pytest.mark.parametrize(("value", "want"), [(None, None), (0, 0), (7, 7)])
def test_expected_revisions(value: int | None, want: int | None) -> None:
    assert names.check_expected_revision(value) == want


@pytest.mark.parametrize("value", [-1, True, 1.5, "2"])
def test_expected_revisions_refused(value: object) -> None:
    with pytest.raises(RegistryError, match="expected_revision"):
        names.check_expected_revision(value)


def test_metadata_metrics_tags() -> None:
    assert names.check_metadata(None) == {}
    assert names.check_metadata({"a": [1, {"b": None}]}) == {"a": [1, {"b": None}]}
    for bad, why in [
        ([1], "JSON object"),
        ({"a": float("nan")}, "not JSON"),
        ({"a": object()}, "not JSON"),
        ({"a": "x" * names.MAX_METADATA_BYTES}, "at most"),
    ]:
        with pytest.raises(RegistryError, match=why):
            names.check_metadata(bad)
    assert names.check_metrics({"auc": 1, "loss": 0.5}) == {"auc": 1.0, "loss": 0.5}
    for bad_metrics, why in [
        ({"a": math.inf}, "finite"),
        ({"a": True}, "number"),
        ({"a": "1"}, "number"),
        ({"": 1.0}, "metric name"),
        ([("a", 1.0)], "mapping"),
    ]:
        with pytest.raises(RegistryError, match=why):
            names.check_metrics(bad_metrics)
    assert names.check_tags({"team": "search"}) == {"team": "search"}
    with pytest.raises(RegistryError, match="tag"):
        names.check_tags({"team": 3})


def test_actor_uri_run_reason() -> None:
    assert names.check_actor("ana@example.com") == "ana@example.com"
    for bad in ["", "  ", "a\x00", "x" * 129, None]:
        with pytest.raises(RegistryError, match="actor"):
            names.check_actor(bad)
    assert names.check_artifact_uri("s3://bucket/m/1") == "s3://bucket/m/1"
    for bad in ["", " s3://x", "s3://x\n"]:
        with pytest.raises(RegistryError, match="artifact_uri"):
            names.check_artifact_uri(bad)
    assert names.check_run_id(None) is None
    assert names.check_reason("") == ""
    with pytest.raises(RegistryError, match="reason"):
        names.check_reason("x" * 2001)


@pytest.mark.parametrize(
    ("refs", "want"),
    [
        (["user_stats"], ("user_stats",)),
        (["user_stats:2", "clicks@3"], ("user_stats:2", "clicks:3")),
        (["a", "a", "a:1"], ("a", "a:1")),
        ((), ()),
    ],
)
def test_feature_view_refs(refs: list[str], want: tuple[str, ...]) -> None:
    assert names.check_feature_views(refs) == want


@pytest.mark.parametrize("refs", ["user_stats", ["User"], ["a:0"], ["a:"], ["a:b"], [3]])
def test_feature_view_refs_refused(refs: object) -> None:
    with pytest.raises(RegistryError, match="feature"):
        names.check_feature_views(refs)


# (row under lock, target, expected) -> (step, revision after, previous version)
PLANS = [
    (None, 1, None, Step.INSERT, 1, None),
    (None, 1, 0, Step.INSERT, 1, None),
    (None, 1, 3, Step.CONFLICT, 0, None),
    (None, None, None, Step.NOTHING, 0, None),  # clearing an alias never set
    ((1, 1), 2, 1, Step.UPDATE, 2, 1),
    ((1, 1), 2, None, Step.UPDATE, 2, 1),
    ((1, 1), 2, 0, Step.CONFLICT, 1, 1),  # the first-row race's loser
    ((2, 5), 2, 5, Step.NOTHING, 5, 2),  # already there
    ((2, 5), 2, 4, Step.CONFLICT, 5, 2),  # stale, even though the target matches
    ((2, 5), None, 5, Step.UPDATE, 6, 2),  # clear
    ((None, 6), 3, 6, Step.UPDATE, 7, None),  # set again after a clear
]


@pytest.mark.parametrize(("row", "target", "expected", "step", "revision", "previous"), PLANS)
def test_plan_transition(
    row: tuple[int | None, int] | None,
    target: int | None,
    expected: int | None,
    step: Step,
    revision: int,
    previous: int | None,
) -> None:
    plan = plan_transition("ranker", "production", row, target, expected)
    assert (plan.step, plan.revision, plan.previous_version) == (step, revision, previous)
    if step is Step.CONFLICT:
        assert f"revision {revision}" in plan.message
        assert f"expected revision {expected}" in plan.message
        assert ("unset" if previous is None else f"version {previous}") in plan.message


def test_errors_in_the_tree() -> None:
    assert issubclass(ModelNotFound, RegistryError)
    assert issubclass(RegistryConflict, RegistryError)
    assert issubclass(RegistryError, MlscaleError)
    exc = RegistryConflict("m", current_version=3, current_revision=7, expected_revision=6)
    assert (exc.current_version, exc.current_revision, exc.expected_revision) == (3, 7, 6)


def test_results_are_json_ready_and_read_only() -> None:
    at = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    row = {
        "model": "ranker",
        "version": 2,
        "artifact_uri": "s3://m/2",
        "metadata": {"layers": [1, 2]},
        "metrics": {"auc": 0.9},
        "feature_views": ["user_stats:2"],
        "run_id": "r1",
        "status": "ready",
        "created_at": at,
        "created_by": "ana",
        "aliases": ["staging", "production"],
    }
    mv = ModelVersion.from_row(row)
    assert mv.aliases == ("production", "staging")
    with pytest.raises(TypeError):
        mv.metadata["x"] = 1  # type: ignore[index]
    data = mv.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["created_at"] == at.isoformat() and data["feature_views"] == ["user_stats:2"]
    row["metadata"]["layers"] = "changed?"  # the result keeps its own top-level copy
    assert "layers" in mv.metadata
    tr = TransitionResult("ranker", "production", 2, 1, 4, True, "")
    assert not tr.causal_token and tr.to_dict()["revision"] == 4
    assert alias_cache_key("ranker", "production") == ("alias", "ranker", "production")
