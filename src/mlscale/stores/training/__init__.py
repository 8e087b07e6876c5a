"""The training-data reader: a sharded table or a query from every shard group, as
numpy batches through binary COPY, split between ranks and data-loading workers by
slot ranges, in a seeded order, resumable from any batch.

    from mlscale.stores.training import TrainingReader

    reader = TrainingReader(cluster, "events", seed=7, batch_size=4096).split(rank, world)
    for batch in reader:
        x = batch.to_numpy(["f0", "f1"], dtype="float32")
        save(batch.position.to_string())            # resume: reader.resume(saved)

``TrainingDataset`` wraps it for PyTorch's DataLoader (``dataset.to_torch()``).
"""

from ...core.training.batch import Batch
from ...core.training.plan import ReadPlan
from ...core.training.position import Position
from ...core.training.progress import ReadProgress
from ...core.training.units import Split
from .dataset import TrainingDataset
from .reader_async import AsyncTrainingReader
from .reader_sync import TrainingReader

__all__ = [
    "AsyncTrainingReader",
    "Batch",
    "Position",
    "ReadPlan",
    "ReadProgress",
    "Split",
    "TrainingDataset",
    "TrainingReader",
]
