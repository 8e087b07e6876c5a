"""Router tests as tables: one file per statement kind, each row a statement and its route.

A row is ``case(sql, target, reason_fragment, **expected)``: the statement, where
it must go, a fragment its reason must contain, and those other
:class:`~mlscale.core.classify.Classification` fields that differ from a plain
statement's (no session state, no transaction control, one statement). Fields a
row does not name are checked against those defaults, so a row says everything
the classifier must answer. ``test_table.py`` counts the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlscale.core.classify import Classification, Classifier, SessionEffect, Target, TxAction

PRIMARY = Target.PRIMARY
REPLICA = Target.REPLICA

# Compared on every row; a row that names none expects a plain statement's values.
_FIELDS = ("creates", "clears", "needs_session", "transaction", "statements")


@dataclass(frozen=True)
class Case:
    """One statement, its expected route and a fragment of the reason."""

    sql: str
    target: Target
    reason: str
    creates: frozenset[SessionEffect] = frozenset()
    clears: frozenset[SessionEffect] = frozenset()
    needs_session: bool = False
    transaction: TxAction | None = None
    statements: int = 1
    id: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.id or " ".join(self.sql.split())[:70]


def case(
    sql: str,
    target: Target,
    reason: str,
    *,
    creates: set[SessionEffect] | frozenset[SessionEffect] = frozenset(),
    clears: set[SessionEffect] | frozenset[SessionEffect] = frozenset(),
    needs_session: bool = False,
    transaction: TxAction | None = None,
    statements: int = 1,
    id: str | None = None,
) -> Case:
    """A table row; sets of effects may be written as plain sets."""
    return Case(
        sql,
        target,
        reason,
        frozenset(creates),
        frozenset(clears),
        needs_session,
        transaction,
        statements,
        id,
    )


def case_id(c: Case) -> str:
    return str(c)


def check(c: Case, classifier: Classifier | None = None) -> Classification:
    """Classify ``c.sql`` with a fresh classifier and compare every field."""
    got = (classifier or Classifier()).classify(c.sql)
    assert got.target is c.target, f"{c.sql!r}: routed to {got.target} because {got.reason!r}"
    assert c.reason in got.reason, f"{c.sql!r}: reason {got.reason!r} lacks {c.reason!r}"
    want = {name: getattr(c, name) for name in _FIELDS}
    have = {name: getattr(got, name) for name in _FIELDS}
    assert have == want, f"{c.sql!r}: {got}"
    return got
