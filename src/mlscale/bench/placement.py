"""``mlscale bench placement``: do shard maps spread keys evenly, and move few when growing?

No servers: this measures the placement decisions themselves, in the process.
Random int8 keys (seeded) are placed over 4 shard groups named as ``mlscale up``
names them (g0..g3), then a 5th group (g4) is added.

Gates:

* slots (4096, an even directory): every group's share of keys is 25% within
  2 points;
* adding g4 to the slot map moves 20% of the keys, within 2 points (the
  directory moves 819 of 4096 slots; the keys follow their slots);
* the default hash ring (balanced tokens, 256 per group): every share is 25%
  within 2.5 points;
* adding g4 to that ring moves 20% of the keys, within 2 points.

Metrics: the same shares and moved fraction for a ring with hashed tokens
(``allocation=hashed``, tokens at the hashes of the group names) reported, not
gated: its balance is the names' luck, and for g0..g3 it is off by 3 points;
how that luck varies over random name sets; how many keys ``md5(key) % N``
moves from N=4 to N=5 (about 80%: the naive placement the style guide warns
about); and the vectorized slot path (numpy over a key array) against the
scalar one (``SlotMap.locate`` per key), in alternating rounds.

The quick run places 200,000 keys instead of 1,000,000. A share measured over
n keys differs from the map's true share by about sqrt(0.25 * 0.75 / n): 0.10
points at 200,000 keys, 0.04 at 1,000,000, against tolerances of 2 points, so
the quick gates judge the placement, not the sample.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ..core.shardmaps import HashRing, KeyFamily, SlotMap, TokenAllocation
from ..core.slots import DEFAULT_SLOTS, KeyType, hash_keys
from .compare import Spread, ab_rounds, chart, paired_ratios, ratio_of_medians, spread_metrics
from .progress import Progress
from .registry import BenchContext, Benchmark
from .results import BenchResult, Verdict

__all__ = ["BENCHMARK", "run"]

GROUPS = ("g0", "g1", "g2", "g3")
NEW_GROUP = "g4"
SEED = 20_240_601
KEYS_FULL = 1_000_000
KEYS_QUICK = 200_000
VNODES = 256
SHARE_TOLERANCE_POINTS = 2.0
MOVED_TARGET_PERCENT = 20.0
MOVED_TOLERANCE_POINTS = 2.0
RING_TOLERANCE_POINTS = 2.5
# The ring the gates judge: HashRing's default.
RING_ALLOCATION = TokenAllocation.BALANCED
# Keys per scalar round: the scalar path is ~100x slower, so it gets fewer keys
# and is compared in keys per second.
SCALAR_KEYS_FULL = 50_000
SCALAR_KEYS_QUICK = 20_000
# Hashed-token rings built with other group names, to show how much their
# balance owes to the names' luck.
NAME_SETS_FULL = 200
NAME_SETS_QUICK = 50

FAMILY = KeyFamily.of("bench", KeyType.INT8)


def _shares(index: npt.NDArray[np.int64], groups: int) -> list[float]:
    """Each group's share of the keys, in percent."""
    counts = np.bincount(index, minlength=groups)
    return [float(c) * 100.0 / index.size for c in counts]


def _worst(shares: list[float]) -> float:
    """The largest distance of a share from an even split, in percentage points."""
    even = 100.0 / len(shares)
    return max(abs(s - even) for s in shares)


def _moved(
    old_index: npt.NDArray[np.int64],
    old_groups: tuple[str, ...],
    new_index: npt.NDArray[np.int64],
    new_groups: tuple[str, ...],
) -> tuple[float, int]:
    """(percent of keys whose group changed, how many moved to a group other than the new one)."""
    # Compare by name: translate old indexes into the new map's numbering.
    old_as_new = np.array([new_groups.index(g) for g in old_groups], dtype=np.int64)[old_index]
    changed = old_as_new != new_index
    added = [i for i, g in enumerate(new_groups) if g not in old_groups]
    stray = int(np.count_nonzero(changed & ~np.isin(new_index, added)))
    return float(np.count_nonzero(changed)) * 100.0 / old_index.size, stray


def _md5_moved(keys: npt.NDArray[np.int64]) -> float:
    """Percent of keys whose ``md5(key) % N`` changes from N=4 to N=5."""
    raw = keys.astype("<i8").tobytes()
    moved = 0
    for i in range(0, len(raw), 8):
        h = int.from_bytes(hashlib.md5(raw[i : i + 8]).digest(), "big")
        moved += h % 4 != h % 5
    return moved * 100.0 / keys.size


def _exact_shares(ring: HashRing) -> list[float]:
    """Each group's share of the whole hash space (arc lengths, not keys), in percent."""
    return [s * 100.0 for s in ring.shares().values()]


def _ring_name_luck(sets: int) -> dict[str, float]:
    """Exact shares of hashed-token rings over ``sets`` random 4-name sets."""
    worst = []
    for k in range(sets):
        names = tuple(f"n{k}-{i}" for i in range(4))
        ring = HashRing(FAMILY, names, VNODES, allocation=TokenAllocation.HASHED)
        worst.append(_worst(_exact_shares(ring)))
    return {
        "name_sets": sets,
        "worst_share_deviation_points_median": statistics.median(worst),
        "worst_share_deviation_points_max": max(worst),
        "fraction_within_tolerance": sum(w <= RING_TOLERANCE_POINTS for w in worst) / sets,
    }


def _rate(place: Callable[[], object], keys: int) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        place()
        return keys / (time.perf_counter() - started)

    return run


def run(ctx: BenchContext) -> BenchResult:
    """Place seeded random keys by slots and by rings; gate shares and moved fractions."""
    result = BenchResult(
        name="placement",
        title="Shard placement: key shares over 4 groups, keys moved when a 5th joins",
    )
    n = KEYS_QUICK if ctx.quick else KEYS_FULL
    scalar_n = SCALAR_KEYS_QUICK if ctx.quick else SCALAR_KEYS_FULL
    rounds = 5 if ctx.quick else 7
    name_sets = NAME_SETS_QUICK if ctx.quick else NAME_SETS_FULL
    result.params = {
        "keys": n,
        "key_type": "int8",
        "seed": SEED,
        "groups": list(GROUPS),
        "new_group": NEW_GROUP,
        "slots": DEFAULT_SLOTS,
        "vnodes": VNODES,
        "ring_allocation": str(RING_ALLOCATION),
        "rounds": rounds,
        "scalar_keys_per_round": scalar_n,
        "ring_name_sets": name_sets,
    }
    progress = Progress(quiet=ctx.quiet)
    keys = np.random.default_rng(SEED).integers(
        -(2**63), 2**63 - 1, size=n, dtype=np.int64, endpoint=True
    )
    with progress.phase("placing keys", 6) as phase:
        phase.step("hashing")
        hashes = hash_keys(keys, KeyType.INT8)
        mask = np.int64(DEFAULT_SLOTS - 1)

        phase.step("slots")
        slots4 = SlotMap.even(FAMILY, GROUPS, DEFAULT_SLOTS)
        slots5 = slots4.with_group(NEW_GROUP)
        on4 = slots4.locate_slots(hashes & mask)
        on5 = slots5.locate_slots(hashes & mask)
        slot_shares = _shares(on4, len(GROUPS))
        slot_moved, slot_stray = _moved(on4, slots4.groups, on5, slots5.groups)

        phase.step("ring")
        ring4 = HashRing(FAMILY, GROUPS, VNODES, allocation=RING_ALLOCATION)
        ring5 = ring4.with_group(NEW_GROUP)
        ring_on4 = ring4.locate_hashes(hashes)
        ring_shares = _shares(ring_on4, len(GROUPS))
        ring_moved, ring_stray = _moved(
            ring_on4, ring4.groups, ring5.locate_hashes(hashes), ring5.groups
        )

        phase.step("hashed-token ring")
        hashed4 = HashRing(FAMILY, GROUPS, VNODES, allocation=TokenAllocation.HASHED)
        hashed5 = hashed4.with_group(NEW_GROUP)
        hashed_on4 = hashed4.locate_hashes(hashes)
        hashed_shares = _shares(hashed_on4, len(GROUPS))
        hashed_moved, hashed_stray = _moved(
            hashed_on4, hashed4.groups, hashed5.locate_hashes(hashes), hashed5.groups
        )

        phase.step("md5 % N")
        md5_moved = _md5_moved(keys)

        phase.step("ring name sets")
        luck = _ring_name_luck(name_sets)

    scalar_keys = [int(k) for k in keys[:scalar_n]]

    def vectorized() -> object:
        return slots4.locate_slots(hash_keys(keys, KeyType.INT8) & mask)

    def scalar() -> object:
        return [slots4.locate(k) for k in scalar_keys]

    runs = ab_rounds(
        {"vectorized": _rate(vectorized, n), "scalar": _rate(scalar, scalar_n)},
        rounds=rounds,
        progress=progress,
        title="vectorized vs scalar slot lookup",
    )
    rates = {name: Spread.of(values) for name, values in runs.items()}
    speedup = ratio_of_medians(rates["vectorized"], rates["scalar"])
    per_round = paired_ratios(rates["vectorized"].values, rates["scalar"].values)
    moved_slots = DEFAULT_SLOTS - sum(r.size for r in slots5.ranges if r.group != NEW_GROUP)

    result.metrics = {
        "slots_share_percent": dict(zip(GROUPS, slot_shares, strict=True)),
        "slots_worst_share_deviation_points": _worst(slot_shares),
        "slots_moved_percent": slot_moved,
        "slots_moved_to_old_groups_keys": slot_stray,
        "slots_moved_slots": moved_slots,
        "slots_moved_slots_percent": moved_slots * 100.0 / DEFAULT_SLOTS,
        "ring_allocation": str(RING_ALLOCATION),
        "ring_share_percent": dict(zip(GROUPS, ring_shares, strict=True)),
        "ring_worst_share_deviation_points": _worst(ring_shares),
        "ring_exact_share_percent": dict(zip(GROUPS, _exact_shares(ring4), strict=True)),
        "ring_moved_percent": ring_moved,
        "ring_moved_to_old_groups_keys": ring_stray,
        "ring_hashed_share_percent": dict(zip(GROUPS, hashed_shares, strict=True)),
        "ring_hashed_worst_share_deviation_points": _worst(hashed_shares),
        "ring_hashed_exact_share_percent": dict(zip(GROUPS, _exact_shares(hashed4), strict=True)),
        "ring_hashed_moved_percent": hashed_moved,
        "ring_hashed_moved_to_old_groups_keys": hashed_stray,
        "ring_hashed_name_luck": luck,
        "md5_mod_n_moved_percent": md5_moved,
        **spread_metrics(rates, "_keys_per_s"),
        "vectorized_over_scalar": speedup,
        "vectorized_over_scalar_per_round": per_round.as_dict(),
    }
    result.gates += [
        Verdict(
            "slots: worst group share's distance from 25%",
            _worst(slot_shares),
            "<=",
            SHARE_TOLERANCE_POINTS,
            "points",
        ),
        Verdict(
            f"slots: keys moved when {NEW_GROUP} joins, distance from 20%",
            abs(slot_moved - MOVED_TARGET_PERCENT),
            "<=",
            MOVED_TOLERANCE_POINTS,
            "points",
        ),
        Verdict(
            f"ring ({RING_ALLOCATION} tokens, the default; {VNODES}/group): "
            "worst group share's distance from 25%",
            _worst(ring_shares),
            "<=",
            RING_TOLERANCE_POINTS,
            "points",
        ),
        Verdict(
            f"ring ({RING_ALLOCATION} tokens, the default): keys moved when {NEW_GROUP} joins, "
            "distance from 20%",
            abs(ring_moved - MOVED_TARGET_PERCENT),
            "<=",
            MOVED_TOLERANCE_POINTS,
            "points",
        ),
    ]

    def single(values: dict[str, float]) -> dict[str, Spread]:
        return {k: Spread.of([v]) for k, v in values.items()}

    result.charts = [
        chart(
            "Share of keys per shard group",
            "%",
            {
                "slots": single(dict(zip(GROUPS, slot_shares, strict=True))),
                f"ring, {RING_ALLOCATION} tokens": single(
                    dict(zip(GROUPS, ring_shares, strict=True))
                ),
                "ring, hashed tokens (not gated)": single(
                    dict(zip(GROUPS, hashed_shares, strict=True))
                ),
            },
            target=25.0,
        ),
        chart(
            f"Keys moved when {NEW_GROUP} joins 4 groups",
            "%",
            {
                "placement": single(
                    {
                        "slots": slot_moved,
                        f"ring ({RING_ALLOCATION})": ring_moved,
                        "ring (hashed)": hashed_moved,
                        "md5 % N": md5_moved,
                    }
                )
            },
            target=MOVED_TARGET_PERCENT,
        ),
        chart(
            "Slot lookup throughput (median of rounds, min..max)",
            "keys/s",
            {"SlotMap": rates},
        ),
    ]
    hashed_worst = _worst(hashed_shares)
    result.notes.append(
        f"{n:,} seeded random int8 keys. The ring gates judge HashRing's default, "
        f"{RING_ALLOCATION} tokens ({VNODES} per group; each group added splits the fullest "
        "groups' arcs), whose exact shares are "
        + ", ".join(f"{g} {v:.4f}%" for g, v in zip(GROUPS, _exact_shares(ring4), strict=True))
    )
    result.notes.append(
        f"not gated: a ring with hashed tokens (at the hashes of '{{group}}#{{i}}') places "
        f"{', '.join(f'{g} {v:.2f}%' for g, v in zip(GROUPS, hashed_shares, strict=True))}, "
        f"{hashed_worst:.2f} points off at worst "
        f"({'within' if hashed_worst <= RING_TOLERANCE_POINTS else 'outside'} the "
        f"{RING_TOLERANCE_POINTS}-point tolerance), and moves {hashed_moved:.2f}% when "
        f"{NEW_GROUP} joins; its balance is the names' luck: over {name_sets} random 4-name "
        f"sets the worst share is off by a median "
        f"{luck['worst_share_deviation_points_median']:.2f} points and "
        f"{luck['fraction_within_tolerance']:.0%} of the sets stay within "
        f"{RING_TOLERANCE_POINTS} points"
    )
    result.notes.append(
        f"the scalar path is SlotMap.locate() per Python int ({scalar_n:,} keys a round); "
        f"the vectorized path hashes a numpy array and bisects all slots at once"
    )
    if slot_stray or ring_stray or hashed_stray:
        result.notes.append(
            f"keys moved between old groups: {slot_stray} (slots), {ring_stray} (ring), "
            f"{hashed_stray} (hashed-token ring); only the new group should receive keys"
        )
    _print_figures(result)
    return result


def _print_figures(result: BenchResult) -> None:
    m = result.metrics

    def shares(key: str) -> str:
        return "  ".join(f"{g} {v:5.2f}%" for g, v in m[key].items())

    ring = f"ring ({m['ring_allocation']})"
    lines = [
        f"  {'slots':<16} shares   {shares('slots_share_percent')}",
        f"  {ring:<16} shares   {shares('ring_share_percent')}",
        f"  {'ring (hashed)':<16} shares   {shares('ring_hashed_share_percent')}  (not gated)",
        f"  moved when {NEW_GROUP} joins: slots {m['slots_moved_percent']:.2f}%  "
        f"{ring} {m['ring_moved_percent']:.2f}%  "
        f"ring (hashed) {m['ring_hashed_moved_percent']:.2f}%  "
        f"md5 % N {m['md5_mod_n_moved_percent']:.2f}%",
        f"  slot lookup: vectorized {m['vectorized_keys_per_s']['median']:,.0f} keys/s "
        f"({m['vectorized_keys_per_s']['min']:,.0f}..{m['vectorized_keys_per_s']['max']:,.0f}), "
        f"scalar {m['scalar_keys_per_s']['median']:,.0f} keys/s "
        f"({m['scalar_keys_per_s']['min']:,.0f}..{m['scalar_keys_per_s']['max']:,.0f}): "
        f"{m['vectorized_over_scalar']:.0f}x",
    ]
    print("\n".join(lines))


BENCHMARK = Benchmark(name="placement", title="Shard placement", run=run)
