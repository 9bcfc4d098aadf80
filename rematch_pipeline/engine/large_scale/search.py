"""The answer step: greedy pass and local moves (the core LP beside them), the large neighbourhood
search, the insertion of units still unplaced and the exchange within usage classes; meanwhile the
other core refines the bound."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from rematch_pipeline.engine.exchange import exchange_within_classes
from rematch_pipeline.engine.large_scale.clock import _Clock
from rematch_pipeline.engine.large_scale.local_moves import _greedy_and_local_moves
from rematch_pipeline.engine.large_scale.neighbourhoods import (
    NEIGHBOURHOOD_UNITS,
    _Neighbourhoods,
    _PendingCore,
    _core_lp,
    _core_pairs,
    _reoptimise,
    _subproblem,
)
from rematch_pipeline.engine.large_scale.pairs import _load, _persons, _positions, _segments, _short
from rematch_pipeline.engine.large_scale.pricing import (
    FINAL_LBFGS_ITERATIONS,
    FINAL_PRICING_ROUNDS,
    PERSON_WEIGHT,
    SCORE_TEMPERATURES,
    _Lagrangian,
    _Priced,
    _price,
    _summed_start,
    _value,
)
from rematch_pipeline.engine.problem import SolverParams

LOG = logging.getLogger(__name__)

# On a tight round the pricing beside the search keeps these shares of the way from the persons the
# local moves reached to the persons bound, in turn: the answer's persons lie between (3,000 households
# at 60 % capacity: 60 % of the way, 4,173 of 4,118-4,210; 10,000 households: 26 %), and prices converged
# for persons near them bound the score there closely (at 3,000: for 4,164 they prove 140,355 for the
# 4,173 placed, for 4,187 140,318, for 4,118 141,108; converged for 4,173 itself, 140,288; twenty-sixth
# session). At 10,000 households the first share alone takes the time beside the search.
LADDER: tuple[float, ...] = (0.375, 0.75, 0.125, 0.5, 0.25, 0.625, 0.875)
# A MIP runs only with this much time left, and uses this share of it.
MIP_MIN_SECONDS: float = 2.0
MIP_TIME_SHARE: float = 0.7
# Weight of the score when ordering pairs of equal reduced profit (scores <= 100 per
# household, so this never outweighs a real difference of 1e-3).
TIE_BY_SCORE: float = 1e-6
# Seconds per neighbourhood MIP at most, and at most this share of the round's limit: in short
# limits a MIP near its answer stops for the next (1,000 x 40 at 20 s: 2 s a MIP gave 70,354
# against 70,243 with 8 s; 1,000 x 401 at 30 s: 2,380 persons against 2,375).
MIP_SECONDS: float = 8.0
MIP_LIMIT_SHARE: float = 0.1
# Share of the time left for the exchange that inserting the units still unplaced may take.
INSERT_SHARE: float = 0.5
# The search stops after this many neighbourhoods in a row without a gain: the time
# left refines the bound instead.
STALLED_NEIGHBOURHOODS: int = 25
# The core LP may take at most this share of the answer step's time (it runs beside the local moves).
CORE_LP_SHARE: float = 0.4


def _place(
    lag: _Lagrangian,
    priced: _Priced,
    params: SolverParams,
    deadline: float,
    *,
    room: bool,
    exact: bool = True,
    beside: Callable[[_Progress], list[tuple[float, _Priced]]] | None = None,
    exchange_deadline: float | None = None,
) -> tuple[np.ndarray, list[tuple[float, _Priced]]]:
    """An assignment from the prices: a greedy pass puts each unit on its best pair by
    reduced profit that still fits; with exact, local moves follow (the LP over the core
    is solved beside them), on a round short of room in total the exchange within usage
    classes, and then a large neighbourhood search with an exact MIP, until the deadline,
    and the exchange within usage classes until exchange_deadline (default: the deadline).
    beside (pricing for the bound, given the search's progress) runs on the other core
    during the search; its outcome is returned with the assignment."""
    problem, pairs, clock = lag.problem, lag.pairs, lag.clock
    n_u = problem.n_units
    rp = priced.reduced_profit
    clock.spend(clock.rates.pair_pass * 8 * pairs.size)  # the sort below and the per-unit arrays
    starts, units = _segments(pairs.unit)
    counts = np.diff(np.r_[starts, pairs.size])
    order = np.lexsort((np.arange(pairs.size), -rp, pairs.unit))  # per unit: best first
    first = order[starts] if starts.size else np.zeros(0, dtype=np.int64)
    second_rp = np.where(counts > 1, rp[order[np.minimum(starts + 1, pairs.size - 1)]], -np.inf)
    best_rp = rp[first]
    margin = np.where(best_rp > 0, best_rp - np.maximum(second_rp, 0.0), -best_rp)
    unit_margin = np.zeros(n_u)
    unit_margin[units] = margin
    unit_best = np.full(n_u, -np.inf)
    unit_best[units] = best_rp

    locked = np.zeros(n_u, dtype=bool)
    locked[[u for u, _ in problem.locked]] = True
    # Ties in reduced profit (the persons stage has many) go to the better score.
    rp = rp + TIE_BY_SCORE * pairs.score
    # The core LP runs beside the greedy pass, the local moves and the first MIPs, on the
    # other core (HiGHS releases the GIL); the neighbourhood search takes it up when ready.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        if exact:
            core = _core_pairs(lag, rp)
            # Reproducible: an iteration limit, the wall clock left only as a safety.
            lp_seconds = CORE_LP_SHARE * max(0.0, deadline - clock.now())
            lp_args = (clock.wall_left(), lp_seconds) if clock.reproducible else (lp_seconds,)
            least = clock.rates.core_lp_seconds(core.size, 0)
            pending = _PendingCore(pool.submit(_core_lp, lag, core, *lp_args), clock.work, least, lp_seconds)
        current = _greedy_and_local_moves(problem, pairs, rp, lag.cost, unit_best, unit_margin, locked, clock, deadline, exact, room)
        value = (_persons(problem, pairs, current), _value(lag, current))
        LOG.debug("placing: %d persons, %.4f after the local moves", *value)
        if pending is None:
            return current, []
        if not room and problem.pair_usage is None:
            # Short of room in total the exchange within usage classes also runs once here, before the MIPs:
            # at 10,000 households it placed 107-660 persons more in ~1 s, where the MIPs placed 48-395 in
            # ~40 s; the MIPs then start from its persons (3-66 persons more in the end on five tight rounds;
            # docs/decisions.md, twenty-sixth session). Rounds with room in total keep the order measured there.
            current, value = _better(lag, current, value, _exchange(lag, current, locked, deadline))
            LOG.debug("placing: %d persons, %.4f after the exchange", *value)
        # Large neighbourhood search: an exact MIP re-decides a few hundred units at a time
        # (those the core LP places elsewhere, those competing for the same places or the
        # same scarce resource) on the capacity the others leave. Its MIPs hold one core
        # (SCIP releases the GIL while it solves): beside runs on the other after the LP,
        # unless the round is one neighbourhood (one short MIP; and its bound stays
        # reproducible). Its clock is forked here, not in its thread: a reproducible
        # count must not depend on when that thread starts.
        progress = _Progress(value[0])
        # Reproducible runs hand the pricing beside the persons reached so far, frozen: what it prices must
        # not hang on how far the search has got when it reads them (it reads them only when not given a
        # fixed number of persons). It still learns when the search is done.
        seen = _Progress(value[0]) if clock.reproducible else progress
        priced_beside = None
        if beside is not None and n_u > NEIGHBOURHOOD_UNITS:
            priced_beside = pool.submit(beside, seen, clock.fork() if clock.reproducible else clock, pending)
        best_place = np.full(n_u, -1, dtype=np.int64)
        best_place[units] = pairs.place[first]
        clock.spend(clock.rates.pair_pass * 10 * pairs.size)
        hood = _Neighbourhoods(problem, pairs, rp, unit_best, best_place, locked, clock)
        try:
            current = _search(lag, rp, hood, pending, current, value, params, deadline, progress, deadline if exchange_deadline is None else exchange_deadline)
        finally:
            progress.done = seen.done = True
        return current, priced_beside.result() if priced_beside is not None else []


@dataclass
class _Progress:
    """The persons of the search's current answer, and whether it has ended (written by
    the search, read beside it)."""

    persons: float
    done: bool = False


def _price_beside(
    lag: _Lagrangian,
    priced: _Priced,
    deadline: float,
    fixed_persons: float | None,
    progress: _Progress,
    clock: _Clock,
    after: _PendingCore | None = None,
    toward: float | None = None,
) -> list[tuple[float, _Priced]]:
    """Pricing for the bound while the search runs: restarts at the last temperature from
    priced's multipliers, each keeping the persons the search has reached when it starts
    (the search only adds persons); after a restart without gain it waits for more persons.
    It ends with the search. Returns (persons kept, prices) per restart. clock counts its
    work; it starts once the core LP (after) is done.

    Reproducible (the clock counts work): nothing may depend on the search's timing, so
    every restart keeps fixed_persons, the pricing counts its own work on a clock forked
    by the caller and stops once converged or at the deadline, and the search's end is
    waited for by the caller instead.

    toward (a tight round: the persons bound, out of reach): each number of persons starts from the
    summed-capacity LP's prices for it (_summed_start) where that LP applies; reproducible, the
    pricing then keeps, in turn until converged, each of LADDER's persons between those reached
    and toward, instead of fixed_persons (the persons finally placed lie there, unknown yet)."""
    out: list[tuple[float, _Priced]] = []
    # Priced for fewer persons than priced kept, the first restart's bound is higher: not a sign of convergence.
    v, working, last = priced.v, priced.working, priced.bound if fixed_persons is not None else math.inf
    lag = copy.copy(lag)
    lag.clock = clock
    reproducible = lag.clock.reproducible
    if after is not None and reproducible:
        lag.clock.work = max(lag.clock.work, after.done_at())
    ladder = _ladder(progress.persons, toward) if toward is not None and reproducible else []
    priced_for = None
    for _ in range(FINAL_PRICING_ROUNDS * max(1, len(ladder))):
        if lag.clock.now() >= deadline or (progress.done and not reproducible):
            break
        if ladder:
            persons = ladder[0]
        else:
            persons = fixed_persons if reproducible and fixed_persons is not None else progress.persons
        fresh = _summed_start(lag, lag.clock, persons) if toward is not None and persons != priced_for else None
        if fresh is not None:  # a new start: its first restart is no sign of convergence
            v, last = fresh, math.inf
        priced_for = persons
        step = _price(lag.keeping(persons), working, deadline, SCORE_TEMPERATURES[-1:], v, FINAL_LBFGS_ITERATIONS, False)
        out.append((persons, step))
        v, working = step.v, step.working
        if step.bound > last - 1e-7 * abs(last):  # converged for these persons
            if ladder:
                LOG.debug(
                    "pricing beside the search: converged for %d persons, bound %.4f, keeping multiplier %.4f",
                    persons, step.bound, step.dual.keep,
                )
                ladder.pop(0)
                if ladder:
                    continue
            if reproducible:
                break
            while progress.persons == persons and not progress.done and lag.clock.now() < deadline:
                time.sleep(0.2)
        last = step.bound
    return out


def _ladder(reached: float, toward: float) -> list[float]:
    """The persons a tight round's pricing beside the search keeps, in turn: LADDER's shares of the
    way from those reached to toward, whole and distinct, in LADDER's order."""
    if toward <= reached:
        return []
    return list(dict.fromkeys(float(round(reached + f * (toward - reached))) for f in LADDER))


def _search(
    lag: _Lagrangian,
    rp: np.ndarray,
    hood: _Neighbourhoods,
    pending: _PendingCore | None,
    current: np.ndarray,
    value: tuple[float, float],
    params: SolverParams,
    deadline: float,
    progress: _Progress,
    exchange_deadline: float,
) -> np.ndarray:
    """Neighbourhood MIPs from the current assignment (of the given value), each kept when
    it is lexicographically better, until the deadline or STALLED_NEIGHBOURHOODS in a row
    without a gain. Once the core LP (pending) is ready, its pairs come first in the MIPs
    (then the best by rp) and its placements seed sets; the search waits for it rather
    than stop before. The persons of each answer kept go to progress. Then the exchange
    within usage classes, until exchange_deadline."""
    problem, pairs, clock = lag.problem, lag.pairs, lag.clock
    stalled = 0
    while deadline - clock.now() >= MIP_MIN_SECONDS:
        # A round of one neighbourhood waits for the LP: its one MIP should have the LP's pairs.
        if pending is not None and (pending.ready(clock) or problem.n_units <= NEIGHBOURHOOD_UNITS):
            hood.use_core(pending.wait(clock))
            pending = None
        free = hood.next(current) if stalled < STALLED_NEIGHBOURHOODS else None
        if free is None and pending is not None:  # nothing left to try without the LP
            hood.use_core(pending.wait(clock))
            pending, stalled = None, 0
            continue
        if free is None:
            break
        clock.spend(clock.rates.pair_pass * 0.25 * pairs.size)  # choosing the set and its pairs
        fixed = np.where(free, -1, current)
        first_pairs = None if hood.core is None else hood.core.support
        sub, sub_units = _subproblem(problem, pairs, rp, free, _load(problem, pairs, fixed), current, first_pairs)
        seconds = min(MIP_SECONDS, MIP_LIMIT_SHARE * params.time_limit_seconds, MIP_TIME_SHARE * (deadline - clock.now()))
        status, place_of = _reoptimise(sub, params, current[sub_units], seconds, clock)
        mip = fixed.copy()
        mip[sub_units] = place_of
        mip_value = (_persons(problem, pairs, mip), _value(lag, mip))
        # Lexicographic comparison: persons first, then the stage's objective.
        better = not _short(problem, pairs, mip).any() and mip_value > value
        LOG.debug("neighbourhood of %d units (%s): %d persons, %.4f%s", sub_units.size, status, *mip_value, "" if better else " (not better)")
        stalled = 0 if better else stalled + 1
        if hood.solved(status == "optimal", better):
            stalled = 0
        if better:
            if mip_value[0] > value[0]:
                hood.placed_more(mip, current)
            current, value = mip, mip_value
            progress.persons = value[0]
    current, value = _better(lag, current, value, _insert_unplaced(lag, current, hood.locked, clock.until(INSERT_SHARE, exchange_deadline)))
    # The exchange within usage classes comes last, in the time kept back for the bound: run
    # earlier, or with time kept from the search, it cost the search more than it gained on rounds
    # with room in total (docs/decisions.md; short of room it also runs before the search, _place).
    if problem.pair_usage is None:  # usage depends on the place: no classes of equals
        current, value = _better(lag, current, value, _exchange(lag, current, hood.locked, exchange_deadline))
    progress.persons = value[0]
    return current


def _better(
    lag: _Lagrangian, current: np.ndarray, value: tuple[float, float], candidate: np.ndarray
) -> tuple[np.ndarray, tuple[float, float]]:
    """The candidate assignment and its (persons, objective) where it is lexicographically better than
    current (of value), else current and value."""
    candidate_value = (_persons(lag.problem, lag.pairs, candidate), _value(lag, candidate))
    return (candidate, candidate_value) if candidate_value > value else (current, value)


def _insert_unplaced(
    lag: _Lagrangian, current: np.ndarray, locked: np.ndarray, deadline: float, after_cut: bool = False
) -> np.ndarray:
    """Each unplaced unit (most persons first) onto the best of ALL its usable pairs: where
    it fits, or where one unit there moves to any usable pair of its own with room, or
    leaves when it brings fewer persons. Kept when it places more persons, or as many with
    a higher objective. The local moves look at a unit's first IMPROVE_TRIES candidates
    and the neighbourhood MIPs at MIP_PAIRS per unit, so a unit whose room needs a unit
    moved far down its own list stays out (10,000 round, seed 1: a unit of 4 persons with
    one usable place, where a unit needing the same kita and course places had room only
    at its 119th pair).

    after_cut: the wall clock has stopped the search (its prices may be far from settled, and
    the greedy pass on them left many units out: 13,443 persons where an uncut run placed
    15,943, engine_scale's 10,000-household round with a 30 s wall limit). Then only where a
    unit fits, no unit moved, and whatever the clock: one pass over those units' pairs (0.3 s
    there, 14,196 persons)."""
    problem, pairs, clock = lag.problem, lag.pairs, lag.clock
    pi, cost, rate = problem.persons_index, lag.cost, clock.rates.candidate
    seg = np.searchsorted(pairs.unit, np.arange(problem.n_units + 1))
    todo = np.flatnonzero((current < 0) & ~locked & (seg[1:] > seg[:-1]))
    if todo.size == 0:
        return current
    current = current.copy()
    left = problem.capacity - _load(problem, pairs, current)
    chosen = np.full(problem.n_units, -1, dtype=np.int64)  # pair position per placed unit
    pos = _positions(problem, pairs, current)
    chosen[pairs.unit[pos]] = pos
    # The units at each place, kept as units move: scanning `current` per place tried cost a full pass
    # over the round, and a tight round has many units out, each trying hundreds of places.
    placed = np.flatnonzero(current >= 0)
    at_place: list[set[int]] = [set() for _ in range(problem.n_places)]
    for v, j in zip(placed.tolist(), current[placed].tolist(), strict=True):
        at_place[j].add(v)

    def intake_ok(j: np.ndarray | int, delta: np.ndarray | int) -> np.ndarray:
        after = problem.capacity[j, pi] - left[j, pi] + delta
        return (after == 0) | (after >= problem.min_intake[j])

    todo = todo[np.lexsort((todo, -problem.usage[todo, pi]))]
    for u in todo.tolist():
        if not after_cut and clock.now() >= deadline:
            break
        lo, hi = int(seg[u]), int(seg[u + 1])
        places, need = pairs.place[lo:hi], problem.usage_of_pairs(pairs.idx[lo:hi])
        clock.spend(rate * (hi - lo))
        fits = (need <= left[places]).all(axis=1) & intake_ok(places, need[:, pi])
        best: tuple[tuple[float, float], int, int, int] | None = None  # (gain, pair, victim, victim's pair or -1)
        if fits.any():
            i = int(np.flatnonzero(fits)[np.argmax(cost[lo:hi][fits])])
            best = ((float(need[i, pi]), float(cost[lo + i])), lo + i, -1, -1)
        for i in np.flatnonzero(~fits).tolist() if not after_cut else []:
            j, pu = int(places[i]), float(need[i, pi])
            victims = np.array(sorted(at_place[j]), dtype=np.int64)
            victims = victims[~locked[victims]]
            clock.spend(rate * (1 + victims.size))
            if victims.size == 0:
                continue
            freed = problem.usage_of_pairs(pairs.idx[chosen[victims]])
            room = (need[i] <= left[j] + freed).all(axis=1) & intake_ok(j, pu - freed[:, pi])
            for v, pv, kv in zip(victims[room].tolist(), freed[room, pi].tolist(), chosen[victims[room]].tolist(), strict=True):
                base = float(cost[lo + i]) - float(cost[kv])
                option = ((pu - pv, base), -1)  # v leaves the round
                vlo, vhi = int(seg[v]), int(seg[v + 1])
                clock.spend(rate * (vhi - vlo))
                vplaces = pairs.place[vlo:vhi]
                vneed = problem.usage_of_pairs(pairs.idx[vlo:vhi])
                vfits = (vplaces != j) & (vneed <= left[vplaces]).all(axis=1) & intake_ok(vplaces, vneed[:, pi])
                if vfits.any():
                    k = int(np.flatnonzero(vfits)[np.argmax(cost[vlo:vhi][vfits])])
                    option = ((pu, base + float(cost[vlo + k])), vlo + k)
                if option[0] > (0.0, 1e-9) and (best is None or option[0] > best[0]):
                    best = (option[0], lo + i, v, option[1])
        if best is None:
            continue
        _, k, v, kv = best
        if v >= 0:
            left[pairs.place[chosen[v]]] += problem.usage_of_pairs(pairs.idx[[chosen[v]]])[0]
            at_place[int(current[v])].discard(v)
            current[v], chosen[v] = -1, -1
            if kv >= 0:
                left[pairs.place[kv]] -= problem.usage_of_pairs(pairs.idx[[kv]])[0]
                current[v], chosen[v] = pairs.place[kv], kv
                at_place[int(current[v])].add(v)
        left[pairs.place[k]] -= problem.usage_of_pairs(pairs.idx[[k]])[0]
        current[u], chosen[u] = pairs.place[k], k
        at_place[int(current[u])].add(u)
    LOG.debug("insertion of unplaced units: %d of %d placed", int((current[todo] >= 0).sum()), todo.size)
    return current


def _exchange(lag: _Lagrangian, current: np.ndarray, locked: np.ndarray, deadline: float) -> np.ndarray:
    """The exact exchange within usage classes (exchange.py), its work counted, within the time to deadline."""
    problem, pairs, clock = lag.problem, lag.pairs, lag.clock
    rates = clock.rates

    def seconds(entries: float, solved: float) -> float:
        return rates.exchange_entry * entries + rates.exchange_solve * solved

    done = exchange_within_classes(
        problem.usage, problem.capacity, problem.min_intake, problem.persons_index,
        pairs.keys, lag.cost, current, locked, PERSON_WEIGHT, seconds, max(0.0, deadline - clock.now()),
    )
    clock.spend(seconds(done.entries, done.solved))
    LOG.debug("exchange within usage classes: %d units moved, %+.4f", done.moved, done.gain)
    return done.place_of
