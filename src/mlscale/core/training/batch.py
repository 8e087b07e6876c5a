"""A batch of a training read: columns as numpy arrays, NULL masks, and where to
resume after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .position import Position

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Batch"]


@dataclass(frozen=True, slots=True)
class Batch:
    """``rows`` rows: ``columns`` maps each column name to a numpy array of its values
    (NULLs hold 0, the zero date, or None), ``valid`` each column that may be NULL to a
    bool array (True where not NULL). ``position``: pass it to the reader's ``start``
    to continue right after this batch.

    A uuid column is an ``S16`` array of the 16 raw bytes. numpy drops trailing zero
    bytes when it hands out an ``S`` element, so take exact bytes with
    :meth:`exact` (``to_arrow``, ``to_pandas`` and ``to_dict`` do)."""

    columns: Mapping[str, npt.NDArray[Any]]
    valid: Mapping[str, npt.NDArray[np.bool_]]
    position: Position

    @property
    def rows(self) -> int:
        """How many rows the batch holds."""
        for values in self.columns.values():
            return len(values)
        return 0

    def __len__(self) -> int:
        return self.rows

    def exact(self, name: str) -> npt.NDArray[Any]:
        """Column ``name`` with fixed-size byte values (uuids) as an object array of
        exact ``bytes``; other columns as they are."""
        import numpy as np

        values = self.columns[name]
        if values.dtype.kind != "S":
            return values
        return np.array(values.view(f"V{values.dtype.itemsize}").tolist(), dtype=object)

    def to_numpy(
        self, columns: Sequence[str] | None = None, dtype: npt.DTypeLike | None = None
    ) -> npt.NDArray[Any]:
        """The named columns (default: all) side by side as one 2-D array, rows x
        columns, of ``dtype`` (default: numpy's common type). NULLs are not marked:
        read :attr:`valid` for that."""
        import numpy as np

        names = list(self.columns) if columns is None else list(columns)
        parts = [self.columns[n] for n in names]
        if dtype is None:
            dtype = np.result_type(*parts) if parts else np.float64
        out = np.empty((self.rows, len(parts)), dtype=dtype)
        for j, part in enumerate(parts):
            out[:, j] = part
        return out

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table``, NULLs as Arrow nulls (needs pyarrow)."""
        import pyarrow as pa

        arrays = []
        for name, values in self.columns.items():
            mask = self.valid.get(name)
            if values.dtype.kind == "S":  # exact bytes, not numpy's stripped ones
                size = values.dtype.itemsize
                items = values.view(f"V{size}").tolist()
                if mask is not None:
                    items = [v if ok else None for v, ok in zip(items, mask.tolist(), strict=True)]
                arrays.append(pa.array(items, type=pa.binary(size)))
            elif values.dtype.kind == "O":
                items = values.tolist()
                if mask is not None:
                    items = [v if ok else None for v, ok in zip(items, mask.tolist(), strict=True)]
                arrays.append(pa.array(items))
            else:
                arrays.append(pa.array(values, mask=None if mask is None else ~mask))
        return pa.table(arrays, names=list(self.columns))

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame``; a column with NULLs becomes a nullable pandas column
        (through Arrow, so it needs pyarrow then)."""
        import pandas as pd

        if any(not m.all() for m in self.valid.values()):
            return self.to_arrow().to_pandas(types_mapper=pd.ArrowDtype)
        return pd.DataFrame({name: self.exact(name) for name in self.columns}, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """The batch as plain data: column name -> list of values (None for NULL)."""
        out: dict[str, Any] = {}
        for name in self.columns:
            items = self.exact(name).tolist()
            mask = self.valid.get(name)
            if mask is not None:
                items = [v if ok else None for v, ok in zip(items, mask.tolist(), strict=True)]
            out[name] = items
        return {"columns": out, "position": self.position.to_string()}
