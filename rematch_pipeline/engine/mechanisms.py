"""Alternative matching mechanisms: deferred acceptance and stability diagnostics.

The optimiser in assignment.py maximises persons placed and total score. This module
offers the classic alternative from the matching-market literature, household-proposing
deferred acceptance (DA, Gale and Shapley 1962), generalised to the product's several
capacity resources, plus diagnostics that measure how far ANY assignment is from being
stable (blocking pairs, justified envy). See docs/mechanisms.md.

Everything runs on one core, `_propose`: proposers walk down their preference lists
over "contracts"; each contract belongs to one place (the chooser) and consumes a
usage vector of the place's resources. A place tentatively holds the best-priority
set of proposers that fits: holders plus the new proposer are considered in priority
order and each is kept if it still fits every resource (the greedy choice rule).

* multi-resource DA on an AssignmentProblem: contract = candidate pair, chooser =
  place, usage = the unit's usage row;
* classic hospital/resident (HR): the special case of one resource and usage 1;
* student/project allocation (SPA): chooser = supervisor, resources = supervisor seats
  plus one seat column per project of the supervisor, so a (student, project) contract
  uses one supervisor seat and one seat of its project.

Plain Python + numpy, deterministic, no I/O.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rematch_pipeline.engine._common import PAIR_CHUNK_SIZE, chunk_bounds
from rematch_pipeline.engine.problem import AssignmentProblem, PairLookup

# Preferences: None (derive from pair_score), one list per unit/place (best first;
# anything not listed is unacceptable), or one key per candidate pair (higher = better).
Preferences = Sequence[Sequence[int]] | np.ndarray | None


# --------------------------------------------------------------------------- core


def _propose(
    pref_start: np.ndarray,
    pref_contract: np.ndarray,
    contract_proposer: np.ndarray,
    contract_place: np.ndarray,
    contract_rank: np.ndarray,
    contract_row: np.ndarray,
    rows: np.ndarray,
    capacity: np.ndarray,
) -> np.ndarray:
    """Proposer-proposing deferred acceptance with multi-resource greedy choice.

    pref_contract[pref_start[i]:pref_start[i+1]] are proposer i's contracts, best
    first. contract_rank orders the contracts of one place (lower = higher priority)
    and must be unique per (place, proposer) and lie in [0, len(contract_rank)).
    Contract k uses rows[contract_row[k]] of capacity[contract_place[k]].
    Returns the held contract per proposer (-1 = none).

    Free proposers are served first-in first-out, starting in index order; with a
    single resource and unit usage the result does not depend on that order (it is
    the proposer-optimal stable matching), with several resources it may.
    """
    n_prop = pref_start.size - 1
    n_res = capacity.shape[1]
    ptr = pref_start[:-1].tolist()
    end = pref_start[1:].tolist()
    # Per-contract data as machine integers (array.array): indexed as fast as lists, without a Python
    # int object per entry. A national round has 15 M contracts; five lists of them took ~2 GiB.
    prefs = _int_array(pref_contract)
    cprop = _int_array(contract_proposer)
    cplace = _int_array(contract_place)
    crank = _int_array(contract_rank)
    # Households share few distinct usage rows: build the Python rows once per distinct
    # row. Sparse form: most resources of a unit are 0, skip them in every check.
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    crow = _int_array(inverse.reshape(-1)[contract_row] if contract_row.size else np.zeros(0, dtype=np.int64))
    nz = [tuple((r, a) for r, a in enumerate(row) if a) for row in distinct.tolist()]
    use = [dict(t) for t in nz]
    remaining = capacity.tolist()
    # Per place and resource: sorted ranks of the holders that use the resource. Only
    # those can be displaced through it, and rare resources (accessible units) keep
    # short lists.
    users: list[list[list[int]]] = [[[] for _ in range(n_res)] for _ in range(capacity.shape[0])]
    slot = array("q", [-1]) * max(len(crank), 1)  # contract currently held at a rank
    chosen = [-1] * n_prop
    queue = deque(i for i in range(n_prop) if ptr[i] < end[i])

    while queue:
        u = queue.popleft()
        p, e = ptr[u], end[u]
        while p < e:
            k = prefs[p]
            p += 1
            j, g, w = cplace[k], crank[k], nz[crow[k]]
            rem, lists = remaining[j], users[j]
            for r, a in w:
                if a > rem[r]:
                    break
            else:
                # Holders and proposer fit together: greedy keeps everyone.
                for r, a in w:
                    rem[r] -= a
                    insort(lists[r], g)
                slot[g] = k
                chosen[u] = k
                break
            # If every user of an overflowing resource ranks above the proposer, greedy
            # keeps them all first and the proposer no longer fits: rejected (checked while
            # the overflow is collected: most proposals that get here end so).
            need: dict[int, int] = {}
            rejected = False
            for r, a in w:
                if a > rem[r]:
                    lst = lists[r]
                    if not lst or g > lst[-1]:
                        rejected = True
                        break
                    need[r] = a - rem[r]
            if rejected:
                continue
            # A holder x can only be rejected through resource r if the r-usage of the
            # holders ranked after x is below the overflow need[r]; everything ranked
            # at or above the last holder with enough r-usage behind it stays. Walk
            # each overflowing resource back from its worst user to find that rank.
            start: dict[int, int] = {}
            tail: dict[int, int] = {}
            threshold = len(slot)
            for r, over in need.items():
                lst = lists[r]
                i, t = len(lst), 0
                while i and t < over:
                    i -= 1
                    t += use[crow[slot[lst[i]]]][r]
                start[r], tail[r] = i, t
                threshold = min(threshold, lst[i - 1] if i else -1)
            # Extend every walk down to the common threshold so the free capacity of
            # the region (ranks > threshold) is exact on all overflowing resources.
            cand = {g}
            for r in need:
                lst, i, t = lists[r], start[r], tail[r]
                while i and lst[i - 1] > threshold:
                    i -= 1
                    t += use[crow[slot[lst[i]]]][r]
                start[r], tail[r] = i, t
                cand.update(lst[i:])
            avail = {r: rem[r] + tail[r] for r in need}
            dropped: list[int] = []
            accepted = False
            for h in sorted(cand):
                kh = k if h == g else slot[h]
                uh = use[crow[kh]]
                if all(avail[r] >= uh.get(r, 0) for r in avail):
                    for r in avail:
                        avail[r] -= uh.get(r, 0)
                    accepted = accepted or h == g
                elif h != g:
                    dropped.append(kh)
            for kd in dropped:
                gd = crank[kd]
                for r, a in nz[crow[kd]]:
                    rem[r] += a
                    lst = lists[r]
                    del lst[bisect_left(lst, gd)]
                v = cprop[kd]
                chosen[v] = -1
                queue.append(v)
            if accepted:
                for r, a in w:
                    rem[r] -= a
                    insort(lists[r], g)
                slot[g] = k
                chosen[u] = k
                break
        ptr[u] = p
    return np.asarray(chosen, dtype=np.int64)


def _int_array(values: np.ndarray) -> array:
    """A numpy integer array as an array.array of int64."""
    out = array("q")
    out.frombytes(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return out


def _fits(usage: np.ndarray, units: np.ndarray, room: np.ndarray, places: np.ndarray, freed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per i, whether usage[units[i]] fits room[places[i]] in every resource, plus cum[hi[i]] - cum[lo[i]]
    with freed = (cum, lo, hi). In slices of pairs: a national round's per-pair rows (15 M pairs × 7
    resources, int64) would take 0.8 GiB per operand at once."""
    out = np.empty(units.size, dtype=bool)
    for a, b in chunk_bounds(units.size, PAIR_CHUNK_SIZE):
        limit = room[places[a:b]]
        if freed is not None:
            cum, lo, hi = freed
            limit = limit + (cum[hi[a:b]] - cum[lo[a:b]])
        out[a:b] = (usage[units[a:b]] <= limit).all(axis=1)
    return out


def _csr_starts(sorted_keys: np.ndarray, n: int) -> np.ndarray:
    """Start offsets of groups 0..n in a sorted key array (length n + 1)."""
    return np.searchsorted(sorted_keys, np.arange(n + 1), side="left").astype(np.int64)


# --------------------------------------------------------------------------- preferences


@dataclass(frozen=True)
class _Ranks:
    """Preference data per candidate pair of a problem.

    acceptable: both sides rank the pair. unit_pos: position in the unit's list
    (lower = preferred; meaningful where the unit ranks the pair). unit_order: the pairs
    sorted by unit, then unit_pos. place_rank: global dense rank, place-major, lower =
    higher priority within a place. place_start[j]: first rank of place j.
    """

    acceptable: np.ndarray
    unit_pos: np.ndarray
    unit_order: np.ndarray
    place_rank: np.ndarray
    place_start: np.ndarray


def _positions_from_lists(
    problem: AssignmentProblem, lists: Sequence[Sequence[int]], by_unit: bool
) -> np.ndarray:
    """Per pair: position in the owner's list, or -1 where not listed."""
    n_j = max(problem.n_places, 1)
    owners = problem.n_units if by_unit else problem.n_places
    if len(lists) != owners:
        side = "unit_preferences" if by_unit else "place_priorities"
        raise ValueError(f"{side} has {len(lists)} lists, expected {owners}")
    owner_idx: list[int] = []
    other_idx: list[int] = []
    position: list[int] = []
    for o, items in enumerate(lists):
        items = [int(x) for x in items]
        if len(set(items)) != len(items):
            raise ValueError("a preference list names the same index twice")
        owner_idx.extend([o] * len(items))
        other_idx.extend(items)
        position.extend(range(len(items)))
    own = np.asarray(owner_idx, dtype=np.int64)
    oth = np.asarray(other_idx, dtype=np.int64)
    u, j = (own, oth) if by_unit else (oth, own)
    if u.size and (u.min() < 0 or u.max() >= problem.n_units or j.min() < 0 or j.max() >= problem.n_places):
        raise ValueError("a preference list names an index out of range")
    at = PairLookup.of(problem).index(u * n_j + j)
    bad = int((at < 0).sum())
    if bad:
        raise ValueError(f"{bad} preference entries are not candidate pairs")
    out = np.full(problem.pair_unit.size, -1, dtype=np.int64)
    out[at] = np.asarray(position, dtype=np.int64)
    return out


def _dense_descending(key: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense rank of each key (0 = highest) and the number of distinct keys."""
    distinct, dense = np.unique(-key, return_inverse=True)
    return dense.reshape(-1), distinct.size


def _order(group: np.ndarray, key: np.ndarray, tie: np.ndarray, dense: tuple[np.ndarray, int]) -> np.ndarray:
    """Indices sorted by group ascending, key descending, tie ascending; dense = _dense_descending(key).

    One argsort of a composite int64 key (dense key ranks) is several times faster
    than np.lexsort on a million pairs; lexsort remains the fallback on overflow.
    (group, tie) is a candidate pair, so the composite keys are distinct and the
    faster unstable sort gives the one order there is.
    """
    if key.size == 0:
        return np.zeros(0, dtype=np.int64)
    ranks, n_key = dense
    n_tie = int(tie.max()) + 1
    if (int(group.max()) + 1) * n_key * n_tie >= 2**62:
        return np.lexsort((tie, -key, group))
    composite = (group * n_key + ranks) * n_tie + tie
    return np.argsort(composite)


def _ranks(
    problem: AssignmentProblem, unit_preferences: Preferences, place_priorities: Preferences
) -> _Ranks:
    """Turn the preference arguments into per-pair ranks (see _Ranks)."""
    n_p = problem.pair_unit.size
    pu, pj = problem.pair_unit, problem.pair_place
    acceptable = np.ones(n_p, dtype=bool)
    # Both sides rank by the pair score by default: its dense ranks (a sort) are computed once.
    score_dense: tuple[np.ndarray, int] | None = None

    # Unit side: sort pairs by (unit, preference), then position within the unit.
    if unit_preferences is None or isinstance(unit_preferences, np.ndarray):
        key = problem.pair_score if unit_preferences is None else np.asarray(unit_preferences, np.float64)
        if key.shape != (n_p,) or not np.isfinite(key).all():
            raise ValueError("unit_preferences array must have one finite key per candidate pair")
        dense = _dense_descending(key)
        score_dense = dense if unit_preferences is None else None
        order = _order(pu, key, pj, dense)  # higher key first, ties by place index
    else:
        pos = _positions_from_lists(problem, unit_preferences, by_unit=True)
        acceptable &= pos >= 0
        order = np.lexsort((pos, pu))
    unit_order = order
    unit_pos = np.empty(n_p, dtype=np.int64)
    starts = _csr_starts(pu[order], problem.n_units)
    unit_pos[order] = np.arange(n_p) - np.repeat(starts[:-1], np.diff(starts))

    # Place side ("municipality priorities come from the score" by default).
    if place_priorities is None or isinstance(place_priorities, np.ndarray):
        key = problem.pair_score if place_priorities is None else np.asarray(place_priorities, np.float64)
        if key.shape != (n_p,) or not np.isfinite(key).all():
            raise ValueError("place_priorities array must have one finite key per candidate pair")
        dense = score_dense if place_priorities is None and score_dense is not None else _dense_descending(key)
        order = _order(pj, key, pu, dense)  # higher key first, ties by unit index
    else:
        pos = _positions_from_lists(problem, place_priorities, by_unit=False)
        acceptable &= pos >= 0
        order = np.lexsort((pos, pj))
    place_rank = np.empty(n_p, dtype=np.int64)
    place_rank[order] = np.arange(n_p)
    place_start = _csr_starts(pj[order], problem.n_places)
    return _Ranks(acceptable, unit_pos, unit_order, place_rank, place_start)


# --------------------------------------------------------------------------- DA


def deferred_acceptance(
    problem: AssignmentProblem,
    unit_preferences: Preferences = None,
    place_priorities: Preferences = None,
) -> np.ndarray:
    """Household(unit)-proposing deferred acceptance with multi-resource capacities.

    Returns the place index per unit (-1 = unplaced).

    unit_preferences / place_priorities: None = from pair_score (a unit ranks its
    candidate places by score descending, ties by place index; a place ranks its
    candidate units by the same pair score, ties by unit index: municipality
    priorities come from the score); or one list per unit (place indices, best first)
    / per place (unit indices, best first), where anything unlisted is unacceptable;
    or one key per candidate pair, higher = better.

    A place holds the best-priority set of proposers that fits: holders plus the new
    proposer in priority order, each kept if it still fits every resource. Locked
    pairs are pre-assigned (their usage deducted, they never move); minimum intakes
    and exactly_one are ignored. Raises ValueError when locked pairs alone exceed a
    capacity.
    """
    return _deferred_acceptance(problem, _ranks(problem, unit_preferences, place_priorities))


def _deferred_acceptance(problem: AssignmentProblem, ranks: _Ranks) -> np.ndarray:
    """deferred_acceptance on preferences already ranked (_ranks)."""
    place_of = np.full(problem.n_units, -1, dtype=np.int64)
    capacity = problem.capacity.copy()
    is_locked = np.zeros(problem.n_units, dtype=bool)
    for u, j in problem.locked:
        place_of[u] = j
        is_locked[u] = True
        capacity[j] -= problem.usage[u]
    if (capacity < 0).any():
        n_bad = int((capacity < 0).any(axis=1).sum())
        raise ValueError(f"locked pairs exceed the capacity of {n_bad} places")

    pu, pj = problem.pair_unit, problem.pair_place
    # A contract that cannot fit even into an empty place would always be rejected:
    # dropping it up front is equivalent and saves proposals.
    fits_alone = _fits(problem.usage, pu, capacity, pj)
    usable = ranks.acceptable & ~is_locked[pu] & fits_alone
    # Each unit's usable pairs, best first: the unit-side order already sorts them (no new sort).
    prefs = ranks.unit_order[usable[ranks.unit_order]]
    starts = _csr_starts(pu[prefs], problem.n_units)
    chosen = _propose(
        pref_start=starts,
        pref_contract=prefs,
        contract_proposer=pu,
        contract_place=pj,
        contract_rank=ranks.place_rank,
        contract_row=pu,
        rows=problem.usage,
        capacity=capacity,
    )
    got = chosen >= 0
    place_of[got] = pj[chosen[got]]
    return place_of


# --------------------------------------------------------------------------- HR and SPA


def hospital_resident(
    resident_prefs: Mapping[str, Sequence[str]],
    hospital_prefs: Mapping[str, Sequence[str]],
    capacities: Mapping[str, int],
    optimal: Literal["resident", "hospital"] = "resident",
) -> dict[str, list[str]]:
    """Classic hospital/resident stable matching (single resource, usage 1).

    Only mutually acceptable pairs are used (a name one side ranks but the other does
    not is dropped; duplicates keep their first position). Returns every hospital ->
    its residents in the hospital's preference order.

    Resident-optimal is deferred_acceptance on an AssignmentProblem with one
    resource. Hospital-optimal uses the textbook reduction to one-to-one matching:
    each hospital is cloned into capacity-many seats that propose (same core), and a
    resident ranks the seats of a hospital consecutively in seat order.
    """
    if optimal not in ("resident", "hospital"):
        raise ValueError("optimal must be 'resident' or 'hospital'")
    residents = list(resident_prefs)
    hospitals = list(hospital_prefs)
    h_index = {h: i for i, h in enumerate(hospitals)}
    r_index = {r: i for i, r in enumerate(residents)}
    r_lists = [_dedupe([h_index[h] for h in resident_prefs[r] if h in h_index]) for r in residents]
    h_lists = [_dedupe([r_index[r] for r in hospital_prefs[h] if r in r_index]) for h in hospitals]
    h_ranks = [set(lst) for lst in h_lists]
    r_lists = [[h for h in lst if r in h_ranks[h]] for r, lst in enumerate(r_lists)]
    r_ranks = [set(lst) for lst in r_lists]
    h_lists = [[r for r in lst if h in r_ranks[r]] for h, lst in enumerate(h_lists)]
    cap = [int(capacities[h]) for h in hospitals]
    matched: dict[str, list[str]] = {h: [] for h in hospitals}

    if optimal == "resident":
        problem = _one_resource_problem(len(residents), cap, r_lists)
        place_of = deferred_acceptance(problem, unit_preferences=r_lists, place_priorities=h_lists)
        for r, h in enumerate(place_of.tolist()):
            if h >= 0:
                matched[hospitals[h]].append(residents[r])
    else:
        seat_hospital = [h for h in range(len(hospitals)) for _ in range(cap[h])]
        first_seat = np.concatenate([[0], np.cumsum(cap)]).astype(int).tolist()
        seat_lists = [h_lists[h] for h in seat_hospital]
        resident_lists = [
            [first_seat[h] + s for h in lst for s in range(cap[h])] for lst in r_lists
        ]
        problem = _one_resource_problem(len(seat_hospital), [1] * len(residents), seat_lists)
        place_of = deferred_acceptance(problem, unit_preferences=seat_lists, place_priorities=resident_lists)
        for seat, r in enumerate(place_of.tolist()):
            if r >= 0:
                matched[hospitals[seat_hospital[seat]]].append(residents[r])
    for h, names in matched.items():
        order = {r: i for i, r in enumerate(h_lists[h_index[h]])}
        names.sort(key=lambda name: order[r_index[name]])
    return matched


def _dedupe(items: list[int]) -> list[int]:
    """Keep the first occurrence of each item (a repeated choice adds nothing)."""
    return list(dict.fromkeys(items))


def _one_resource_problem(n_units: int, capacity: list[int], lists: list[list[int]]) -> AssignmentProblem:
    """Units of usage 1 with one resource; candidate pairs = the units' lists."""
    pair_unit = np.asarray([u for u, lst in enumerate(lists) for _ in lst], dtype=np.int64)
    pair_place = np.asarray([j for lst in lists for j in lst], dtype=np.int64)
    return AssignmentProblem(
        unit_ids=[str(u) for u in range(n_units)],
        place_ids=[str(j) for j in range(len(capacity))],
        resources=["persons"],
        usage=np.ones((n_units, 1), dtype=np.int64),
        capacity=np.asarray(capacity, dtype=np.int64).reshape(-1, 1),
        min_intake=np.zeros(len(capacity), dtype=np.int64),
        pair_unit=pair_unit,
        pair_place=pair_place,
        pair_score=np.zeros(pair_unit.size),
    )


def student_allocation(
    student_prefs: Mapping[str, Sequence[str]],
    supervisor_prefs: Mapping[str, Sequence[str]],
    project_supervisors: Mapping[str, str],
    project_capacities: Mapping[str, int],
    supervisor_capacities: Mapping[str, int],
) -> dict[str, list[str]]:
    """Student-optimal student/project allocation (SPA) as multi-resource DA.

    The chooser is the supervisor; its resources are its own seats plus one seat
    column per project it offers, so a (student, project) contract uses one
    supervisor seat and one seat of that project. Supervisors rank students (a
    project ranks its applicants in the supervisor's order). These nested capacities
    make the greedy choice rule a matroid choice, so DA returns the student-optimal
    stable matching. A contract exists when the student ranks the project and the
    project's supervisor ranks the student. Returns every project -> its students in
    supervisor preference order.
    """
    projects = list(project_capacities)
    supervisors = list(supervisor_capacities)
    students = list(student_prefs)
    s_index = {s: i for i, s in enumerate(supervisors)}
    p_index = {p: i for i, p in enumerate(projects)}
    p_sup = [s_index[project_supervisors[p]] for p in projects]
    # Resource columns of a supervisor: 0 = supervisor seats, 1 + i = its i-th project.
    local: list[int] = []
    n_of = [0] * len(supervisors)
    for s in p_sup:
        n_of[s] += 1
        local.append(n_of[s])
    n_res = 1 + max(n_of, default=0)
    capacity = np.zeros((len(supervisors), n_res), dtype=np.int64)
    capacity[:, 0] = [int(supervisor_capacities[s]) for s in supervisors]
    rows = np.zeros((len(projects), n_res), dtype=np.int64)
    for p, (s, col) in enumerate(zip(p_sup, local, strict=True)):
        capacity[s, col] = int(project_capacities[projects[p]])
        rows[p, 0] = 1
        rows[p, col] = 1

    # Priority rank of student t at supervisor s: offset of s + position in its list.
    position = [
        {t: i for i, t in enumerate(dict.fromkeys(supervisor_prefs.get(s, ())))} for s in supervisors
    ]
    offset = np.concatenate([[0], np.cumsum([len(pos) for pos in position])]).astype(int).tolist()
    c_student: list[int] = []
    c_project: list[int] = []
    c_rank: list[int] = []
    starts = [0]
    for t, name in enumerate(students):
        for proj in dict.fromkeys(student_prefs[name]):
            p = p_index.get(proj)
            if p is None:
                continue
            s = p_sup[p]
            if name not in position[s]:
                continue
            c_student.append(t)
            c_project.append(p)
            c_rank.append(offset[s] + position[s][name])
        starts.append(len(c_student))
    c_proj = np.asarray(c_project, dtype=np.int64)
    chosen = _propose(
        pref_start=np.asarray(starts, dtype=np.int64),
        pref_contract=np.arange(len(c_student), dtype=np.int64),
        contract_proposer=np.asarray(c_student, dtype=np.int64),
        contract_place=np.asarray(p_sup, dtype=np.int64)[c_proj] if c_proj.size else c_proj,
        contract_rank=_dense(np.asarray(c_rank, dtype=np.int64)),
        contract_row=c_proj,
        rows=rows,
        capacity=capacity,
    )
    matched: dict[str, list[tuple[int, str]]] = {p: [] for p in projects}
    for t, k in enumerate(chosen.tolist()):
        if k >= 0:
            matched[projects[c_project[k]]].append((c_rank[k], students[t]))
    return {p: [name for _, name in sorted(v)] for p, v in matched.items()}


def _dense(values: np.ndarray) -> np.ndarray:
    """Order-preserving map of values onto 0..n_distinct-1 (the core's rank space)."""
    if values.size == 0:
        return values
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


# --------------------------------------------------------------------------- stability


@dataclass(frozen=True)
class _Envy:
    """Per candidate pair: does the unit prefer the place to its own, is it a blocking
    pair, and how many movable units the place holds with lower priority."""

    prefers: np.ndarray
    blocking: np.ndarray
    lower_count: np.ndarray


def _checked_places(problem: AssignmentProblem, place_of_unit: np.ndarray) -> np.ndarray:
    """place_of_unit as int64, after checking its shape and range."""
    place_of = np.asarray(place_of_unit, dtype=np.int64)
    if place_of.shape != (problem.n_units,):
        raise ValueError(f"place_of_unit has shape {place_of.shape}, expected ({problem.n_units},)")
    if ((place_of < -1) | (place_of >= problem.n_places)).any():
        raise ValueError("place_of_unit has indices out of range")
    return place_of


# Households held at a place outside any placement of their unit (a split link group): (place index per
# held household, its usage row). See stability_report.
HeldApart = tuple[np.ndarray, np.ndarray]


def _envy(
    problem: AssignmentProblem,
    place_of_unit: np.ndarray,
    unit_preferences: Preferences,
    place_priorities: Preferences,
) -> _Envy:
    """Vectorised stability arrays over all candidate pairs (see blocking_pairs)."""
    place_of = _checked_places(problem, place_of_unit)
    return _envy_ranked(problem, place_of, _ranks(problem, unit_preferences, place_priorities), PairLookup.of(problem))


def _envy_ranked(
    problem: AssignmentProblem, place_of: np.ndarray, ranks: _Ranks, lookup: PairLookup, apart: HeldApart | None = None
) -> _Envy:
    """_envy on preferences already ranked and pair keys already sorted (shared by the comparison).

    apart: households held at places outside their unit's placement; each takes its usage there and ranks
    below every unit the place holds (a place may not hold part of a link group), so it is freed for any claimant."""
    pu, pj = problem.pair_unit, problem.pair_place
    n_p, n_j = pu.size, max(problem.n_places, 1)
    is_locked = np.zeros(problem.n_units, dtype=bool)
    for u, _ in problem.locked:
        is_locked[u] = True

    # The pair each unit holds now (-1 if unplaced or not a candidate pair).
    placed = np.flatnonzero(place_of >= 0)
    current = np.full(problem.n_units, -1, dtype=np.int64)
    current[placed] = lookup.index(placed * n_j + place_of[placed])
    cur_ok = current >= 0
    cur_ok[cur_ok] = ranks.acceptable[current[cur_ok]]
    # Sitting at an unacceptable or non-candidate place counts as worse than any pair.
    cur_pos = np.full(problem.n_units, np.iinfo(np.int64).max, dtype=np.int64)
    cur_pos[cur_ok] = ranks.unit_pos[current[cur_ok]]
    prefers = ranks.acceptable & ~is_locked[pu] & (ranks.unit_pos < cur_pos[pu]) & (pj != place_of[pu])

    # Priority of each placed, movable unit at its place (place-local; units the place
    # does not rank count as lowest), as sorted keys place * big + local rank.
    big = n_p + 2
    local = np.full(problem.n_units, n_p + 1, dtype=np.int64)
    local[cur_ok] = ranks.place_rank[current[cur_ok]] - ranks.place_start[place_of[cur_ok]]
    movable = placed[~is_locked[placed]]
    usage = problem.usage
    held_key = place_of[movable] * big + local[movable]
    held_usage = usage[movable]
    load = np.zeros_like(problem.capacity)
    np.add.at(load, place_of[placed], usage[placed])
    if apart is not None:
        apart_place, apart_usage = (np.asarray(a, dtype=np.int64) for a in apart)
        held_key = np.concatenate([held_key, apart_place * big + n_p + 1])
        held_usage = np.concatenate([held_usage, apart_usage.reshape(-1, usage.shape[1])])
        np.add.at(load, apart_place, apart_usage)
    srt = np.argsort(held_key, kind="stable")
    held_key = held_key[srt]
    cum = np.zeros((held_key.size + 1, usage.shape[1]), dtype=np.int64)
    np.cumsum(held_usage[srt], axis=0, out=cum[1:])
    rem = problem.capacity - load

    q = np.flatnonzero(prefers)
    query = pj[q] * big + (ranks.place_rank[q] - ranks.place_start[pj[q]])
    lo = np.searchsorted(held_key, query, side="right")
    hi = np.searchsorted(held_key, (pj[q] + 1) * big, side="left")
    fits = _fits(usage, pu[q], rem, pj[q], (cum, lo, hi))
    blocking = np.zeros(n_p, dtype=bool)
    blocking[q[fits]] = True
    lower_count = np.zeros(n_p, dtype=np.int64)
    lower_count[q] = hi - lo
    return _Envy(prefers=prefers, blocking=blocking, lower_count=lower_count)


def blocking_pairs(
    problem: AssignmentProblem,
    place_of_unit: np.ndarray,
    unit_preferences: Preferences = None,
    place_priorities: Preferences = None,
) -> list[tuple[int, int]]:
    """Blocking pairs (unit, place) of any assignment, sorted.

    (u, p) blocks when u prefers p to its current place (or is unplaced and p is an
    acceptable candidate) and p would accept u: for every resource, u's usage is at
    most p's free capacity plus what p's lower-priority units would free if removed.
    Locked units neither propose nor can be removed. Preferences as in
    deferred_acceptance.
    """
    env = _envy(problem, place_of_unit, unit_preferences, place_priorities)
    idx = np.flatnonzero(env.blocking)
    pairs = sorted(zip(problem.pair_unit[idx].tolist(), problem.pair_place[idx].tolist(), strict=True))
    return pairs


def justified_envy(
    problem: AssignmentProblem,
    place_of_unit: np.ndarray,
    unit_preferences: Preferences = None,
    place_priorities: Preferences = None,
) -> int:
    """Number of (u, u') with u' at place p, u preferring p to its own place and p
    ranking u above u' (u' not locked). Capacity plays no role here."""
    env = _envy(problem, place_of_unit, unit_preferences, place_priorities)
    return int(env.lower_count.sum())


def stability_report(
    problem: AssignmentProblem,
    place_of_unit: np.ndarray,
    unit_preferences: Preferences = None,
    place_priorities: Preferences = None,
) -> dict[str, int]:
    """Summary for a round report: blocking pairs, units in one, justified envy.

    A unit at a place that is not its candidate (a hard rule forbids it) counts as placed nowhere
    acceptable: it would rather have any candidate place, and its place ranks it below every other.
    """
    return _stability_counts(problem, _envy(problem, place_of_unit, unit_preferences, place_priorities))


def _stability_counts(problem: AssignmentProblem, env: _Envy) -> dict[str, int]:
    """stability_report's counts from the stability arrays."""
    pu = problem.pair_unit
    envious = pu[env.lower_count > 0]
    return {
        "blocking_pairs": int(env.blocking.sum()),
        "units_in_blocking_pairs": int(np.unique(pu[env.blocking]).size),
        "units_with_justified_envy": int(np.unique(envious).size),
        "justified_envy": int(env.lower_count.sum()),
    }


def assignment_summary(problem: AssignmentProblem, place_of_unit: np.ndarray) -> dict[str, float | int]:
    """What an assignment achieves, in the terms of the round report: households, persons and total
    score placed, places left below their minimum intake, and its stability counts (stability_report)."""
    return _summary(problem, _checked_places(problem, place_of_unit), _ranks(problem, None, None), PairLookup.of(problem))


def _summary(problem: AssignmentProblem, place_of_unit: np.ndarray, ranks: _Ranks, lookup: PairLookup) -> dict[str, float | int]:
    """assignment_summary on default preferences already ranked and pair keys already sorted."""
    placed = np.flatnonzero(place_of_unit >= 0)
    pair = lookup.index(placed * max(problem.n_places, 1) + place_of_unit[placed])
    # A unit at a place that is not its candidate adds no score.
    scores = np.where(pair >= 0, problem.pair_score[np.maximum(pair, 0)], 0.0) if pair.size else np.zeros(0)
    persons = np.zeros(problem.n_places, dtype=np.int64)
    np.add.at(persons, place_of_unit[placed], problem.usage[placed, problem.persons_index])
    below_minimum = int(((persons > 0) & (persons < problem.min_intake)).sum())
    return {
        "households_placed": int(problem.unit_households[placed].sum()),
        "persons_placed": int(persons.sum()),
        "total_score": round(float(scores.sum()), 4),
        "places_below_minimum_intake": below_minimum,
        **_stability_counts(problem, _envy_ranked(problem, place_of_unit, ranks, lookup)),
    }


class StabilityCounter:
    """stability_report with the default, score-based preferences for several assignments of one problem:
    the preferences are ranked and the pair keys sorted once (1.6 s each time at 10,000 households, 2.9 M pairs)."""

    def __init__(self, problem: AssignmentProblem) -> None:
        self.problem = problem
        self.ranks = _ranks(problem, None, None)
        self.lookup = PairLookup.of(problem)

    def counts(self, place_of_unit: np.ndarray, apart: HeldApart | None = None) -> dict[str, int]:
        """stability_report(problem, place_of_unit) with the default preferences.

        apart = (place index, usage row) of households held outside any placement of their unit (an
        assignment of households that splits a link group; that unit's place_of_unit is -1): they take
        room at their places and rank below everyone there (no place may hold part of a group), so a
        claimant may displace them, and each counts once in the justified envy of those who prefer that place.
        """
        place_of = _checked_places(self.problem, place_of_unit)
        return _stability_counts(self.problem, _envy_ranked(self.problem, place_of, self.ranks, self.lookup, apart))


def compare_with_deferred_acceptance(
    problem: AssignmentProblem, place_of_unit: np.ndarray, counter: StabilityCounter | None = None
) -> dict[str, dict[str, float | int]]:
    """The optimiser's assignment beside household-proposing deferred acceptance on the same round
    (default, score-based preferences and priorities), both summarised by assignment_summary.

    For the report: DA is the textbook stable mechanism; the optimiser places more persons and score
    but may leave blocking pairs. Showing both lets that trade-off be discussed openly (docs/mechanisms.md).
    The preferences are ranked and the pair keys sorted once for all three (a national round: 14.5 M pairs);
    counter, a StabilityCounter of the same problem, shares that with a further assignment (the fixed key).
    """
    place_of = _checked_places(problem, place_of_unit)
    counter = counter or StabilityCounter(problem)
    ranks, lookup = counter.ranks, counter.lookup
    return {
        "optimiser": _summary(problem, place_of, ranks, lookup),
        "deferred_acceptance": _summary(problem, _deferred_acceptance(problem, ranks), ranks, lookup),
    }
