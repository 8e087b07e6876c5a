"""Session state as a value: which state a session holds, so whether it is pinned.

A session is pinned to one primary connection while it holds state that lives
on that connection (settings, prepared statements, temp tables, sequence state,
advisory locks, LISTEN, WITH HOLD cursors) or an open transaction, and unpinned
when the last of it is gone (DISCARD ALL, RESET ALL, DEALLOCATE ALL, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from .classify import Classification, SessionEffect, TxAction

__all__ = ["SessionState"]


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a session holds on its pinned connection."""

    effects: frozenset[SessionEffect] = frozenset()
    in_transaction: bool = False

    @property
    def pinned(self) -> bool:
        return bool(self.effects) or self.in_transaction

    def after(self, c: Classification) -> SessionState:
        """The state after ``c`` ran successfully on the session's connection."""
        effects = (self.effects - c.clears) | c.creates
        in_tx = self.in_transaction
        if c.transaction is TxAction.BEGIN:
            in_tx = True
        elif c.transaction is TxAction.END:
            in_tx = False
        return SessionState(effects=frozenset(effects), in_transaction=in_tx)

    def needs_pin(self, c: Classification) -> bool:
        """Whether ``c`` must run on the session's own (primary) connection."""
        return self.pinned or bool(c.creates) or c.needs_session or c.transaction is not None

    def describe(self) -> str:
        """Why the session is pinned, in words (empty if it is not)."""
        parts = sorted(e.value for e in self.effects)
        if self.in_transaction:
            parts.append("open transaction")
        return ", ".join(parts)
