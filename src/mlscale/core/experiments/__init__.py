"""The experiment store's pure half: MongoDB-style filter, update, projection, sort
and pipeline documents parsed into typed values (:mod:`.query`, :mod:`.update`,
:mod:`.shape`), and the parameterized SQL they become (:mod:`.jsonpath`,
:mod:`.build`). No I/O; the store is :mod:`mlscale.stores.experiments`.

Supported, with MongoDB's semantics within these limits:

- filters: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $not $and $or`` on dotted
  paths; a path applies to each document element of an array it meets, and a
  comparison matches if any candidate does (an array's elements, one level: an array
  inside an array is not looked into). Type brackets: a number never equals or
  orders against a string or a boolean (``true`` is not ``1``), 1 equals 1.0.
  ``{a: null}`` matches a missing path or a null candidate; a path counts as missing
  only when it reaches no value at all (MongoDB also counts an array element that
  lacks the key: not here). ``$ne``, ``$nin`` and ``$not`` match what the positive
  form does not, missing paths included.
- not supported (raise :class:`~mlscale.errors.UnsupportedQuery` naming them): other
  operators (``$regex $elemMatch $size $type $nor $all $expr`` ...), array indexes in
  paths (``a.0``), equality to a whole array or document, ``$gt``-family with null.
- updates: ``$set $inc $push $unset`` (see :mod:`.update`); projections of inclusion
  or exclusion; sort (see :mod:`.shape`); ``aggregate`` with ``$match $group $sort
  $limit`` in that order, ``$group`` by null or one path with ``$sum $avg $min $max
  $count`` over numbers.
"""

from .build import Built, Target, index_ddl, index_name
from .query import Node, parse_filter
from .results import IndexInfo, UpdateResult
from .shape import (
    Pipeline,
    Projection,
    SortKey,
    apply_projection,
    parse_pipeline,
    parse_projection,
    parse_sort,
)
from .update import UpdateOp, parse_update

__all__ = [
    "Built",
    "IndexInfo",
    "Node",
    "Pipeline",
    "Projection",
    "SortKey",
    "Target",
    "UpdateOp",
    "UpdateResult",
    "apply_projection",
    "index_ddl",
    "index_name",
    "parse_filter",
    "parse_pipeline",
    "parse_projection",
    "parse_sort",
    "parse_update",
]
