"""Feature views: names, types, dims, TTL, duplicates, entity/column clashes, specs."""

from __future__ import annotations

from typing import Any

import pytest

from mlscale.core.features.spec import Entity, Feature, FeatureType, FeatureView, check_name
from mlscale.core.slots import KeyType
from mlscale.errors import FeatureError

USER = (Entity("user_id"),)


def view(**kw: Any) -> FeatureView:
    args: dict[str, Any] = {"name": "v", "entities": USER, "features": (Feature("a"),)}
    args.update(kw)
    return FeatureView(**args)


@pytest.mark.parametrize("name", ["a", "user_stats", "x1_2", "a" * 40])
def test_good_names(name: str) -> None:
    assert check_name(name, "thing") == name


@pytest.mark.parametrize(
    "name", ["", "A", "1a", "_a", "a-b", "a b", "a" * 41, "naïve", None, 3, "a;drop"]
)
def test_bad_names(name: Any) -> None:
    with pytest.raises(FeatureError, match="not a valid name"):
        check_name(name, "thing")


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"name": "Bad"}, "feature view 'Bad' is not a valid name"),
        ({"features": ()}, "needs Feature values"),
        ({"features": ("a",)}, "needs Feature values"),
        ({"features": tuple(Feature(f"f{i}") for i in range(1001))}, "at most 1000"),
        ({"entities": ()}, "at least one entity"),
        ({"entities": (3,)}, "entities must be Entity"),
        ({"features": (Feature("a"), Feature("a"))}, "duplicate names a"),
        ({"features": (Feature("user_id"),)}, "duplicate names user_id"),
        ({"entities": (Entity("k"), Entity("k"))}, "duplicate names k"),
        ({"features": (Feature("x", FeatureType.BOOL),), "entities": (Entity("b_x"),)}, "clash"),
        ({"features": (Feature("x", FeatureType.TEXT),), "entities": (Entity("t_x"),)}, "clash"),
        (
            {
                "features": (Feature("x", FeatureType.EMBEDDING, dim=4),),
                "entities": (Entity("e_x"),),
            },
            "clash",
        ),
        ({"version": 0}, "version must be 1..9999"),
        ({"version": 10_000}, "version must be 1..9999"),
        ({"version": True}, "version must be 1..9999"),
        ({"version": "1"}, "version must be 1..9999"),
        ({"ttl_s": 0}, "ttl_s must be a positive number"),
        ({"ttl_s": -5.0}, "ttl_s must be a positive number"),
        ({"ttl_s": True}, "ttl_s must be a positive number"),
        ({"ttl_s": "1d"}, "ttl_s must be a positive number"),
        ({"ttl_s": float("nan")}, "ttl_s must be a positive number"),
        ({"family": "Users"}, "key family 'Users' is not a valid name"),
    ],
)
def test_bad_views(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(FeatureError, match=fragment):
        view(**kw)


def test_entity_named_like_a_plain_feature_column_is_fine() -> None:
    # A FLOAT feature lives in f4, so an entity called b_x clashes with nothing.
    assert view(entities=(Entity("b_x"),), features=(Feature("x"),)).entity_names == ("b_x",)


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"name": "x", "type": "complex"}, "unknown type 'complex'"),
        ({"name": "x", "type": FeatureType.EMBEDDING}, "needs dim between 1 and 16000"),
        ({"name": "x", "type": FeatureType.EMBEDDING, "dim": 0}, "needs dim"),
        ({"name": "x", "type": FeatureType.EMBEDDING, "dim": 16001}, "needs dim"),
        ({"name": "x", "type": FeatureType.EMBEDDING, "dim": True}, "needs dim"),
        ({"name": "x", "type": FeatureType.EMBEDDING, "dim": 4.0}, "needs dim"),
        ({"name": "x", "type": FeatureType.FLOAT, "dim": 4}, "dim is for embeddings only"),
        ({"name": "X"}, "feature 'X' is not a valid name"),
    ],
)
def test_bad_features(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(FeatureError, match=fragment):
        Feature(**kw)


def test_feature_type_from_its_string() -> None:
    assert Feature("x", "int").type is FeatureType.INT  # type: ignore[arg-type]
    assert Feature("x", FeatureType.EMBEDDING, dim=3).dim == 3


@pytest.mark.parametrize(
    ("key_type", "want"),
    [
        ("int8", KeyType.INT8),
        ("bigint", KeyType.INT8),
        ("int4", KeyType.INT4),
        ("int2", KeyType.INT2),
        ("text", KeyType.TEXT),
        ("uuid", KeyType.UUID),
        (KeyType.UUID, KeyType.UUID),
    ],
)
def test_entity_key_types(key_type: Any, want: KeyType) -> None:
    assert Entity("k", key_type).key_type is want


@pytest.mark.parametrize("key_type", ["bytea", "float8", "nonsense", 5])
def test_entity_refuses_other_key_types(key_type: Any) -> None:
    with pytest.raises(FeatureError, match="is not one of int8, int4, int2, text, uuid"):
        Entity("k", key_type)


@pytest.mark.parametrize("name", ["event_ts", "created_ts", "f4", "i8", "row_id"])
def test_entity_refuses_reserved_names(name: str) -> None:
    with pytest.raises(FeatureError, match="reserved"):
        Entity(name)


def test_entity_given_by_name_and_family_defaults_to_view_name() -> None:
    v = FeatureView("v", entities="user_id", features=(Feature("a"),))  # type: ignore[arg-type]
    assert v.entities == (Entity("user_id", KeyType.INT8),)
    assert v.family == "v"
    assert v.key_types == (KeyType.INT8,)


def test_feature_lookup() -> None:
    v = view(features=(Feature("a"), Feature("b", FeatureType.INT)))
    assert v.feature("b").type is FeatureType.INT
    with pytest.raises(FeatureError, match="has no feature 'c'; it has a, b"):
        v.feature("c")
    many = view(features=tuple(Feature(f"f{i}") for i in range(25)))
    with pytest.raises(FeatureError, match="and 5 more"):
        many.feature("zz")


def test_spec_round_trip() -> None:
    v = FeatureView(
        "user_stats",
        entities=(Entity("user_id", KeyType.INT8), Entity("region", KeyType.TEXT)),
        features=(
            Feature("ctr", description="7 days"),
            Feature("ratio", allow_nan=True),
            Feature("clicks", FeatureType.INT),
            Feature("vip", FeatureType.BOOL),
            Feature("country", FeatureType.TEXT),
            Feature("emb", FeatureType.EMBEDDING, dim=8),
        ),
        ttl_s=3600.0,
        version=3,
        family="users",
        owner="ml-team",
        description="what users did",
    )
    spec = v.to_spec()
    assert spec["entities"] == [
        {"name": "user_id", "key_type": "int8"},
        {"name": "region", "key_type": "text"},
    ]
    assert spec["features"][0] == {"name": "ctr", "type": "float", "description": "7 days"}
    assert spec["features"][1] == {"name": "ratio", "type": "float", "allow_nan": True}
    assert spec["features"][5] == {"name": "emb", "type": "embedding", "dim": 8}
    again = FeatureView.from_spec(spec)
    assert again == v
    assert again.to_spec() == spec
    assert again.feature("clicks").type is FeatureType.INT  # the index is rebuilt
    # Defaults: version 1, the family from the name, no TTL.
    minimal = FeatureView.from_spec(
        {"name": "m", "entities": [{"name": "k", "key_type": "int8"}], "features": [{"name": "a"}]}
    )
    assert (minimal.version, minimal.family, minimal.ttl_s) == (1, "m", None)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"name": "v"},
        {"name": "v", "entities": [{"name": "k"}], "features": [{"name": "a"}]},
        {"name": "v", "entities": [{"name": "k", "key_type": "int8"}], "features": [{}]},
        {"name": "v", "entities": [{"name": "k", "key_type": "int8"}], "features": None},
        {
            "name": "v",
            "entities": [{"name": "k", "key_type": "int8"}],
            "features": [{"name": "a", "type": "complex"}],
        },
    ],
)
def test_malformed_specs(spec: dict[str, Any]) -> None:
    with pytest.raises(FeatureError):
        FeatureView.from_spec(spec)
