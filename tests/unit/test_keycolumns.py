"""Integer key columns: cast only what is an integer, name the rows out of range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlscale.core.keycolumns import integer_keys, rows_text
from mlscale.core.slots import KeyType
from mlscale.errors import FeatureError


def _keys(values: list[object], key_type: KeyType = KeyType.INT8) -> np.ndarray:
    return integer_keys(
        pd.Series(values), key_type, where="push", what="entity 'u'", error=FeatureError
    )


def test_integers_of_any_width_come_back_as_int64() -> None:
    assert _keys([1, -2, 3]).dtype == np.int64
    assert _keys([1, 2**63 - 1]).tolist() == [1, 2**63 - 1]
    unsigned = pd.Series(np.array([1, 2], dtype=np.uint32))
    out = integer_keys(unsigned, KeyType.INT4, where="w", what="k", error=FeatureError)
    assert out.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("values", "key_type", "fragment"),
    [
        ([1.5, 2.0], KeyType.INT8, "integers expected"),
        (["1", "2"], KeyType.INT8, "integers expected"),
        ([1, 2**63], KeyType.INT8, "out of range"),
        ([1, 2**31], KeyType.INT4, r"out of range for int4 in row\(s\) 1 \(1 in all\)"),
        ([0, -(2**15) - 1, 2**15], KeyType.INT2, r"row\(s\) 1, 2 \(2 in all\)"),
    ],
)
def test_anything_else_is_refused_with_the_rows_named(
    values: list[object], key_type: KeyType, fragment: str
) -> None:
    with pytest.raises(FeatureError, match=fragment) as err:
        _keys(values, key_type)
    assert str(err.value).startswith("push: entity 'u'")


def test_rows_text_shows_five_and_counts_all() -> None:
    mask = np.zeros(10, dtype=bool)
    mask[[0, 2, 3, 4, 6, 9]] = True
    assert rows_text(mask) == "row(s) 0, 2, 3, 4, 6 ... (6 in all)"
