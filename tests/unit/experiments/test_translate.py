"""The experiment store's translator, as tables: filter documents to typed trees,
trees to jsonpath text and SQL (values always bound, never in the text), updates,
projections, sorts and pipelines, and the errors naming unsupported operators."""

from __future__ import annotations

from typing import Any

import pytest

from mlscale.core.experiments import build
from mlscale.core.experiments.jsonpath import literal, path_text, predicate
from mlscale.core.experiments.query import (
    And,
    AnyOf,
    Compare,
    Exists,
    IsNull,
    Not,
    Or,
    parse_filter,
)
from mlscale.core.experiments.routing import decode_key, named_experiment
from mlscale.core.experiments.shape import (
    apply_projection,
    parse_pipeline,
    parse_projection,
    parse_sort,
)
from mlscale.core.experiments.update import UpdateOp, parse_update
from mlscale.errors import ExperimentError, UnsupportedQuery
from tests.unit.experiments.mongo_model import Conflict, apply_update, matches

P = ("params", "lr")

FILTERS: list[tuple[dict[str, Any] | None, Any]] = [
    (None, And(())),
    ({}, And(())),
    ({"params.lr": 0.1}, Compare(P, "==", 0.1)),
    ({"params.lr": {"$eq": None}}, IsNull(P)),
    ({"params.lr": None}, IsNull(P)),
    ({"params.lr": {"$ne": 1}}, Not(Compare(P, "==", 1))),
    ({"params.lr": {"$gt": 1, "$lte": 2}}, And((Compare(P, ">", 1), Compare(P, "<=", 2)))),
    ({"params.lr": {"$in": [1, True, 1, None]}}, Or((IsNull(P), AnyOf(P, (1, True))))),
    ({"params.lr": {"$in": []}}, Or(())),
    ({"params.lr": {"$nin": ["a"]}}, Not(AnyOf(P, ("a",)))),
    ({"params.lr": {"$exists": True}}, Exists(P)),
    ({"params.lr": {"$exists": False}}, Not(Exists(P))),
    ({"params.lr": {"$not": {"$gt": 1}}}, Not(Compare(P, ">", 1))),
    (
        {"$or": [{"a": 1}, {"b": "x"}], "c": True},
        And(
            (
                Or((Compare(("a",), "==", 1), Compare(("b",), "==", "x"))),
                Compare(("c",), "==", True),
            )
        ),
    ),
]


@pytest.mark.parametrize(("document", "tree"), FILTERS)
def test_filters_parse_to_trees(document: dict[str, Any] | None, tree: Any) -> None:
    assert parse_filter(document) == tree


UNSUPPORTED: list[tuple[Any, str]] = [
    ({"a": {"$regex": "^x"}}, "$regex"),
    ({"a": {"$elemMatch": {"b": 1}}}, "$elemMatch"),
    ({"a": {"$size": 1}}, "$size"),
    ({"a": {"$type": "string"}}, "$type"),
    ({"a": {"$all": [1]}}, "$all"),
    ({"$nor": [{"a": 1}]}, "$nor"),
    ({"$expr": {}}, "$expr"),
    ({"$where": "x"}, "$where"),
    ({"a.0": 1}, ".0"),
    ({"a.$": 1}, "$"),
    ({"a": [1]}, "$eq"),
    ({"a": {"b": 1}}, "$eq"),
    ({"a": {"$in": [[1]]}}, "$in"),
    ({"a": {"$gt": None}}, "$gt"),
    ({"a": {"$not": "x"}}, "$not"),
]


@pytest.mark.parametrize(("document", "operator"), UNSUPPORTED)
def test_unsupported_filters_name_the_operator(document: Any, operator: str) -> None:
    with pytest.raises(UnsupportedQuery) as info:
        parse_filter(document)
    assert info.value.operator == operator
    assert operator.strip(".") in str(info.value)


@pytest.mark.parametrize(
    "document",
    [[{"a": 1}], {"a": {"$gt": 1, "b": 2}}, {"": 1}, {"a..b": 1}, {"$and": []},
     {"$or": [1]}, {"a": {"$exists": "yes"}}, {"a": float("nan")}, {"a": {"$in": 3}}],
)  # fmt: skip
def test_malformed_filters_raise_experiment_error(document: Any) -> None:
    with pytest.raises(ExperimentError):
        parse_filter(document)


JSONPATH = [
    (path_text(("a", "b")), '$."a"."b"'),
    (path_text(('q"x', "é")), '$."q\\"x"."\\u00e9"'),
    (literal(None), "null"),
    (literal(True), "true"),
    (literal(-3), "-3"),
    (literal(1.0), "1"),
    (literal(1e-05), "1e-05"),
    (literal(2.5), "2.5"),
    (literal('x") || true || ("'), '"x\\") || true || (\\""'),
    (
        predicate('$."a"', "==", (1, "b")),
        '$."a" ? (@.type() != "array" && (@ == 1 || @ == "b"))',
    ),
]


@pytest.mark.parametrize(("got", "want"), JSONPATH)
def test_jsonpath_text(got: str, want: str) -> None:
    assert got == want


def test_values_are_bound_never_in_the_sql_text() -> None:
    secret = "x'); DROP TABLE t; --"
    node = parse_filter({"params.lr": secret, "tags": {"$in": [secret, 7]}})
    for built in (
        build.find_sql(build.Target("mlscale_runs"), node, parse_sort({"m": -1}), 5),
        build.count_sql(build.Target("mlscale_runs", experiment=secret), node),
        build.update_sql(
            build.Target("mlscale_runs"), node, parse_update({"$set": {"n": secret}}), None
        ),
    ):
        assert secret not in built.text and "DROP" not in built.text
        assert built.text.count("%s") == len(built.params)
    params = build.find_sql(build.Target("mlscale_runs"), node, (), None).params
    assert params == [
        '$."params"."lr" ? (@.type() != "array" && (@ == "x\'); DROP TABLE t; --"))',
        '$."tags" ? (@.type() != "array" && (@ == "x\'); DROP TABLE t; --" || @ == 7))',
    ]


def test_an_indexed_path_is_written_in_the_index_expression() -> None:
    node = parse_filter({"params.lr": {"$in": [1, 2]}, "tags": "a"})
    built = build.find_sql(build.Target("mlscale_runs", frozenset({P})), node, (), None)
    expr = """jsonb_path_query_array("doc", '$."params"."lr"'::jsonpath)"""
    assert f"{expr} @? %s::jsonpath" in built.text
    assert built.params[0] == '$[*] ? (@.type() != "array" && (@ == 1 || @ == 2))'
    assert '"doc" @? %s::jsonpath' in built.text  # tags: no index, the document form
    ranged = build.find_sql(
        build.Target("mlscale_runs", frozenset({P})),
        parse_filter({"params.lr": {"$gt": 1}, "tags": {"$exists": True}}),
        (),
        None,
    )
    assert "jsonb_path_query_array" not in ranged.text  # GIN serves equality only
    ddl = build.index_ddl("mlscale_runs", P)
    assert expr in ddl and "USING gin" in ddl and "jsonb_path_ops" in ddl


def test_find_sql_orders_by_typed_columns_then_id() -> None:
    built = build.find_sql(build.Target("t"), And(()), parse_sort([("m.a", -1), ("b", 1)]), 3)
    assert built.text.endswith(
        'ORDER BY "s0b" DESC, "s0n" DESC, "s0t" DESC, "s1b" ASC, "s1n" ASC, "s1t" ASC, '
        '"id" ASC, "experiment" ASC LIMIT 3'
    )
    assert 'COLLATE "C"' in built.text


@pytest.mark.parametrize(
    ("document", "ops"),
    [
        ({"$set": {"a.b": {"c": [1]}}}, (UpdateOp("set", ("a", "b"), {"c": [1]}),)),
        (
            {"$inc": {"n": 2}, "$unset": {"x": ""}},
            (UpdateOp("inc", ("n",), 2), UpdateOp("unset", ("x",))),
        ),
        ({"$push": {"tags": [1]}}, (UpdateOp("push", ("tags",), [1]),)),
    ],
)  # fmt: skip
def test_updates_parse(document: dict[str, Any], ops: tuple[UpdateOp, ...]) -> None:
    assert parse_update(document) == ops


@pytest.mark.parametrize(
    ("document", "error", "words"),
    [
        ({"$rename": {"a": "b"}}, UnsupportedQuery, "$rename"),
        ({"$addToSet": {"a": 1}}, UnsupportedQuery, "$addToSet"),
        ({"a": 1}, UnsupportedQuery, "replacement"),
        ({"$push": {"a": {"$each": [1]}}}, UnsupportedQuery, "$each"),
        ({"$set": {"_id": 1}}, ExperimentError, "'_id' cannot be changed"),
        ({"$set": {"experiment": "x"}}, ExperimentError, "cannot be changed"),
        ({"$set": {"a": 1}, "$inc": {"a.b": 1}}, ExperimentError, "conflict"),
        ({"$inc": {"a": "1"}}, ExperimentError, "number"),
        ({"$inc": {"a": True}}, ExperimentError, "number"),
        ({"$set": {"a": {"b.c": 1}}}, ExperimentError, "key"),
        ({}, ExperimentError, "non-empty"),
    ],
)
def test_bad_updates(document: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace("$", r"\$")):
        parse_update(document)


DOC = {"_id": "r1", "p": {"lr": 1, "opt": "adam"}, "a": [{"b": 1, "c": 2}, {"c": 3}, 5], "n": 1}


@pytest.mark.parametrize(
    ("projection", "want"),
    [
        (None, DOC),
        ({"p.lr": 1}, {"_id": "r1", "p": {"lr": 1}}),
        ({"p.lr": 1, "_id": 0}, {"p": {"lr": 1}}),
        ({"a.b": 1}, {"_id": "r1", "a": [{"b": 1}, {}]}),
        ({"p": 0, "a.c": 0}, {"_id": "r1", "a": [{"b": 1}, {}, 5], "n": 1}),
        ({"_id": 0}, {k: v for k, v in DOC.items() if k != "_id"}),
        ({"nope": 1}, {"_id": "r1"}),
    ],
)
def test_projections(projection: Any, want: Any) -> None:
    assert apply_projection(DOC, parse_projection(projection)) == want


def test_projection_mixing_refused() -> None:
    with pytest.raises(ExperimentError, match="both include and exclude"):
        parse_projection({"a": 1, "b": 0})


@pytest.mark.parametrize(
    ("pipeline", "operator"),
    [
        ([{"$unwind": "$a"}], "$unwind"),
        ([{"$project": {"a": 1}}], "$project"),
        ([{"$limit": 1}, {"$match": {}}], "$match"),
        ([{"$group": {"_id": None, "x": {"$push": "$a"}}}], "$push"),
        ([{"$group": {"_id": {"a": "$a"}}}], "$group"),
        ([{"$group": {"_id": "$a", "n": {"$sum": 1}}}, {"$sort": {"m": 1}}], "$sort"),
    ],
)
def test_unsupported_pipelines(pipeline: Any, operator: str) -> None:
    with pytest.raises(UnsupportedQuery) as info:
        parse_pipeline(pipeline)
    assert info.value.operator == operator


def test_pipeline_sql_groups_by_positions_and_counts_documents() -> None:
    plan = parse_pipeline(
        [{"$match": {"a": 1}}, {"$group": {"_id": "$p.opt", "n": {"$sum": 1}, "m": {"$avg": "$x"}}},
         {"$sort": {"n": -1}}, {"$limit": 3}]
    )  # fmt: skip
    assert plan.group is not None
    built = build.aggregate_sql(build.Target("t"), plan.match, plan.group, plan.sort, plan.limit)
    assert "GROUP BY 1, 2, 3" in built.text and "count(*) AS __n" in built.text
    assert built.text.endswith('"a_n" DESC NULLS LAST, "kb" ASC, "kn" ASC, "kt" ASC LIMIT 3')


@pytest.mark.parametrize(
    ("document", "experiment"),
    [
        ({"experiment": "e1"}, "e1"),
        ({"experiment": "e1", "a": 1}, "e1"),
        ({"$and": [{"a": 1}, {"experiment": {"$in": ["e2"]}}]}, "e2"),
        ({"experiment": {"$in": ["e1", "e2"]}}, None),
        ({"$or": [{"experiment": "e1"}]}, "e1"),  # one branch
        ({"$or": [{"experiment": "e1"}, {"a": 1}]}, None),
        ({"experiment": {"$ne": "e1"}}, None),
        ({"experiment": 3}, None),
    ],
)
def test_a_query_naming_one_experiment_goes_to_its_group(document: Any, experiment: Any) -> None:
    assert named_experiment(parse_filter(document)) == experiment


@pytest.mark.parametrize(
    ("row", "value"),
    [((1, None, None), None), ((2, 3, None), 3), ((3, None, "x"), "x"), ((5, None, "[1]"), [1]),
     ((4, None, '{"a": 1}'), {"a": 1}), ((6, None, "false"), False)],
)  # fmt: skip
def test_group_keys_decode(row: tuple[int, Any, Any], value: Any) -> None:
    assert decode_key(*row) == value


# The evaluator itself, on the cases its rules name (it is the reference the
# differential tests trust).
EVALUATOR = [
    ({"a": [1, 2]}, {"a": 1}, True),
    ({"a": [[1]]}, {"a": 1}, False),
    ({"a": [{"b": 1}, {"b": 2}]}, {"a.b": 2}, True),
    ({"a": [[{"b": 1}]]}, {"a.b": 1}, False),
    ({"a": [{"b": [1, 3]}]}, {"a.b": 3}, True),
    ({"a": True}, {"a": 1}, False),
    ({"a": 1.0}, {"a": 1}, True),
    ({"a": "1"}, {"a": {"$gt": 0}}, False),
    ({}, {"a": None}, True),
    ({"a": [None]}, {"a": None}, True),
    ({"a": [{"c": 1}]}, {"a.b": None}, True),
    ({"a": [{"c": 1}, {"b": 1}]}, {"a.b": None}, False),
    ({}, {"a": {"$ne": 1}}, True),
    ({"a": [1, 2]}, {"a": {"$ne": 1}}, False),
    ({"a": None}, {"a": {"$exists": True}}, True),
    ({"a": [1, 5]}, {"a": {"$gt": 2, "$lt": 4}}, True),  # different elements, as MongoDB
]


@pytest.mark.parametrize(("doc", "flt", "want"), EVALUATOR)
def test_the_evaluator(doc: dict[str, Any], flt: dict[str, Any], want: bool) -> None:
    assert matches(doc, flt) is want


def test_the_evaluator_updates() -> None:
    doc = {"a": {"b": 1}, "s": "x", "l": [1]}
    out = apply_update(doc, {"$set": {"n.m": 1}, "$inc": {"a.b": 2}, "$push": {"l": [2]}})
    assert out == {"a": {"b": 3}, "s": "x", "l": [1, [2]], "n": {"m": 1}}
    for bad in (
        {"$set": {"s.t": 1}},
        {"$inc": {"s": 1}},
        {"$push": {"s": 1}},
        {"$set": {"l.x": 1}},
    ):
        with pytest.raises(Conflict):
            apply_update(doc, bad)
    assert apply_update(doc, {"$unset": {"l.x": "", "a.b": ""}}) == {"a": {}, "s": "x", "l": [1]}
