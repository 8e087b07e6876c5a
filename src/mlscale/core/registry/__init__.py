"""The model registry's pure half: what it accepts (:mod:`.names`), what it returns
(:mod:`.results`), how a transition decides (:mod:`.rules`) and its tables and
statements (:mod:`.sql`). No I/O; the store is :mod:`mlscale.stores.registry`."""

from .names import ARCHIVED, PRODUCTION, STAGING, WELL_KNOWN_ALIASES
from .results import AliasState, Model, ModelVersion, Transition, TransitionResult
from .rules import Plan, Step, plan_transition

__all__ = [
    "ARCHIVED",
    "PRODUCTION",
    "STAGING",
    "WELL_KNOWN_ALIASES",
    "AliasState",
    "Model",
    "ModelVersion",
    "Plan",
    "Step",
    "Transition",
    "TransitionResult",
    "plan_transition",
]
