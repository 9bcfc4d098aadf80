"""Exact exchanges among units that use the same resources.

Units with identical usage (same persons, dwellings, Kita places, ...) can trade places
without changing any place's load, so the best way to seat all units of one such class
on the places they hold is a linear assignment problem, solved exactly however long the
exchange cycles are. Slots that still fit a unit of the class at places with room, and
staying out for the class's unplaced units, join the same problem, so it also places
units where capacity is left. The neighbourhood MIPs see a few hundred units around some
places; this sees every unit of a class across all places at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# Slots per place for a class beyond the ones its units hold (places with room).
ROOM_SLOTS: int = 2
# Units per linear assignment at most (a larger class is split into interleaved parts).
MOST_UNITS: int = 2000
# Value of a pair that cannot be used; and the bonus that keeps every held slot at a
# place with a minimum intake filled (emptying one could leave the place below it).
_FORBIDDEN: float = -1e12
_KEEP_FILLED: float = 1e8
# Seconds of the exchange on the reference machine (2 cores): per matrix entry built, and per
# row times entry of its linear assignment (measured at 10,000 households: 0.46 s for 5.3 M
# entries, 0.82 s for the largest class, 1,635 x 1,639).
ENTRY_SECONDS: float = 90e-9
SOLVE_SECONDS: float = 200e-12


def reference_seconds(entries: float, solved: float) -> float:
    """Counted seconds of exchange work (ExchangeResult.entries, .solved) on the reference machine."""
    return ENTRY_SECONDS * entries + SOLVE_SECONDS * solved


@dataclass(frozen=True)
class ExchangeResult:
    """The new place per unit (-1: unplaced), the units that moved, the gain in the
    objective person_weight * persons + score, and the size of the work done: matrix
    entries built and rows * entries solved, summed over classes (what its time grows with)."""

    place_of: np.ndarray
    moved: int
    gain: float
    entries: float = 0.0
    solved: float = 0.0


def usage_classes(usage: np.ndarray) -> np.ndarray:
    """Per unit, the index of its class of identical usage rows (classes in ascending
    order of their usage rows, so the numbering is deterministic)."""
    if usage.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, classes = np.unique(usage, axis=0, return_inverse=True)
    return classes.ravel().astype(np.int64)


def exchange_within_classes(
    usage: np.ndarray,
    capacity: np.ndarray,
    min_intake: np.ndarray,
    persons_index: int,
    pair_keys: np.ndarray,
    pair_score: np.ndarray,
    place_of: np.ndarray,
    frozen: np.ndarray,
    person_weight: float,
    seconds: Callable[[float, float], float] | None = None,
    budget: float = math.inf,
) -> ExchangeResult:
    """Re-seat each class of identically-using units optimally on the slots it holds
    plus up to ROOM_SLOTS more per place with room. pair_keys (ascending, unit *
    n_places + place) and pair_score are the usable pairs; frozen units (locked) stay.
    Placed units stay placed (persons never fall); capacities and minimum intakes hold
    after every class, loads updated between them. A class above MOST_UNITS units is
    taken in interleaved parts; parts go smallest first (most units per second), and with
    seconds (what entries and solved cost) a part is left out once it would take the work
    past budget seconds, so the same input gives the same answer on any machine."""
    state = _State(usage, capacity, min_intake, persons_index, pair_keys, pair_score, place_of.copy(), person_weight)
    classes = usage_classes(usage)
    movable = np.flatnonzero(~frozen)
    members = movable[np.argsort(classes[movable], kind="stable")]
    starts = np.flatnonzero(np.r_[True, np.diff(classes[members]) != 0]) if members.size else np.zeros(0, dtype=np.int64)
    parts: list[np.ndarray] = []
    for units in np.split(members, starts[1:]) if members.size else []:
        # A large class is taken in interleaved parts: each still spans all places, and the
        # assignment's time (cubic in its size) and memory stay bounded at national scale.
        n_parts = -(-units.size // MOST_UNITS)
        parts += [units[k::n_parts] for k in range(n_parts)]
    spent = 0.0
    for units in sorted(parts, key=lambda units: units.size):  # stable: ties keep class order
        n = float(units.size)
        if seconds is not None and spent + seconds(n * n, n * n * n) > budget:
            break
        entries, solved = state.entries, state.solved
        state.exchange(units)
        if seconds is not None:
            spent += seconds(state.entries - entries, state.solved - solved)
    return ExchangeResult(state.place_of, state.moved, state.gain, state.entries, state.solved)


@dataclass
class _State:
    """The assignment and its loads while classes are exchanged one part at a time."""

    usage: np.ndarray
    capacity: np.ndarray
    min_intake: np.ndarray
    persons_index: int
    pair_keys: np.ndarray
    pair_score: np.ndarray
    place_of: np.ndarray
    person_weight: float
    moved: int = 0
    gain: float = 0.0
    entries: float = 0.0
    solved: float = 0.0

    def __post_init__(self) -> None:
        self.load = np.zeros(self.capacity.shape, dtype=np.int64)
        placed = self.place_of >= 0
        np.add.at(self.load, self.place_of[placed], self.usage[placed])

    def exchange(self, units: np.ndarray) -> None:
        """Re-seat these units (all of one usage) optimally; kept only if it gains."""
        if units.size == 0:
            return
        n_places, pi = self.capacity.shape[0], self.persons_index
        need = self.usage[units[0]]
        persons = int(need[pi])
        per_unit = self.person_weight * persons
        held = self.place_of[units]
        room = _room_slots(self.capacity - self.load, need, self.load[:, pi], self.min_intake, persons)
        slots = np.r_[held[held >= 0], np.repeat(np.arange(n_places), room)]
        out = np.flatnonzero(held < 0)
        if slots.size == 0 or (out.size == 0 and units.size < 2):
            return
        value = _values(units, slots, n_places, self.pair_keys, self.pair_score) + per_unit
        keep = (self.min_intake[slots] > 0) & (np.arange(slots.size) < (held >= 0).sum())
        value[:, keep] += np.where(value[:, keep] > _FORBIDDEN / 2, _KEEP_FILLED, 0.0)
        # One "stays out" column per unplaced unit, open to that unit only.
        stay = np.full((units.size, out.size), _FORBIDDEN)
        stay[out, np.arange(out.size)] = 0.0
        value = np.hstack([value, stay])
        self.entries += value.size
        self.solved += float(units.size) * value.size
        rows, cols = linear_sum_assignment(value, maximize=True)
        if (value[rows, cols] <= _FORBIDDEN / 2).any():
            return
        new = np.where(cols < slots.size, slots[np.minimum(cols, slots.size - 1)], -1)
        before = _objective(units, held, n_places, self.pair_keys, self.pair_score, per_unit)
        after = _objective(units[rows], new, n_places, self.pair_keys, self.pair_score, per_unit)
        if not after > before + 1e-9:
            return
        trial = self.load.copy()
        np.subtract.at(trial, held[held >= 0], need)
        np.add.at(trial, new[new >= 0], need)
        crowded = (trial > self.capacity).any()
        short = ((trial[:, pi] > 0) & (trial[:, pi] < self.min_intake)).any()
        if crowded or short:  # cannot happen by construction; an answer must never break a rule
            return
        self.moved += int((self.place_of[units[rows]] != new).sum())
        self.place_of[units[rows]] = new
        self.load, self.gain = trial, self.gain + after - before


def _room_slots(free: np.ndarray, need: np.ndarray, persons_load: np.ndarray, min_intake: np.ndarray, persons: int) -> np.ndarray:
    """Per place, how many more units of this usage fit (at most ROOM_SLOTS); none where
    a place has no intake yet and one unit would stay below its minimum intake."""
    used = need > 0
    if not used.any():
        return np.zeros(free.shape[0], dtype=np.int64)
    fit = (np.maximum(free[:, used], 0) // need[used]).min(axis=1)
    opens_short = (persons_load == 0) & (min_intake > persons)
    return np.where(opens_short, 0, np.minimum(fit, ROOM_SLOTS))


def _values(units: np.ndarray, slots: np.ndarray, n_places: int, pair_keys: np.ndarray, pair_score: np.ndarray) -> np.ndarray:
    """Score of every unit at every slot's place, _FORBIDDEN where the pair is not usable."""
    if pair_keys.size == 0:
        return np.full((units.size, slots.size), _FORBIDDEN)
    keys = (units[:, None] * n_places + slots[None, :]).ravel()
    at = np.minimum(np.searchsorted(pair_keys, keys), pair_keys.size - 1)
    found = pair_keys[at] == keys
    return np.where(found, pair_score[at], _FORBIDDEN).reshape(units.size, slots.size)


def _objective(
    units: np.ndarray, places: np.ndarray, n_places: int, pair_keys: np.ndarray, pair_score: np.ndarray, per_unit: float
) -> float:
    """person_weight * persons + score of these units at these places (-1: out)."""
    inside = places >= 0
    if not inside.any():
        return 0.0
    keys = units[inside] * n_places + places[inside]
    at = np.minimum(np.searchsorted(pair_keys, keys), pair_keys.size - 1)
    score = pair_score[at]
    return float(score.sum() + per_unit * inside.sum())
