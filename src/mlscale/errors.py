"""The one exception tree of mlscale.

Every error mlscale raises on purpose derives from :class:`MlscaleError`, so a
caller can catch the package's failures with one clause. Lower-library errors
(psycopg, redis, the OS) are translated once, where they cross into mlscale,
with ``raise ... from exc`` so the cause is kept::

    MlscaleError
    ├── ConfigError              malformed or contradictory topology config
    ├── ClusterError             a local cluster could not be managed
    │   ├── MissingBinaryError   a server binary (postgres, redis-server) is absent
    │   ├── PortInUseError       a port the cluster needs is taken
    │   ├── ClusterDirError      the cluster directory is unusable
    │   └── NodeStartError       a server did not start or stop
    ├── CatalogError             the control database's catalog is unusable
    ├── SchemaError              a table cannot be sharded as declared
    ├── CacheError               the cache refused a value or cannot serve a call
    │   └── CacheValueTooLarge   a value over the cache's size limit (nothing stored)
    ├── NotFound                 no such thing: a second base of each *NotFound below
    ├── FeatureError             a feature view, reference or push is malformed (nothing written)
    │   └── FeatureViewNotFound  no such feature view (or version of it); also a NotFound
    ├── PredictionError          a prediction or label is malformed (nothing of it written)
    │   ├── WriterQueueFull      a prediction writer's queue is full (raise mode): retry later
    │   └── PredictionLogNotFound no such prediction log; also a NotFound
    ├── RegistryError            a model registry call is malformed or refused (nothing written)
    │   ├── ModelExists          a model of that name exists with another description or tags
    │   ├── ModelNotFound        no such model, version, or version at an alias; also a NotFound
    │   └── RegistryConflict     an alias moved since its expected revision (.current_version)
    ├── ExperimentError          an experiment store call is malformed or refused (nothing written)
    │   ├── UnsupportedQuery     a query document uses an operator or form not supported (named)
    │   └── ExperimentNotFound   no such experiment or run; also a NotFound
    ├── VectorError              a vector store call is malformed or refused (nothing written)
    │   └── CollectionNotFound   no such vector collection; also a NotFound
    ├── CheckpointError          a checkpoint store call is malformed or refused (nothing visible)
    │   ├── CheckpointCorrupt    a chunk read back does not match its hash (.digest, .file)
    │   └── CheckpointNotFound   no such checkpoint (run, step); also a NotFound
    ├── MetricsError             a metrics store call is malformed or refused (nothing written)
    │   ├── LineProtocolError    a line of InfluxDB line protocol is bad (.line: its number)
    │   └── MeasurementNotFound  no such measurement; also a NotFound
    ├── RoutingError             a statement was refused before it was sent
    │   ├── ShardKeyError        a shard key value cannot be placed (type, range, unknown)
    │   └── NoReplicaAvailable   a replica scope's read found no replica to serve it
    └── DatabaseError            a database operation failed
        ├── NodeUnavailableError no connection to a node could be had
        │   └── CommitOutcomeUnknown  a write's COMMIT was sent but its outcome never came
        ├── AuthenticationError  a node refused mlscale's login (credentials, pg_hba.conf)
        ├── PartialWriteError    a write split over shard groups committed on some only
        ├── ShardGroupError      a cross-shard read lost groups (failed, timed out: .groups)
        └── QueryError           the server or driver rejected a statement (.sqlstate, .node)
            ├── IntegrityViolation    a constraint was violated (SQLSTATE class 23)
            ├── TransactionConflict   serialization failure or deadlock (40001, 40P01): retry
            └── ReadOnlyViolation     a write reached a read-only node (25006)

Messages are one line, in the user's terms, and never contain a password or a
full connection string.
"""

from __future__ import annotations

import psycopg

__all__ = [
    "AuthenticationError",
    "CacheError",
    "CacheValueTooLarge",
    "CatalogError",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointNotFound",
    "ClusterDirError",
    "ClusterError",
    "CollectionNotFound",
    "CommitOutcomeUnknown",
    "ConfigError",
    "DatabaseError",
    "ExperimentError",
    "ExperimentNotFound",
    "FeatureError",
    "FeatureViewNotFound",
    "IntegrityViolation",
    "LineProtocolError",
    "MeasurementNotFound",
    "MetricsError",
    "MissingBinaryError",
    "MlscaleError",
    "ModelExists",
    "ModelNotFound",
    "NoReplicaAvailable",
    "NodeStartError",
    "NodeUnavailableError",
    "NotFound",
    "PartialWriteError",
    "PortInUseError",
    "PredictionError",
    "PredictionLogNotFound",
    "QueryError",
    "ReadOnlyViolation",
    "RegistryConflict",
    "RegistryError",
    "RoutingError",
    "SchemaError",
    "ShardGroupError",
    "ShardKeyError",
    "TransactionConflict",
    "UnsupportedQuery",
    "VectorError",
    "WriterQueueFull",
]


class MlscaleError(Exception):
    """Root of every error mlscale raises on purpose."""


class ConfigError(MlscaleError):
    """A topology config is malformed or contradictory; the message names the field."""


class ClusterError(MlscaleError):
    """A local cluster could not be created, started, stopped or inspected."""


class MissingBinaryError(ClusterError):
    """A server binary mlscale needs is not installed; the message says how to get it."""


class PortInUseError(ClusterError):
    """A TCP port the cluster needs is already taken by another process."""


class ClusterDirError(ClusterError):
    """The cluster directory cannot be created, written, or reached by the server user."""


class NodeStartError(ClusterError):
    """A server process failed to start or stop; the message points at its log."""


class CatalogError(MlscaleError):
    """The catalog on the control database is missing, newer than us, or inconsistent."""


class SchemaError(MlscaleError):
    """A table cannot be sharded as declared (its keys, constraints or types); the
    message says what to change."""


class CacheError(MlscaleError):
    """The cache refused a value or cannot serve a call (its Redis is down and the
    cache is configured to raise rather than read through to the database)."""


class CacheValueTooLarge(CacheError):
    """A value is larger than the cache's limit once encoded; nothing was stored."""


class NotFound(MlscaleError):
    """The thing a call names does not exist: no such feature view, prediction log,
    model, version, or version at an alias. A base shared by
    :class:`FeatureViewNotFound`, :class:`PredictionLogNotFound` and
    :class:`ModelNotFound`, each also under its own store's error, so one clause
    (``except NotFound``) catches every "not found", as an HTTP service answering 404
    does, without reading messages."""


class FeatureError(MlscaleError):
    """A feature view, a feature reference or the data given to a feature store call is
    malformed (an unknown view or feature, a wrong key type, a NaN where none is
    allowed, a missing column, an oversize batch); nothing was written."""


class FeatureViewNotFound(FeatureError, NotFound):
    """No feature view of that name (or no such version of it) is registered; the
    message names the registered views."""


class PredictionError(MlscaleError):
    """A prediction, a label or a prediction log's definition is malformed (a missing
    model or entity, a wrong type, an unknown log), or the writer is closed; the
    message names the column and rows, and nothing of the call was written."""


class WriterQueueFull(PredictionError):
    """A prediction writer's queue stayed full past its wait (``on_full="raise"``, or
    ``"block"`` with a timeout): the rows of the call were not taken; send them again."""


class PredictionLogNotFound(PredictionError, NotFound):
    """No prediction log of that name is recorded; the message names the known logs."""


class RegistryError(MlscaleError):
    """A model registry call is malformed or refused (a bad model, alias or version,
    metadata that is not JSON, a lineage to an unknown feature view, a model that
    exists with another description); the message says which, and nothing of the
    call was written."""


class ModelExists(RegistryError):
    """``create_model`` of a name that exists with another description or tags (the
    same ones: the call returns the model as it is)."""


class ModelNotFound(RegistryError, NotFound):
    """No such model, no such version of it, or no version at the alias asked for."""


class RegistryConflict(RegistryError):
    """A transition's ``expected_revision`` is no longer the alias's revision: another
    writer moved it first. Nothing was written; ``current_version`` and
    ``current_revision`` are the alias's state that won (read under its row lock),
    ``expected_revision`` what the call expected. Read the alias again and decide."""

    def __init__(
        self,
        message: str,
        *,
        current_version: int | None,
        current_revision: int,
        expected_revision: int,
    ) -> None:
        super().__init__(message)
        self.current_version = current_version
        self.current_revision = current_revision
        self.expected_revision = expected_revision


class ExperimentError(MlscaleError):
    """An experiment store call is malformed or refused (a bad name, a document that is
    not JSON, an update that would change ``_id`` or ``experiment``, an update meeting a
    non-object on its path); the message says which, and nothing of the call was written."""


class UnsupportedQuery(ExperimentError):
    """A filter, update, projection, sort or pipeline uses an operator or a form the
    experiment store does not translate; the message names it (``.operator``)."""

    def __init__(self, message: str, *, operator: str = "") -> None:
        super().__init__(message)
        self.operator = operator


class ExperimentNotFound(ExperimentError, NotFound):
    """No such experiment, or no such run of it."""


class DatabaseError(MlscaleError):
    """A database operation failed; ``__cause__`` holds the driver's error."""


class NodeUnavailableError(DatabaseError, psycopg.OperationalError):
    """No connection to a node could be had, or the node failed mid-statement.

    Also a ``psycopg.OperationalError``, so handlers written for the driver
    catch it unchanged. ``node`` names the node, ``node_role`` its role.
    """

    def __init__(
        self, message: str, *, node: str | None = None, node_role: str | None = None
    ) -> None:
        super().__init__(message)
        self.node = node
        self.node_role = node_role


class CommitOutcomeUnknown(NodeUnavailableError):
    """A write's COMMIT was sent, but whether it committed is not known: the connection
    broke before the answer came (a primary crashed or was demoted mid-commit), or the
    server answered that it committed locally after its wait for the synchronous
    standby was cancelled (it may be missing from the node that takes over).

    Never a plain failure: the write may be there. Find out (read it back from the
    group's new leader) before writing it again, unless running it twice is harmless.
    ``statement``: the statement (``"COMMIT"`` for a transaction block);
    ``idempotent``: whether the caller marked it so (an idempotent write is only
    reported when no leader came within ``failover_wait_s`` to run it again);
    ``reason``: what was seen. mlscale never cancels a commit's wait itself.
    """

    def __init__(
        self,
        message: str,
        *,
        statement: str,
        idempotent: bool,
        reason: str,
        node: str | None = None,
        node_role: str | None = None,
    ) -> None:
        super().__init__(message, node=node, node_role=node_role)
        self.statement = statement
        self.idempotent = idempotent
        self.reason = reason


class AuthenticationError(DatabaseError, psycopg.OperationalError):
    """A node refused mlscale's login: a wrong password, a missing or unreadable
    passfile, an unset password variable, a role or host pg_hba.conf does not admit.

    Reported at once rather than after the pool timeout, and never taken for an
    outage: it bans no replica and is not retried elsewhere, since another try
    with the same credentials fails the same way. The message names the node and
    where the password came from. Also a ``psycopg.OperationalError``, as the
    driver's own login failure is. ``node`` names the node, ``node_role`` its role.
    """

    def __init__(
        self, message: str, *, node: str | None = None, node_role: str | None = None
    ) -> None:
        super().__init__(message)
        self.node = node
        self.node_role = node_role


class PartialWriteError(DatabaseError):
    """A write split over shard groups was committed on ``committed`` but failed to
    commit on ``failed`` (and was rolled back on the rest). Never retried: find out
    what the failed group holds before writing again."""

    def __init__(self, message: str, *, committed: tuple[str, ...], failed: str) -> None:
        super().__init__(message)
        self.committed = committed
        self.failed = failed


class ShardGroupError(DatabaseError):
    """A read across shard groups lost ``groups``: they failed or did not answer within
    the call's timeout. The other groups' queries were cancelled and nothing was
    returned; ``allow_partial=True`` returns what the other groups hold instead,
    marked partial. ``__cause__`` is the first group's error (None on a timeout)."""

    def __init__(self, message: str, *, groups: tuple[str, ...]) -> None:
        super().__init__(message)
        self.groups = groups


class RoutingError(MlscaleError):
    """A statement was refused before it was sent: it cannot run where it was asked to
    (a write in a replica scope, session state outside a session, BEGIN outside a
    transaction block). Nothing was executed."""


class NoReplicaAvailable(RoutingError):
    """A read in an explicit replica scope (``cluster.replica()``) found no replica that
    may serve it (all down, banned, or behind its guarantee); it never goes to the
    primary. Unscoped reads fall back to the primary instead."""


class ShardKeyError(RoutingError):
    """A shard key value cannot be placed: wrong type, out of range, or not in a lookup map."""


class QueryError(DatabaseError):
    """The server rejected a statement. ``sqlstate`` is PostgreSQL's error code,
    ``node`` the node that ran it; ``__cause__`` is the driver's error.

    ``sqlstate`` is None when the driver refused to send the statement (more than
    65,535 parameters, a value it cannot adapt): the caller's mistake, not the node's,
    so it bans no replica and is never retried."""

    def __init__(
        self, message: str, *, sqlstate: str | None = None, node: str | None = None
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.node = node


class IntegrityViolation(QueryError):
    """A constraint was violated (unique, foreign key, not null, check: SQLSTATE 23xxx)."""


class TransactionConflict(QueryError):
    """A serialization failure or deadlock (40001, 40P01): the transaction may be retried."""


class ReadOnlyViolation(QueryError):
    """A write reached a read-only node or transaction (SQLSTATE 25006)."""


class VectorError(MlscaleError):
    """A vector store call is malformed or refused (a bad collection name, a vector of
    the wrong dimension or with NaN, a filter operator it does not know, an index knob
    out of range); the message says which, and nothing of the call was written."""


class CollectionNotFound(VectorError, NotFound):
    """No vector collection of that name exists (the message names those that do)."""


class CheckpointError(MlscaleError):
    """A checkpoint store call is malformed or refused (a bad run name or step, a file
    name that leaves the checkpoint's directory, a step that exists, chunks that vanished
    before the manifest's commit); the message says which. A save that fails leaves no
    visible checkpoint: save again to resume it."""


class CheckpointCorrupt(CheckpointError):
    """A chunk read back does not hash to its address (or has the wrong size): the stored
    bytes changed. ``digest`` is the chunk's expected BLAKE3 hash (hex), ``file`` the
    checkpoint file it belongs to, ``group`` the shard group that returned it. Nothing
    of the chunk was written to the destination."""

    def __init__(self, message: str, *, digest: str, file: str, group: str) -> None:
        super().__init__(message)
        self.digest = digest
        self.file = file
        self.group = group


class CheckpointNotFound(CheckpointError, NotFound):
    """No checkpoint of that run (and step) is committed."""


class MetricsError(MlscaleError):
    """A metrics store call is malformed or refused (a bad measurement or field name, a
    bucket width or aggregate it does not know, a type clash); the message says which."""


class LineProtocolError(MetricsError):
    """A line of InfluxDB line protocol cannot be parsed: ``line`` is its number
    (1-based) in the text given, and nothing of that call was written."""

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(message)
        self.line = line


class MeasurementNotFound(MetricsError, NotFound):
    """No measurement of that name exists (the message names those that do)."""
