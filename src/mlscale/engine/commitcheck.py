"""What one try of a write saw on its connection: whether it was sent, and whether the
server warned that its COMMIT committed only locally (shared by the twins, no I/O).

PostgreSQL answers a COMMIT whose wait for the synchronous standby was cancelled
with success plus a WARNING ("canceling wait for synchronous replication ... The
transaction has already committed locally, but might not have been replicated to
the standby"). With Patroni that write may be missing from the next leader, so
mlscale reports it as :class:`CommitOutcomeUnknown` rather than as success.
"""

from __future__ import annotations

from typing import Any

from psycopg import BaseConnection
from psycopg.errors import Diagnostic

from ..core.leadership import is_local_commit_warning
from ..errors import CommitOutcomeUnknown

__all__ = ["CommitCheck"]


class CommitCheck:
    """Listens on a connection while a write (or a COMMIT) runs on it."""

    def __init__(self, statement: str, *, idempotent: bool) -> None:
        self.statement = statement
        self.idempotent = idempotent
        self.sent = False  # the statement reached a live connection
        self.warning: str | None = None  # the server's "committed locally" warning

    def attach(self, conn: BaseConnection[Any]) -> None:
        """Start listening on ``conn``, about to send the statement."""
        self.sent = self.sent or not conn.closed
        conn.add_notice_handler(self._notice)

    def detach(self, conn: BaseConnection[Any]) -> None:
        conn.remove_notice_handler(self._notice)

    def _notice(self, diag: Diagnostic) -> None:
        if is_local_commit_warning(diag.message_primary, diag.message_detail):
            self.warning = diag.message_primary or "committed locally"

    def unknown(self, node: str | None, reason: str) -> CommitOutcomeUnknown:
        """The error telling the caller this write may or may not have committed."""
        what = self.statement.strip().split(None, 1)[0].upper() if self.statement.strip() else ""
        return CommitOutcomeUnknown(
            f"the outcome of a {what or 'write'} on node {node} is unknown: {reason}; "
            "read it back before writing it again"
            + (" (marked idempotent: it may simply be run again)" if self.idempotent else ""),
            statement=self.statement,
            idempotent=self.idempotent,
            reason=reason,
            node=node,
            node_role="primary",
        )

    def raise_if_local(self, node: str | None) -> None:
        """After the statement returned: raise if its commit was only local."""
        if self.warning is not None:
            raise self.unknown(node, f"the server said: {self.warning}")
