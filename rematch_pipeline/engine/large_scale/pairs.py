"""The usable pairs of a large round (sorted by unit and place) and what an assignment loads, places and keeps on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rematch_pipeline.engine.model import _reduce
from rematch_pipeline.engine.problem import AssignmentProblem, most_units_placed


@dataclass
class _Pairs:
    """Usable pairs of the full problem, sorted by (unit, place)."""

    idx: np.ndarray  # indices into the problem's pairs
    keys: np.ndarray  # unit * n_places + place, ascending: finds a pair by binary search
    unit: np.ndarray
    place: np.ndarray
    score: np.ndarray
    persons: np.ndarray

    @property
    def size(self) -> int:
        return int(self.idx.size)

    def usage(self, problem: AssignmentProblem, r: int, positions: np.ndarray | None = None) -> np.ndarray:
        idx = self.idx if positions is None else self.idx[positions]
        return problem.usage_of_pairs(idx, r).astype(np.float64)


def _usable_pairs(problem: AssignmentProblem) -> _Pairs:
    idx = _reduce(problem)
    unit, place = problem.pair_unit[idx], problem.pair_place[idx]
    keys = unit * max(problem.n_places, 1) + place
    if keys.size and not (np.diff(keys) > 0).all():  # build_problem already sorts them
        order = np.argsort(keys, kind="stable")
        idx, unit, place, keys = idx[order], unit[order], place[order], keys[order]
    return _Pairs(
        idx=idx,
        keys=keys,
        unit=unit,
        place=place,
        score=problem.pair_score[idx],
        persons=problem.usage_of_pairs(idx, problem.persons_index).astype(np.float64),
    )


def _top_per_unit(unit: np.ndarray, key: np.ndarray, k: int, among: np.ndarray) -> np.ndarray:
    """Positions (sorted) of each unit's k largest keys among the given positions.
    Ties go to the earlier position, so the choice is deterministic."""
    if among.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = among[np.lexsort((among, -key[among], unit[among]))]
    u = unit[order]
    rank = np.arange(u.size) - np.searchsorted(u, u, side="left")
    return np.sort(order[rank < k])


def _segments(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets of each run of equal units in a unit-sorted array, and the units."""
    if unit.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(unit) != 0])
    return starts, unit[starts]


def _short(problem: AssignmentProblem, pairs: _Pairs, place_of: np.ndarray) -> np.ndarray:
    """Places with some persons but fewer than their minimum intake."""
    persons = _load(problem, pairs, place_of)[:, problem.persons_index]
    return (persons > 0) & (persons < problem.min_intake)


def _drop_short(problem: AssignmentProblem, pairs: _Pairs, place_of: np.ndarray, locked: np.ndarray) -> np.ndarray:
    """Unplace the (unlocked) units of places below their minimum intake."""
    place_of = place_of.copy()
    short = _short(problem, pairs, place_of)
    place_of[(place_of >= 0) & short[np.maximum(place_of, 0)] & ~locked] = -1
    return place_of


def _locked_places(problem: AssignmentProblem) -> np.ndarray:
    """Per unit its locked place, -1 for the others."""
    place_of = np.full(problem.n_units, -1, dtype=np.int64)
    for u, j in problem.locked:
        place_of[u] = j
    return place_of


def _load(problem: AssignmentProblem, pairs: _Pairs, place_of: np.ndarray) -> np.ndarray:
    load = np.zeros(problem.capacity.shape, dtype=np.int64)
    pos = _positions(problem, pairs, place_of)
    if pos.size:
        np.add.at(load, pairs.place[pos], problem.usage_of_pairs(pairs.idx[pos]))
    return load


def _positions(problem: AssignmentProblem, pairs: _Pairs, place_of: np.ndarray) -> np.ndarray:
    """Pair positions of an assignment (units with place -1 skipped)."""
    placed = np.flatnonzero(place_of >= 0)
    return np.searchsorted(pairs.keys, placed * problem.n_places + place_of[placed])


def _room_in_total(problem: AssignmentProblem) -> bool:
    """Whether the places offer, summed over all of them, every resource all units ask for."""
    return most_units_placed(problem) >= problem.n_units


def _persons(problem: AssignmentProblem, pairs: _Pairs, place_of: np.ndarray) -> float:
    return float(pairs.persons[_positions(problem, pairs, place_of)].sum())


def _most_persons(problem: AssignmentProblem, pairs: _Pairs) -> int:
    """Persons of all units with a usable pair: a bound that needs no prices."""
    has = np.zeros(problem.n_units, dtype=bool)
    has[pairs.unit] = True
    return int(problem.usage[has, problem.persons_index].sum())
