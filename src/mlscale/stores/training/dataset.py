"""A PyTorch-style iterable dataset over the training reader, without importing torch.

A :class:`TrainingDataset` holds only a config path and the reader's options, so it
pickles small and survives DataLoader's fork or spawn: each process opens its own
cluster the first time it iterates (and again if it finds itself in a new process).
The data-loading worker is found through ``torch.utils.data.get_worker_info()`` only
when torch is already imported (``sys.modules``): mlscale never imports it itself,
except in :meth:`TrainingDataset.to_torch`, which the caller asks for.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...core.training.batch import Batch
from ...core.training.units import Split
from ...errors import ConfigError
from .reader_sync import TrainingReader

__all__ = ["TrainingDataset", "current_worker"]


def current_worker() -> tuple[int, int]:
    """(worker, num_workers) of the DataLoader worker running this code; (0, 1) in the
    main process or when torch is not imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0, 1
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (int(info.id), int(info.num_workers))


class TrainingDataset:
    """Iterating yields the batches of this process's share of the rows: rank ``rank``
    of ``world_size``, and of that the DataLoader worker's share (found at iteration).

    ``config``: the cluster's config file (mlscale.toml); ``transform``: applied to
    each :class:`Batch` (default: the batch itself); ``reader``: the keyword arguments
    of :class:`TrainingReader` (table or query, batch_size, seed, units, ...). Use with
    ``DataLoader(dataset.to_torch(), batch_size=None, num_workers=k)``: the reader
    already makes batches.
    """

    def __init__(
        self,
        config: str | Path,
        table: str | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        transform: Callable[[Batch], Any] | None = None,
        **reader: Any,
    ) -> None:
        if "split" in reader or "start" in reader:
            raise ConfigError(
                "TrainingDataset splits by rank and worker itself; pass rank= and world_size="
            )
        Split(rank, world_size)  # checks them now rather than in a worker
        self.config = str(config)
        self.table = table
        self.rank = rank
        self.world_size = world_size
        self.transform = transform
        self.reader_options = reader
        self._cluster: Any = None
        self._pid = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cluster"], state["_pid"] = None, 0  # each process opens its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _open(self) -> Any:
        from ...engine.cluster_sync import Cluster

        if self._cluster is None or self._pid != os.getpid():
            self._cluster = Cluster.from_file(self.config)
            self._pid = os.getpid()
        return self._cluster

    def reader(self, worker: int = 0, num_workers: int = 1) -> TrainingReader:
        """The reader of ``worker`` of ``num_workers`` in this rank."""
        split = Split(self.rank, self.world_size, worker, num_workers)
        return TrainingReader(self._open(), self.table, split=split, **self.reader_options)

    def __iter__(self) -> Iterator[Any]:
        worker, num_workers = current_worker()
        for batch in self.reader(worker, num_workers):
            yield batch if self.transform is None else self.transform(batch)

    def close(self) -> None:
        """Close this process's cluster, if it opened one."""
        if self._cluster is not None and self._pid == os.getpid():
            self._cluster.close()
        self._cluster = None

    def to_torch(self) -> Any:
        """This dataset as a ``torch.utils.data.IterableDataset`` (imports torch)."""
        return _torch_class()(self)


_TORCH_CLASS: Any = None


def _torch_class() -> Any:
    global _TORCH_CLASS
    if _TORCH_CLASS is None:
        base: Any = importlib.import_module("torch.utils.data").IterableDataset

        class TorchTrainingDataset(base):  # type: ignore[misc]
            """A :class:`TrainingDataset` as torch's IterableDataset."""

            def __init__(self, dataset: TrainingDataset) -> None:
                self.dataset = dataset

            def __iter__(self) -> Iterator[Any]:
                return iter(self.dataset)

            def __reduce__(self) -> Any:
                return (_rebuild, (self.dataset,))

        _TORCH_CLASS = TorchTrainingDataset
    return _TORCH_CLASS


def _rebuild(dataset: TrainingDataset) -> Any:
    return dataset.to_torch()
