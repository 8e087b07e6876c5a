"""Model checkpoints as content-addressed chunks sharded over the shard groups:
written and read in parallel, deduplicated across versions and runs, resumable,
visible only once whole, verified on load.

    from mlscale.stores.checkpoints import Checkpoints

    store = Checkpoints(cluster)                      # 8 MiB chunks, 4 workers
    store.save("run-7", 1000, "out/model.safetensors", metadata={"loss": 0.31})
    store.save("run-7", 2000, "out/")                 # a directory of shards
    store.load("run-7", "restore/")                   # the latest, every chunk's hash checked
    store.list_checkpoints("run-7"); store.keep_last("run-7", 3); store.gc()

See :mod:`.store` for the guarantees and :mod:`mlscale.core.checkpoints` for the
pure half (chunking, manifests, placement, SQL).
"""

from ...core.checkpoints.chunking import ChunkRef
from ...core.checkpoints.manifest import Checkpoint, CheckpointInfo, FileEntry
from ...core.checkpoints.results import (
    GcResult,
    LoadResult,
    RetentionResult,
    SaveResult,
    TransferProgress,
    Upload,
)
from .store import Checkpoints

__all__ = [
    "Checkpoint",
    "CheckpointInfo",
    "Checkpoints",
    "ChunkRef",
    "FileEntry",
    "GcResult",
    "LoadResult",
    "RetentionResult",
    "SaveResult",
    "TransferProgress",
    "Upload",
]
