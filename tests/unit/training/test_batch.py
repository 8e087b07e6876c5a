"""Batches: numpy, Arrow and pandas views, NULLs kept."""

from __future__ import annotations

import numpy as np
import pytest

from mlscale.core.training.batch import Batch
from mlscale.core.training.position import Position

POS = Position(0, 1, 16, None, 1, 2)


def batch() -> Batch:
    return Batch(
        {"id": np.array([1, 2, 3]), "x": np.array([0.5, 0.0, 1.5], dtype=np.float32),
         "s": np.array(["a", None, "c"], dtype=object)},
        {"x": np.array([True, False, True]), "s": np.array([True, False, True])},
        POS,
    )


def test_numpy_matrix() -> None:
    b = batch()
    assert len(b) == 3
    m = b.to_numpy(["id", "x"], dtype=np.float32)
    assert m.shape == (3, 2) and m[2].tolist() == [3.0, 1.5]


def test_arrow_and_pandas_keep_nulls() -> None:
    pytest.importorskip("pyarrow")
    t = batch().to_arrow()
    assert t.column("x").null_count == 1 and t.column("s").to_pylist() == ["a", None, "c"]
    df = batch().to_pandas()
    assert df["x"].isna().tolist() == [False, True, False]


def test_pandas_without_nulls_is_plain() -> None:
    b = Batch({"id": np.array([1, 2])}, {"id": np.array([True, True])}, POS)
    assert b.to_pandas()["id"].tolist() == [1, 2]


def test_to_dict() -> None:
    d = batch().to_dict()
    assert d["columns"]["x"] == [0.5, None, 1.5]
    assert d["position"] == POS.to_string()


def test_uuid_bytes_come_out_whole() -> None:
    """numpy strips trailing zero bytes from an S16 element; the batch never does."""
    import numpy as np

    raw = [b"\x01" * 15 + b"\x00", b"\x00" * 16, b"\x02" * 16]
    ids = np.array(raw, dtype="S16")
    batch = Batch({"id": ids}, {}, POS)
    assert batch.exact("id").tolist() == raw
    assert batch.to_dict()["columns"]["id"] == raw
    assert batch.to_arrow().column("id").to_pylist() == raw
    assert batch.to_pandas()["id"].tolist() == raw
    masked = Batch({"id": ids}, {"id": np.array([True, False, True])}, POS)
    assert masked.to_arrow().column("id").to_pylist() == [raw[0], None, raw[2]]
