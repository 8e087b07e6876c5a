# Generated from labels_async.py by scripts/async_to_sync.py: do not edit.
# Change labels_async.py and run the script again.
"""Labels: outcomes that arrive hours or days after their predictions (async source).

A label names its prediction (id) and the prediction's entity, which places it on the
group where the prediction lives. Per group, one transaction: the labels are copied
(binary COPY) into a staging table and one statement attaches those whose prediction
is there (newest label per prediction; an older label never replaces a newer one)
and keeps the others aside in the unmatched table, counted, never dropped. A label
that arrived before its prediction (the writer batches) is attached later by
:meth:`Labels.attach`, which moves the unmatched labels whose prediction has
arrived since.

``labels_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...core.causal import CausalToken
from ...core.predictions.layout import PredictionLayout
from ...core.predictions.results import AttachResult, LabelResult
from ...core.predictions.rows import to_labels
from ...core.predictions.spec import PredictionLog
from ...engine.cluster_sync import Cluster
from ...errors import PartialWriteError
from ..shared_sync import run_all
from .flush_sync import group_index

__all__ = ["Labels"]


def _committed_or_partial(
    what: str, groups: list[str], done: set[str], errors: list[BaseException]
) -> None:
    if not errors:
        return
    first = errors[0]
    if not done:
        raise first
    failed = sorted(set(groups) - done)
    raise PartialWriteError(
        f"{what}: committed on {', '.join(sorted(done))}, failed on {', '.join(failed)} "
        f"({first}); sending the same labels again is harmless",
        committed=tuple(sorted(done)),
        failed=failed[0],
    ) from first


class Labels:
    """Writes labels of prediction logs (see the module docstring)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def log_labels(self, log: PredictionLog, data: Any) -> LabelResult:
        """Attach the labels of ``data`` (columns ``prediction_id``, the entity,
        ``outcome`` and/or ``label``, optional ``label_ts``: a DataFrame, an Arrow
        table, a dict of columns or a list of dicts) to their predictions; checked
        whole before anything is written."""
        batch = to_labels(log, data)
        if batch.size == 0:
            return LabelResult(0, 0, 0, CausalToken())
        layout = PredictionLayout(log)
        shard_map = (self._cluster.shards()).map_of(log.family)
        where = group_index(shard_map, log, batch.entity)
        counts: dict[str, tuple[int, int, int]] = {}
        tokens: dict[str, CausalToken] = {}
        parts = [
            (g, batch.take(np.flatnonzero(where == gi)))
            for gi, g in enumerate(shard_map.groups)
            if (where == gi).any()
        ]

        def writer(group: str, part: Any) -> Callable[[], Any]:
            def write() -> None:
                with self._cluster.transaction(group=group, as_written=True) as tx:
                    tx.execute(layout.label_stage_ddl())
                    tx.copy(layout.label_copy_sql(), part.copy_payload())
                    row = tx.fetch_one(layout.labels_sql())
                written, aside = (int(row[0]), int(row[1])) if row else (0, 0)
                counts[group] = (written, part.size - written - aside, aside)
                tokens[group] = tx.token or CausalToken()

            return write

        errors = run_all([writer(g, p) for g, p in parts], raise_first=False)
        _committed_or_partial(f"labels of {log.name!r}", [g for g, _ in parts], set(tokens), errors)
        token = CausalToken()
        for t in tokens.values():
            token = token.merge(t)
        return LabelResult(
            sum(c[0] for c in counts.values()),
            sum(c[1] for c in counts.values()),
            sum(c[2] for c in counts.values()),
            token,
        )

    def attach(self, log: PredictionLog) -> AttachResult:
        """Attach the unmatched labels whose prediction has arrived since, on every
        group; how many were attached and how many remain unmatched."""
        layout = PredictionLayout(log)
        counts: dict[str, tuple[int, int]] = {}
        tokens: dict[str, CausalToken] = {}
        groups = [g.name for g in self._cluster.config.shard_groups]

        def attacher(group: str) -> Callable[[], Any]:
            def attach() -> None:
                with self._cluster.transaction(group=group, as_written=True) as tx:
                    row = tx.fetch_one(layout.attach_sql())
                counts[group] = (int(row[0]), int(row[1])) if row else (0, 0)
                tokens[group] = tx.token or CausalToken()

            return attach

        errors = run_all([attacher(g) for g in groups], raise_first=False)
        _committed_or_partial(f"attaching labels of {log.name!r}", groups, set(tokens), errors)
        token = CausalToken()
        for t in tokens.values():
            token = token.merge(t)
        return AttachResult(
            sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()), token
        )
