"""Primal heuristics for large rounds: LP-guided greedy, min-intake repair, local search.

They work on positions into the sorted usable pair list of large_scale._Pairs and
keep every constraint of the model at every step (capacity per resource, minimum
intake, locked pairs), so any answer they return passes check_assignment.
Loops are plain Python over lists: tens of thousands of steps, well under a second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from rematch_pipeline.engine.assignment import AssignmentProblem


class PlacementState:
    """Residual capacities and the current place of every unit."""

    def __init__(self, problem: AssignmentProblem, unit: np.ndarray, place: np.ndarray) -> None:
        self.problem = problem
        # Kept as numpy (millions of pairs): converting to lists would cost seconds and
        # gigabytes, while the loops below touch only a small part of them.
        self.pair_unit = unit
        self.pair_place = place
        self.usage = [tuple(row) for row in problem.usage.tolist()]
        self.persons = problem.usage[:, problem.persons_index].tolist()
        self.minimum = problem.min_intake.tolist()
        self.resid = problem.capacity.tolist()
        self.load = [0] * problem.n_places  # persons per place
        self.pair_of_unit: list[int] = [-1] * problem.n_units
        self.locked_units: set[int] = {u for u, _ in problem.locked}

    def fits(self, u: int, j: int) -> bool:
        """The unit's usage fits the place's residual capacity."""
        res = self.resid[j]
        return all(a <= b for a, b in zip(self.usage[u], res, strict=True))

    def add(self, k: int) -> None:
        """Place the pair's unit at the pair's place (no checks)."""
        u, j = int(self.pair_unit[k]), int(self.pair_place[k])
        res = self.resid[j]
        for r, a in enumerate(self.usage[u]):
            res[r] -= a
        self.load[j] += self.persons[u]
        self.pair_of_unit[u] = k

    def remove(self, u: int) -> None:
        """Unplace a unit (no checks)."""
        k = self.pair_of_unit[u]
        j = int(self.pair_place[k])
        res = self.resid[j]
        for r, a in enumerate(self.usage[u]):
            res[r] += a
        self.load[j] -= self.persons[u]
        self.pair_of_unit[u] = -1

    def chosen(self) -> np.ndarray:
        """Sorted positions of the chosen pairs."""
        return np.array(sorted(k for k in self.pair_of_unit if k >= 0), dtype=np.int64)


def greedy(state: PlacementState, priority: Sequence[int], closed: set[int] | frozenset[int] = frozenset()) -> None:
    """Place unplaced units in priority order of their pairs where they fit."""
    done = state.pair_of_unit
    for k in priority:
        u = int(state.pair_unit[k])
        if done[u] >= 0:
            continue
        j = int(state.pair_place[k])
        if j in closed or not state.fits(u, j):
            continue
        state.add(k)


def repair_min_intake(state: PlacementState, priority: Sequence[int], rounds: int = 4) -> None:
    """Empty places below their minimum intake and re-place their units elsewhere.

    A place closed here stays closed for the rest of the repair, so it terminates.
    Locked units are never moved (a lock at a place below its minimum is the model's
    infeasibility, not the heuristic's to fix)."""
    closed: set[int] = set()
    for _ in range(rounds):
        short = [
            j for j, load in enumerate(state.load) if 0 < load < state.minimum[j] and j not in closed
        ]
        if not short:
            return
        for j in short:
            closed.add(j)
        short_set = set(short)
        for u, k in enumerate(state.pair_of_unit):
            if k >= 0 and int(state.pair_place[k]) in short_set and u not in state.locked_units:
                state.remove(u)
        greedy(state, priority, closed)
    # Last resort: anything still short is emptied (never creates new shortfalls).
    for u, k in enumerate(state.pair_of_unit):
        j = int(state.pair_place[k]) if k >= 0 else -1
        if k >= 0 and 0 < state.load[j] < state.minimum[j] and u not in state.locked_units:
            state.remove(u)


def local_search(
    state: PlacementState,
    pairs_of_unit: list[list[int]],
    value: np.ndarray | Sequence[float],
    deadline: float,
    passes: int = 4,
) -> None:
    """Improve by single moves: insert unplaced units (value > 0) and move placed units
    to a pair of higher value, keeping capacity and minimum intakes. pairs_of_unit[u]
    lists the unit's pair positions by descending value."""
    eps = 1e-9
    for _ in range(passes):
        improved = False
        for u, options in enumerate(pairs_of_unit):
            if time.perf_counter() > deadline:
                return
            if u in state.locked_units or not options:
                continue
            k_now = state.pair_of_unit[u]
            now = value[k_now] if k_now >= 0 else 0.0
            j_now = int(state.pair_place[k_now]) if k_now >= 0 else -1
            p = state.persons[u]
            for k in options:
                if value[k] <= now + eps:
                    break  # sorted: nothing better left
                j = int(state.pair_place[k])
                if j == j_now:
                    continue
                if not state.fits(u, j):
                    continue
                if state.minimum[j] and state.load[j] == 0 and p < state.minimum[j]:
                    continue  # would open a place below its minimum
                if j_now >= 0 and state.minimum[j_now] and 0 < state.load[j_now] - p < state.minimum[j_now]:
                    break  # leaving would drop the old place below its minimum
                if k_now >= 0:
                    state.remove(u)
                state.add(k)
                improved = True
                break
        if not improved:
            return
