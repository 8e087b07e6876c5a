"""The service's pure parts: API key shapes and digests, scopes, the error -> status
table, request checks that keep unstorable rows out, settings through the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlscale.core.apikeys import KeyScope, digest, grants, new_key, parse_key, same_digest
from mlscale.errors import (
    CatalogError,
    FeatureError,
    FeatureViewNotFound,
    IntegrityViolation,
    ModelNotFound,
    NodeUnavailableError,
    NoReplicaAvailable,
    PartialWriteError,
    PredictionError,
    PredictionLogNotFound,
    QueryError,
    ShardKeyError,
    WriterQueueFull,
)
from mlscale.serve.bodies import OnlineRequest, PredictionsRequest, PushRequest
from mlscale.serve.errors import status_of
from mlscale.serve.settings import ServeSettings


def test_keys_are_random_parse_back_and_digest_stably() -> None:
    key_id, text = new_key()
    other_id, other = new_key()
    assert key_id != other_id and text != other
    parsed = parse_key(text)
    assert parsed is not None and parsed.key_id == key_id and text not in repr(parsed)
    assert len(digest(text)) == 32 and same_digest(digest(text), digest(text))
    assert not same_digest(digest(text), digest(other))


@pytest.mark.parametrize(
    "text",
    ["", "hunter2", "mlsk_", "mlsk_0123456789abcdef_short", "mlsk_0123456789ABCDEF_" + "A" * 43,
     "Bearer mlsk_0123456789abcdef_" + "A" * 43, "mlsk_0123456789abcdef_" + "A" * 42 + "="],
)  # fmt: skip
def test_malformed_keys_are_refused_without_a_lookup(text: str) -> None:
    assert parse_key(text) is None


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        (KeyScope.READ, KeyScope.READ, True),
        (KeyScope.READ, KeyScope.WRITE, False),
        (KeyScope.WRITE, KeyScope.READ, True),
        (KeyScope.WRITE, KeyScope.WRITE, True),
    ],
)
def test_write_implies_read(have: KeyScope, need: KeyScope, ok: bool) -> None:
    assert grants(have, need) is ok


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (FeatureViewNotFound("unknown feature view 'x'; registered views: a"), 404),
        (FeatureError("push to feature view 'a': the data lacks column(s) b"), 422),
        (PredictionLogNotFound("no prediction log 'x' (known: a)"), 404),
        (ModelNotFound("no model 'x'"), 404),
        (PredictionError("predictions: model holds a NUL character"), 422),
        (PredictionError("the prediction writer is closed"), 503),
        (PredictionError("flush: 3 rows not yet written after 30 s"), 503),
        (WriterQueueFull("full"), 503),
        (ShardKeyError("out of range"), 422),
        (NoReplicaAvailable("none"), 503),
        (NodeUnavailableError("down"), 503),
        (CatalogError("old"), 503),
        (PartialWriteError("half", committed=("g0",), failed="g1"), 503),
        (IntegrityViolation("dup", sqlstate="23505"), 409),
        (QueryError("bad value", sqlstate="22P02"), 422),
        (QueryError("too many parameters", sqlstate=None), 422),
        (QueryError("disk full", sqlstate="53100"), 503),
    ],
)
def test_errors_map_to_statuses(exc: Exception, status: int) -> None:
    assert status_of(exc) == status  # type: ignore[arg-type]


def test_online_requests_have_one_key_shape() -> None:
    OnlineRequest(features=["v"], entity_ids=[1, "a"])
    OnlineRequest(features=["v"], entity_ids=[[1, "a"], [2, "b"]])
    for bad in ([[1, 2], 3], [[1, 2], [3]], [[]]):
        with pytest.raises(ValidationError, match="same shape"):
            OnlineRequest(features=["v"], entity_ids=bad)
    with pytest.raises(ValidationError, match="entity_ids"):
        OnlineRequest(features=["v"], entity_ids=list(range(1001)))


@pytest.mark.parametrize("bad", ["a\x00b", "\udac9"])
def test_unstorable_text_is_refused_at_the_door(bad: str) -> None:
    with pytest.raises(ValidationError, match="rows"):
        PushRequest(rows=[{"k": [{"deep": bad}]}])
    with pytest.raises(ValidationError, match="extra"):
        PredictionsRequest(
            rows=[{"entity": 1, "model": "m", "model_version": "1", "score": 1, "extra": {bad: 1}}]
        )


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValidationError, match="score"):
        PredictionsRequest(
            rows=[{"entity": 1, "model": "m", "model_version": "1", "score": float("nan")}]
        )


def test_settings_travel_through_the_environment() -> None:
    s = ServeSettings(config_path="/x/mlscale.toml", max_body_bytes=4096, key_cache_s=0)
    assert ServeSettings.from_env(s.to_env()) == s
    with pytest.raises(Exception, match="not set"):
        ServeSettings.from_env({})
    with pytest.raises(Exception, match="at least 1024"):
        ServeSettings(config_path="x", max_body_bytes=10)
