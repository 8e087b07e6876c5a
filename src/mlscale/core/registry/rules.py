"""The registry's pure decisions: what a transition does given the alias's state read
under its row lock, the conflict message, and the cache keys a change invalidates.

A transition runs in one transaction on the model's primary (see
:mod:`mlscale.stores.registry.store_async`)::

    row := SELECT version, revision FROM aliases WHERE (model, alias) FOR UPDATE
    plan := plan_transition(row, target, expected)        # this module
    INSERT (revision 1) ON CONFLICT DO NOTHING  |  UPDATE ... WHERE revision = r
    (an INSERT that inserted nothing lost a race for the first row: read again, plan again)

The row lock makes the read and the write one step for every writer of the alias;
the conditional statements keep it so even for the first write of an alias, where
there is no row to lock yet (the unique key arbitrates: the loser's
``ON CONFLICT DO NOTHING`` waits for the winner's commit and inserts nothing).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Plan", "Step", "alias_cache_key", "conflict_message", "plan_transition"]


class Step(enum.Enum):
    """What a transition writes."""

    INSERT = "insert"  # the alias's first row, at revision 1
    UPDATE = "update"  # the alias's row, revision + 1
    NOTHING = "nothing"  # already there: no write, no history entry
    CONFLICT = "conflict"  # expected_revision is not the current one: no write


@dataclass(frozen=True, slots=True)
class Plan:
    """A transition's decision: ``step``, the alias's revision after it, the version it
    pointed at before, and the conflict's message (CONFLICT only)."""

    step: Step
    revision: int
    previous_version: int | None
    message: str = ""


def conflict_message(
    name: str, alias: str, version: int | None, revision: int, expected: int
) -> str:
    """The message of a RegistryConflict, naming the state that won."""
    where = "unset" if version is None else f"at version {version}"
    return (
        f"model {name!r}: alias {alias!r} is {where} (revision {revision}), not at the "
        f"expected revision {expected}: another transition won; read alias_state() and decide "
        "again"
    )


def plan_transition(
    name: str,
    alias: str,
    row: tuple[int | None, int] | None,
    target: int | None,
    expected: int | None,
) -> Plan:
    """The decision for moving ``alias`` to ``target`` (None: clear it) given its row
    ``(version, revision)`` read under lock (None: no row, i.e. revision 0) and the
    call's ``expected`` revision (None: move whatever the revision)."""
    version, revision = row if row is not None else (None, 0)
    if expected is not None and expected != revision:
        return Plan(
            Step.CONFLICT,
            revision,
            version,
            conflict_message(name, alias, version, revision, expected),
        )
    if target == version:
        return Plan(Step.NOTHING, revision, version)
    if row is None:
        return Plan(Step.INSERT, 1, None)
    return Plan(Step.UPDATE, revision + 1, version)


def alias_cache_key(name: str, alias: str) -> tuple[str, str, str]:
    """The cache key of ``get_by_alias(name, alias)``."""
    return ("alias", name, alias)
