"""Key names: layout, escaping (injective), namespaces, and Redis Cluster slots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from mlscale.cache.keys import KeyBuilder


def slot(name: str) -> int:
    return int(key_slot(name.encode()))


parts = st.lists(
    st.one_of(st.text(max_size=6, alphabet=":{}%ab1 "), st.integers()), min_size=1, max_size=4
)
groups = st.one_of(st.none(), st.text(min_size=1, max_size=5, alphabet=":{}%ab"), st.integers())


@pytest.mark.parametrize(
    ("builder", "args", "expected"),
    [
        (KeyBuilder("feat"), ("user", 42), "mls:feat:v1:user:42"),
        (KeyBuilder("feat", version=3), ("user",), "mls:feat:v3:user"),
        (KeyBuilder("feat"), ("a:b",), "mls:feat:v1:a%3Ab"),
        (KeyBuilder("feat"), ("a", "b"), "mls:feat:v1:a:b"),
        (KeyBuilder("feat"), ("{x}", "50%"), "mls:feat:v1:%7Bx%7D:50%25"),
        (KeyBuilder("feat"), ("",), "mls:feat:v1:"),
        (KeyBuilder("feat", hash_tag=True), ("u", 1), "mls:{feat}:v1:u:1"),
    ],
)
def test_key_layout(builder: KeyBuilder, args: tuple[str | int, ...], expected: str) -> None:
    assert builder.key(*args) == expected


def test_group_is_the_hash_tag_and_overrides_the_namespace_tag() -> None:
    for hash_tag in (False, True):
        kb = KeyBuilder("feat", hash_tag=hash_tag)
        assert kb.key("u", 1, group="tenant7") == "mls:feat:v1:{tenant7}:u:1"
        assert kb.key("u", group="a}b") == "mls:feat:v1:{a%7Db}:u"


def test_companion_key_layout() -> None:
    kb = KeyBuilder("feat")
    assert kb.lease_key("u", 1) == "mls:feat:v1:%lease:{mls:feat:v1:u:1}"
    assert kb.tombstone_key("u", 1, group="g") == "mls:feat:v1:%tomb:{g}:u:1"
    assert kb.tag_key("model:7") == "mls:feat:v1:%tag:model%3A7"
    assert kb.tag_key("m", group="g") == "mls:feat:v1:%tag:{g}:m"
    assert kb.epoch_key() == "mls:feat:v1:%epoch"
    assert kb.invalidation_channel() == "mls:feat:v1:%inval"
    tagged = KeyBuilder("feat", hash_tag=True)
    assert tagged.lease_key("u") == "mls:{feat}:v1:%lease:u"
    assert tagged.tag_key("m") == "mls:{feat}:v1:%tag:m"


@given(parts, parts, groups, groups, st.booleans())
def test_different_parts_never_make_the_same_name(
    a: list[str | int], b: list[str | int], ga: str | int | None, gb: str | int | None, tag: bool
) -> None:
    kb = KeyBuilder("ns", hash_tag=tag)
    norm_a = ([str(p) for p in a], None if ga is None else str(ga))
    norm_b = ([str(p) for p in b], None if gb is None else str(gb))
    names_a = {kb.key(*a, group=ga), kb.lease_key(*a, group=ga), kb.tombstone_key(*a, group=ga)}
    names_b = {kb.key(*b, group=gb), kb.lease_key(*b, group=gb), kb.tombstone_key(*b, group=gb)}
    if norm_a != norm_b:
        assert not names_a & names_b
    # The three kinds of one entry are three different names.
    assert len(names_a) == 3


@given(parts, groups, st.booleans())
def test_lease_and_tombstone_share_the_entry_slot(
    p: list[str | int], group: str | int | None, tag: bool
) -> None:
    kb = KeyBuilder("ns", hash_tag=tag)
    entry = kb.key(*p, group=group)
    assert slot(kb.lease_key(*p, group=group)) == slot(entry)
    assert slot(kb.tombstone_key(*p, group=group)) == slot(entry)


@given(st.lists(parts, min_size=2, max_size=5), st.text(min_size=1, max_size=5))
def test_a_group_or_a_namespace_tag_puts_a_batch_in_one_slot(
    batch: list[list[str | int]], group: str
) -> None:
    kb = KeyBuilder("ns")
    assert (
        len({slot(kb.key(*p, group=group)) for p in batch} | {slot(kb.tag_key("t", group=group))})
        == 1
    )
    tagged = KeyBuilder("ns", hash_tag=True)
    names = [tagged.key(*p) for p in batch] + [tagged.tag_key("t"), tagged.epoch_key()]
    assert len({slot(n) for n in names}) == 1


def test_untagged_keys_spread_over_slots() -> None:
    kb = KeyBuilder("ns")
    assert len({slot(kb.key("user", i)) for i in range(100)}) > 50


def test_namespaces_and_versions_keep_keys_apart() -> None:
    a, b = KeyBuilder("app-a"), KeyBuilder("app-b")
    assert a.key("x") != b.key("x")
    assert not b.owns(a.key("x")) and a.owns(a.key("x")) and a.owns(a.lease_key("x", group=1))
    assert KeyBuilder("app-a", version=2).key("x") != a.key("x")
    assert not KeyBuilder("app-a", version=2).owns(a.key("x"))
    # A namespace cannot be a prefix trick: "app" does not own "app-a"'s keys.
    assert not KeyBuilder("app").owns(a.key("x"))


@pytest.mark.parametrize("namespace", ["", "a:b", "{a}", "a}", "has space", "x" * 65, "é"])
def test_bad_namespaces_are_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        KeyBuilder(namespace)


@pytest.mark.parametrize("version", [-1, 1.5, True, "1"])
def test_bad_versions_are_refused(version: object) -> None:
    with pytest.raises(ValueError, match="version"):
        KeyBuilder("ns", version=version)  # type: ignore[arg-type]


@pytest.mark.parametrize("part", [1.5, None, b"x", True, ("a",)])
def test_parts_must_be_str_or_int(part: object) -> None:
    with pytest.raises(TypeError):
        KeyBuilder("ns").key(part)  # type: ignore[arg-type]


def test_a_key_without_parts_is_refused_since_it_would_alias_key_of_empty_string() -> None:
    kb = KeyBuilder("ns")
    for make in (kb.key, kb.lease_key, kb.tombstone_key):
        with pytest.raises(ValueError, match="at least one part"):
            make()


def test_empty_group_is_refused_since_redis_would_ignore_it() -> None:
    with pytest.raises(ValueError, match="group"):
        KeyBuilder("ns").key("a", group="")


def test_int_and_str_parts_name_the_same_entry_on_purpose() -> None:
    kb = KeyBuilder("ns")
    assert kb.key(7) == kb.key("7")
