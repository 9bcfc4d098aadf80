"""Why units stay unplaced, and what extra capacity would place more of them.

Plain numpy on an `AssignmentProblem` and the chosen place per unit. Explanations are
marginal and local by design: "at place p, resource r is short by k for unit u" (the reason
names every resource short there; `resource` is the one short by most). That is what a coordinator can act on ("3 more kita places in 09162
would place 2 more households"); it does not re-optimise the whole round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rematch_pipeline.engine.problem import AssignmentProblem
from rematch_pipeline.wording import counted, resource_counted

NO_CANDIDATE = "no compatible municipality"
MIN_INTAKE = "minimum intake not reached"
LINKED_OR_SCORE = "the round's objective preferred other units for the free capacity"


def place_usage(problem: AssignmentProblem, place_of_unit: np.ndarray) -> np.ndarray:
    """used[j, r]: what the assignment takes of every resource at every place."""
    used = np.zeros_like(problem.capacity)
    placed = np.flatnonzero(place_of_unit >= 0)
    np.add.at(used, place_of_unit[placed], problem.usage[placed])
    return used


@dataclass(frozen=True)
class UnplacedReasons:
    """Per unplaced unit: the main reason in words, and the binding (place, resource) if capacity is the reason."""

    unit: np.ndarray  # unit indices
    reason: list[str]
    place: np.ndarray  # place index of the nearest miss, -1 if none
    resource: list[str | None]
    shortfall: np.ndarray  # how much of `resource` was missing there (0 if none)


def unplaced_reasons(problem: AssignmentProblem, place_of_unit: np.ndarray) -> UnplacedReasons:
    """For every unplaced unit, the candidate place it missed by the least, and what it lacked there.

    A place "misses" a unit by the total shortfall over resources (remaining capacity vs usage);
    ties go to the place with the higher pair score. Units without any candidate get NO_CANDIDATE;
    a capacity miss and a minimum intake not reached name the place ("… at <AGS>").
    """
    used = place_usage(problem, place_of_unit)
    free = problem.capacity - used
    unplaced = np.flatnonzero(place_of_unit < 0)
    mask = np.isin(problem.pair_unit, unplaced)
    pu, pp, ps = problem.pair_unit[mask], problem.pair_place[mask], problem.pair_score[mask]
    short = np.clip(problem.usage[pu] - free[pp], 0, None)  # [pairs, resources]
    total = short.sum(axis=1)
    # Best pair per unit: least shortfall, then highest score, then lowest place index (deterministic).
    order = np.lexsort((pp, -ps, total, pu))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pu[order][1:] != pu[order][:-1]
    best = order[first]
    best_by_unit = dict(zip(pu[best].tolist(), best.tolist()))
    reasons: list[str] = []
    places = np.full(unplaced.size, -1, dtype=np.int64)
    resources: list[str | None] = []
    shortfalls = np.zeros(unplaced.size, dtype=np.int64)
    for i, u in enumerate(unplaced.tolist()):
        k = best_by_unit.get(u)
        if k is None:
            reasons.append(NO_CANDIDATE)
            resources.append(None)
            continue
        places[i] = pp[k]
        if total[k] == 0:
            # Everything fits where it missed least: the place's minimum intake or the objective kept it out.
            at_min = problem.min_intake[pp[k]] > 0 and used[pp[k], problem.persons_index] == 0
            # The place, as for a capacity: the coordinator can lower that minimum or add households there.
            reasons.append(f"{MIN_INTAKE} at {problem.place_ids[pp[k]]}" if at_min else LINKED_OR_SCORE)
            resources.append(None)
            continue
        r = int(np.argmax(short[k]))
        resources.append(problem.resources[r])
        shortfalls[i] = int(short[k, r])
        # Every resource short there, the largest shortfall first: more of one alone would not place the unit.
        lacking = [problem.resources[q] for q in np.argsort(-short[k], kind="stable").tolist() if short[k, q] > 0]
        reasons.append(f"capacity: {' and '.join(lacking)} exhausted at {problem.place_ids[pp[k]]}")
    return UnplacedReasons(unplaced, reasons, places, resources, shortfalls)


@dataclass(frozen=True)
class CapacityOffer:
    """Extra capacity of one resource at one place, and how many more units it would place."""

    place: str
    resource: str
    extra: int
    units: int
    households: int
    persons: int

    def sentence(self) -> str:
        """The offer in a coordinator's words."""
        return (
            f"{resource_counted(self.extra, self.resource, more=True)} in {self.place} would place"
            f" {counted(self.households, 'more household')} ({counted(self.persons, 'person')})"
        )


def capacity_offers(problem: AssignmentProblem, place_of_unit: np.ndarray, limit: int = 20) -> list[CapacityOffer]:
    """Binding capacities priced by what they would unlock, best value first.

    For each (place, resource) take the unplaced units whose only shortfall at that place is
    that resource; add them in order of shortfall while every other resource still fits;
    the offer is the extra amount needed for the best ratio of units placed per extra unit
    of capacity. Local and greedy: the figures assume nothing else in the round changes.
    """
    used = place_usage(problem, place_of_unit)
    free = problem.capacity - used
    unplaced = np.flatnonzero(place_of_unit < 0)
    mask = np.isin(problem.pair_unit, unplaced)
    pu, pp = problem.pair_unit[mask], problem.pair_place[mask]
    short = np.clip(problem.usage[pu] - free[pp], 0, None)
    single = (short > 0).sum(axis=1) == 1
    persons = problem.persons_index
    offers: list[CapacityOffer] = []
    for j in np.unique(pp[single]).tolist():
        at_j = single & (pp == j)
        for r in np.unique(np.argmax(short[at_j], axis=1)).tolist():
            rows = np.flatnonzero(at_j & (short[:, r] > 0))
            units = pu[rows]
            need = problem.usage[units]
            order = np.lexsort((units, need[:, r]))
            room = free[j].copy()
            room[r] = max(room[r], 0)
            extra_total, placed, people, families = 0, 0, 0, 0
            best: tuple[float, int, int, int, int] | None = None
            for idx in order.tolist():
                row = need[idx]
                others = np.delete(room - row, r)
                if (others < 0).any():
                    continue
                room = room - row
                extra_total = max(extra_total, int(-room[r]))
                placed += 1
                people += int(row[persons])
                families += int(problem.unit_households[units[idx]])
                ratio = placed / max(extra_total, 1)
                if best is None or ratio > best[0]:
                    best = (ratio, extra_total, placed, families, people)
            if best is not None and best[1] > 0:
                offers.append(CapacityOffer(problem.place_ids[j], problem.resources[r], *best[1:]))
    offers.sort(key=lambda o: (-o.units / o.extra, -o.units, o.place, o.resource))
    return offers[:limit]
