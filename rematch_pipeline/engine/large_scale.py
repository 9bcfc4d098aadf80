"""Large rounds: Lagrangian prices over all pairs, and an exact MIP where the prices leave a choice.

A national round has 10,000-50,000 units x 401 places, i.e. millions of candidate pairs.
Neither one MIP nor the simplex LP over them finishes in minutes on two cores (measured:
HiGHS, GLOP and CLP take 20-35 s for the LP of a 1,000-household round alone); the LP
over a core of a few pairs per unit does. The model
has few coupling rows, though: capacities per place and resource (and minimum intakes),
while each unit picks at most one place. Per lexicographic stage (persons, then score
keeping the persons found) we therefore

1. price the coupling rows: minimise the entropy-smoothed Lagrangian dual with L-BFGS-B
   over a working set of pairs, with falling temperature; pairs outside the set that
   price in are added (column generation on the dual side);
2. bound: the exact Lagrangian dual over ALL pairs at those prices. It is an upper bound
   for any multipliers >= 0, and at the optimum equals the LP bound (each unit's
   subproblem, one place or none, is integral);
3. place: a greedy pass puts every unit on its best pair at the prices that still fits;
   local moves (moving, or pushing out, up to a few units of the place a unit wants)
   follow, while HiGHS solves the LP over the core (each unit's pairs near its best) in a
   worker thread; then (taking the LP up when it is ready) a large neighbourhood search:
   an exact MIP re-decides a few hundred units at a time (those the LP places otherwise,
   the worst-placed units and the units at the places they want, or all users of a
   scarce resource) on the capacity the others leave, keeping lexicographic gains;
   units still unplaced then try all their usable pairs, and an exact exchange within
   usage classes ends it.
   Meanwhile the other core refines the bound for the persons the search has reached (on a
   round short of room in total, for fixed persons between those and the persons bound, from
   the summed-capacity LP's prices); the time the search leaves refines it for the persons placed.

The gap is reported against the bound of step 2, i.e. against the whole problem. Every
budget (stage deadlines, local moves, MIPs, the search's end) is read on a _Clock: counted
work by default, so a repeat gives the same answer on a loaded or faster machine.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.optimize import linprog, minimize
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from rematch_pipeline.engine.assignment import (
    AssignmentProblem,
    AssignmentResult,
    SolverParams,
    StageReport,
    _build_model,
    _empty_result,
    _gap,
    _hint,
    _place_of,
    _reduce,
    _set_objective,
    _solve_stage,
    check_assignment,
    most_units_placed,
)
from rematch_pipeline.engine._common import PAIR_CHUNK_SIZE, chunk_bounds
from rematch_pipeline.engine.exchange import ENTRY_SECONDS, SOLVE_SECONDS, exchange_within_classes
from rematch_pipeline.engine.lp import solve_lp

LOG = logging.getLogger(__name__)

# Working set per unit at the start: its best pairs by score and, for the persons
# stage, at the places with most capacity to spare.
INITIAL_BY_SCORE: int = 12
INITIAL_BY_SLACK: int = 6
# Pairs that price in per unit and round.
ADD_PER_UNIT: int = 3
# Temperatures of the smoothed dual, in score points (a household's score is 0..100).
PERSONS_TEMPERATURES: tuple[float, ...] = (5.0, 1.0, 0.2)
SCORE_TEMPERATURES: tuple[float, ...] = (0.2, 0.05)
LBFGS_ITERATIONS: int = 150
WORKING_SET_ROUNDS: int = 3
# Stage 1 maximises PERSON_WEIGHT * persons + score: persons first in practice (a person
# outweighs ten households' best scores), and its prices start stage 2.
PERSON_WEIGHT: float = 1000.0
# Pairs per unit tried by the greedy pass and handed to the MIP.
GREEDY_PAIRS: int = 30
MIP_PAIRS: int = 8
# Time shares: pricing of stage 1 (of the whole limit) and of stage 2 (of what is left).
PERSONS_PRICING_SHARE: float = 0.08
SCORE_PRICING_SHARE: float = 0.3
# Pricing that keeps the persons bound (stage 2b), as a share of the time left.
TARGET_PRICING_SHARE: float = 0.12
# Pricing for the bound beside the neighbourhood search (on the other core, for the
# persons the search has reached), then for the persons placed in a share of the limit
# kept back from the answer step (plus what the search leaves). Both restart at the last
# temperature up to FINAL_PRICING_ROUNDS times, with longer L-BFGS runs: the working
# set has settled by then, and fewer restarts converge faster (measured at 10,000
# households: 10 s took the bound 0.042 % down with 500 iterations a run, 0.034 % with 150).
FINAL_PRICING_SHARE: float = 0.04
FINAL_PRICING_ROUNDS: int = 20
FINAL_LBFGS_ITERATIONS: int = 500
# On a tight round the pricing beside the search keeps these shares of the way from the persons the
# local moves reached to the persons bound, in turn: the answer's persons lie between (3,000 households
# at 60 % capacity: 60 % of the way, 4,173 of 4,118-4,210; 10,000 households: 26 %), and prices converged
# for persons near them bound the score there closely (at 3,000: for 4,164 they prove 140,355 for the
# 4,173 placed, for 4,187 140,318, for 4,118 141,108; converged for 4,173 itself, 140,288; twenty-sixth
# session). At 10,000 households the first share alone takes the time beside the search.
LADDER: tuple[float, ...] = (0.375, 0.75, 0.125, 0.5, 0.25, 0.625, 0.875)
FINISH_SHARE: float = 0.97
# A MIP runs only with this much time left, and uses this share of it.
MIP_MIN_SECONDS: float = 2.0
MIP_TIME_SHARE: float = 0.7
# Local-move passes after the greedy one, and candidate places tried per unit there.
IMPROVE_PASSES: int = 6
IMPROVE_TRIES: int = 10
# Units a move may push out of a place to make room for another.
MOST_EJECTED: int = 4
# Share of the time left that the local moves may use (the MIP gets the rest).
IMPROVE_SHARE: float = 0.12
# Weight of the score when ordering pairs of equal reduced profit (scores <= 100 per
# household, so this never outweighs a real difference of 1e-3).
TIE_BY_SCORE: float = 1e-6
# Large neighbourhood search: units per MIP (about), the best places per seed unit whose
# units join it, units taken per such place, and seconds per MIP at most.
NEIGHBOURHOOD_UNITS: int = 600
NEIGHBOURHOOD_PLACES: int = 3
PLACE_UNITS: int = 60
MIP_SECONDS: float = 8.0
# ... and at most this share of the round's limit: in short limits a MIP near its answer
# stops for the next (1,000 x 40 at 20 s: 2 s a MIP gave 70,354 against 70,243 with 8 s;
# 1,000 x 401 at 30 s: 2,380 persons against 2,375).
MIP_LIMIT_SHARE: float = 0.1
# Share of the time left for the exchange that inserting the units still unplaced may take.
INSERT_SHARE: float = 0.5
# The search stops after this many neighbourhoods in a row without a gain: the time
# left refines the bound instead.
STALLED_NEIGHBOURHOODS: int = 25
# After this many sets in a row proven optimal at the current answer, the sets double in size (up to
# MOST_NEIGHBOURHOOD_UNITS) and every seed may seed again: the answer is locally optimal for sets of
# this size, and only larger ones can still improve it.
GROW_AFTER: int = 8
MOST_NEIGHBOURHOOD_UNITS: int = 2400
# The LP over the core: pairs within this many points of their unit's best reduced
# profit, at most this share of the answer step's time (it runs beside the local moves).
CORE_MARGIN: float = 0.5
CORE_LP_SHARE: float = 0.4
# Added to the reduced profit of the LP's pairs: they come first wherever pairs are ranked.
CORE_FIRST: float = 1e6
# Reproducible runs (SolverParams.reproducible): the search stops at this share of the
# limit in counted work, leaving the wall clock room for load and uncounted steps; a
# neighbourhood MIP stops after MIP_NODES branch-and-bound nodes (its root does most of
# the work: measured at 10,000 households, 8 s runs found what root-only runs found).
REPRODUCIBLE_SHARE: float = 0.88
MIP_NODES: int = 1
# The large path's solver label: its MIPs run on SCIP whatever the round's backend (_reoptimise).
SOLVER_LABEL: str = "ortools-scip+lagrangian"


@dataclass(frozen=True)
class _Rates:
    """Seconds per unit of counted work on the reference machine (2 cores, measured
    2026-12-01 on the 10,000-household round): per usable pair of a plain pass, of an
    exact dual (bound) evaluation, of a smoothed-dual evaluation on a working set and of
    gathering a working set; per unit the greedy pass or a local move looks at; per
    candidate a local move tries, times the units at its place (moving several units
    out costs more); of a neighbourhood MIP by its simplex iterations, binaries and rows
    (mip_seconds); per simplex iteration and per pair of the core LP."""

    pair_pass: float = 40e-9
    bound_pair: float = 150e-9
    dual_pair: float = 21e-9
    working_pair: float = 300e-9
    unit: float = 2e-6
    candidate: float = 3.6e-6
    victim_candidate: float = 7.5e-6
    # A neighbourhood MIP: mip_scale * (iterations + 1) ** 1.163 * binaries ** -0.391 * rows ** 0.155,
    # a log-linear fit to 98 MIPs of four rounds (1,000 x 40 and 1,000 / 10,000 / 50,000 x 401;
    # whole rounds 0.83-1.14x their wall time before the 20 % margin in mip_scale, which keeps
    # the 10,000 round 2-3 s further from its wall limit than 10 % did). The old linear charge
    # (0.15 ms per iteration + 60 us per binary) was 1.01-1.77x: it stopped the 50,000 round's
    # search at 203 s of wall clock with 250 s counted.
    mip_scale: float = 1.2 * math.exp(-8.593)
    # The exchange within usage classes (exchange.py's reference rates).
    exchange_entry: float = ENTRY_SECONDS
    exchange_solve: float = SOLVE_SECONDS
    mip_exponents: ClassVar[tuple[float, float, float]] = (1.163, -0.391, 0.155)
    lp_iteration: float = 0.18e-3
    lp_pair: float = 20e-6
    # A core LP's whole solve by its size, 7.2 s * (pairs / 18,700) ** 1.18 (measured 7.2 s at
    # 18,700 pairs and 49.7 s at 96,500): its iteration count alone undercounts large LPs.
    lp_seconds_at_reference: float = 7.2

    def mip_seconds(self, iterations: int, binaries: int, rows: int) -> float:
        """Counted seconds of a neighbourhood MIP (building it, its root node and heuristics)."""
        a, b, c = self.mip_exponents
        return self.mip_scale * (iterations + 1) ** a * max(binaries, 1) ** b * max(rows, 1) ** c

    def core_lp_seconds(self, lp_pairs: int, iterations: int) -> float:
        """Counted seconds of a core LP of lp_pairs pairs that took iterations simplex iterations."""
        by_size = self.lp_seconds_at_reference * (lp_pairs / REFERENCE_LP_PAIRS) ** 1.18
        return max(by_size, self.lp_pair * lp_pairs + self.lp_iteration * iterations)

    def for_round(self, n_pairs: int) -> _Rates:
        """The rates for a round of n_pairs usable pairs: passes over arrays beyond the
        reference round's size run slower per pair (memory, not cache; measured at 50,000
        households, 14.5 M pairs: 1.4-1.7x per phase)."""
        f = max(1.0, (n_pairs / REFERENCE_PAIRS) ** 0.3)
        memory_bound = ("pair_pass", "bound_pair", "dual_pair", "working_pair", "unit", "candidate", "victim_candidate", "exchange_entry")
        return dataclasses.replace(self, **{name: getattr(self, name) * f for name in memory_bound})


RATES = _Rates()
# Usable pairs of the round the rates were measured at (10,000 households), and of its core LP.
REFERENCE_PAIRS: int = 2_856_316
REFERENCE_LP_PAIRS: int = 18_700


@dataclass
class _Clock:
    """Budgets of one large solve, in seconds from its start. Reproducible: counted work
    at rates, so the same input and parameters give the same answer whatever the
    machine's speed and load; the wall clock then only stops a run that reaches
    wall_limit (overrun: that answer may differ between runs; cut: the wall clock stopped
    work on this clock itself, not only on a fork beside it). Otherwise wall-clock."""

    reproducible: bool
    wall_limit: float
    rates: _Rates = RATES
    start: float = field(default_factory=time.perf_counter)
    work: float = 0.0
    overrun: bool = False
    cut: bool = False
    parent: _Clock | None = None

    def now(self) -> float:
        wall = self.wall()
        if not self.reproducible:
            return wall
        if wall >= self.wall_limit:
            self.overrun = self.cut = True
            if self.parent is not None:
                self.parent.overrun = True
            return math.inf
        return self.work

    def until(self, share: float, deadline: float) -> float:
        """The clock time share of the way from now to deadline (after an overrun, now: inf)."""
        now = self.now()
        return now + share * max(0.0, deadline - now) if math.isfinite(now) else now

    def fork(self) -> _Clock:
        """A clock for work beside this one (another thread), counting on from here."""
        return dataclasses.replace(self, parent=self, cut=False)

    def spend(self, seconds: float) -> None:
        self.work += seconds

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def wall_left(self) -> float:
        return max(0.0, self.wall_limit - self.wall())


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


@dataclass
class _Dual:
    """Multipliers (>= 0) of the relaxed rows: capacity per place and resource (for a
    place with a minimum intake, its persons row reads persons - cap * y <= 0), the
    minimum-intake rows min * y - persons <= 0, and the persons-keeping row."""

    capacity: np.ndarray  # [n_places, n_resources]
    minimum: np.ndarray  # [n_places], nonzero only at places with a minimum
    keep: float


class _Lagrangian:
    """The Lagrangian dual of one stage: max cost.x s.t. coupling rows, relaxed."""

    def __init__(
        self, problem: AssignmentProblem, pairs: _Pairs, cost: np.ndarray, keep_persons: float | None, clock: _Clock
    ) -> None:
        self.problem, self.pairs, self.cost, self.keep_persons, self.clock = problem, pairs, cost, keep_persons, clock
        self.n_j, self.n_r = problem.n_places, len(problem.resources)
        self.mins = np.flatnonzero(problem.min_intake > 0)
        pi = problem.persons_index
        self.rhs = problem.capacity.astype(np.float64).copy()
        self.rhs[self.mins, pi] = 0.0
        self.n_vars = self.n_j * self.n_r + self.mins.size + (keep_persons is not None)
        # Locked units take their locked pair: they are left out of the pricing
        # (their usage is a fixed load on the right-hand side).
        self.locked_units = np.array(sorted(u for u, _ in problem.locked), dtype=np.int64)
        self.locked_cost, self.locked_persons = 0.0, 0.0
        self.locked_load = np.zeros((self.n_j, self.n_r))
        if problem.locked:
            pos = np.searchsorted(pairs.keys, problem.locked_keys())
            self.locked_cost = float(cost[pos].sum())
            self.locked_persons = float(pairs.persons[pos].sum())
            for r in range(self.n_r):
                np.add.at(self.locked_load[:, r], pairs.place[pos], pairs.usage(problem, r, pos))
        self.free_pair = ~np.isin(pairs.unit, self.locked_units)

    def keeping(self, persons: float) -> _Lagrangian:
        """The same dual with its persons-keeping row at persons (the row must exist, so
        the multipliers keep their layout); nothing over the pairs is recomputed."""
        if self.keep_persons is None:
            raise ValueError("this dual has no persons-keeping row")
        other = copy.copy(self)
        other.keep_persons = persons
        return other

    def unpack(self, v: np.ndarray) -> _Dual:
        k = self.n_j * self.n_r
        minimum = np.zeros(self.n_j)
        minimum[self.mins] = v[k : k + self.mins.size]
        keep = float(v[-1]) if self.keep_persons is not None else 0.0
        return _Dual(v[:k].reshape(self.n_j, self.n_r), minimum, keep)

    def reduced_profit(self, dual: _Dual, positions: np.ndarray | None = None) -> np.ndarray:
        """cost - priced usage of pairs (all, or the given positions)."""
        p = self.pairs
        sel = slice(None) if positions is None else positions
        place = p.place[sel]
        persons = p.persons[sel]
        rp = self.cost[sel] + (dual.keep + dual.minimum[place]) * persons
        for r in range(self.n_r):
            price = dual.capacity[:, r]
            if price.any():
                rp -= price[place] * p.usage(self.problem, r, None if positions is None else positions)
        return rp

    def _constant(self, dual: _Dual) -> float:
        rhs = self.rhs - self.locked_load
        value = float((dual.capacity * rhs).sum()) + self.locked_cost
        value += float((dual.minimum[self.mins] * self.locked_load[self.mins, self.problem.persons_index]).sum())
        if self.keep_persons is not None:
            value -= dual.keep * (self.keep_persons - self.locked_persons)
        return value

    def _y_value(self, dual: _Dual) -> np.ndarray:
        pi = self.problem.persons_index
        return dual.capacity[self.mins, pi] * self.problem.capacity[self.mins, pi] - dual.minimum[self.mins] * self.problem.min_intake[self.mins]

    def bound(self, dual: _Dual) -> tuple[float, np.ndarray]:
        """Exact dual value over ALL pairs (a valid upper bound) and all reduced profits."""
        self.clock.spend(self.clock.rates.bound_pair * self.pairs.size)
        rp = self.reduced_profit(dual)
        best = np.zeros(self.problem.n_units)
        free = self.free_pair
        np.maximum.at(best, self.pairs.unit[free], rp[free])
        value = float(best.sum() + np.maximum(self._y_value(dual), 0.0).sum() + self._constant(dual))
        return value, rp

    def working(self, positions: np.ndarray) -> _Working:
        """Arrays of a working set, gathered once for the many dual evaluations on it."""
        self.clock.spend(self.clock.rates.working_pair * positions.size)
        p = self.pairs
        starts, _ = _segments(p.unit[positions])
        usage = self.problem.usage_of_pairs(p.idx[positions]).astype(np.float64)
        rows, cols = np.nonzero(usage)
        # usage as a sparse [pairs, places * resources] matrix: pricing and the
        # gradient become two sparse products.
        matrix = csr_matrix(
            (usage[rows, cols], (rows, p.place[positions][rows] * self.n_r + cols)),
            shape=(positions.size, self.n_j * self.n_r),
        )
        return _Working(
            place=p.place[positions],
            usage=matrix,
            usage_t=matrix.T.tocsr(),
            persons=p.persons[positions],
            cost=self.cost[positions],
            starts=starts,
            counts=np.diff(np.r_[starts, positions.size]),
        )

    def smoothed(self, v: np.ndarray, ws: _Working, tau: float) -> tuple[float, np.ndarray]:
        """Entropy-smoothed dual on the working set, and its gradient."""
        self.clock.spend(self.clock.rates.dual_pair * ws.place.size)
        dual = self.unpack(v)
        rp = ws.cost + (dual.keep + dual.minimum[ws.place]) * ws.persons
        rp -= ws.usage @ dual.capacity.ravel()
        if ws.starts.size:
            top = np.maximum(np.maximum.reduceat(rp, ws.starts), 0.0)
            shifted = np.exp((rp - np.repeat(top, ws.counts)) / tau)
            z = np.add.reduceat(shifted, ws.starts) + np.exp(-top / tau)
            w = shifted / np.repeat(z, ws.counts)  # each pair's share of its unit
            value = float((top + tau * np.log(z)).sum())
        else:
            w, value = np.zeros(0), 0.0
        yv = self._y_value(dual)
        value += float((tau * np.logaddexp(0.0, yv / tau)).sum()) + self._constant(dual)
        sig = 0.5 * (1.0 + np.tanh(0.5 * yv / tau))
        grad_cap = self.rhs - self.locked_load - (ws.usage_t @ w).reshape(self.n_j, self.n_r)
        pi = self.problem.persons_index
        grad_cap[self.mins, pi] += self.problem.capacity[self.mins, pi] * sig
        wp = w * ws.persons
        persons_at = np.bincount(ws.place, weights=wp, minlength=self.n_j) + self.locked_load[:, pi]
        grad = [grad_cap.ravel(), persons_at[self.mins] - self.problem.min_intake[self.mins] * sig]
        if self.keep_persons is not None:
            grad.append(np.array([float(wp.sum()) - (self.keep_persons - self.locked_persons)]))
        return value, np.concatenate(grad)


@dataclass
class _Working:
    """A working set of pairs (sorted by unit) with its arrays."""

    place: np.ndarray
    usage: csr_matrix  # [n, places * resources]
    usage_t: csr_matrix  # its transpose
    persons: np.ndarray
    cost: np.ndarray
    starts: np.ndarray
    counts: np.ndarray


@dataclass
class _Priced:
    """Outcome of pricing one stage."""

    v: np.ndarray  # the multipliers as one vector (warm start of the next stage)
    dual: _Dual
    bound: float
    reduced_profit: np.ndarray  # over all pairs
    working: np.ndarray

    def release(self) -> None:
        """Drop the reduced profits (8 bytes a pair, 116 MB at 50,000 households) once
        placed; the multipliers, bound and working set stay for the later stages."""
        self.reduced_profit = np.zeros(0)


def _price(
    lag: _Lagrangian,
    working: np.ndarray,
    deadline: float,
    temperatures: tuple[float, ...],
    start: np.ndarray | None = None,
    iterations: int = LBFGS_ITERATIONS,
    profits: bool = True,
) -> _Priced:
    """Minimise the smoothed dual with falling temperature; grow the working set with
    pairs that price in; keep the multipliers with the lowest exact bound (and, with
    profits, their reduced profits over all pairs, else an empty array)."""
    problem, pairs, clock = lag.problem, lag.pairs, lag.clock
    working = working[lag.free_pair[working]]
    v = np.zeros(lag.n_vars) if start is None else np.maximum(start, 0.0)
    best_v, (best_bound, best_rp) = v, lag.bound(lag.unpack(v))
    if not profits:
        best_rp = np.zeros(0)
    for tau in temperatures:
        if clock.now() >= deadline:
            break
        for _ in range(WORKING_SET_ROUNDS):
            out = minimize(
                lag.smoothed, v, args=(lag.working(working), tau), jac=True, method="L-BFGS-B",
                bounds=[(0.0, None)] * lag.n_vars,
                options={"maxiter": iterations, "maxfun": 2 * iterations},
                callback=_stop_at(clock, deadline),
            )
            v = np.maximum(out.x, 0.0)
            bound, rp = lag.bound(lag.unpack(v))
            if bound < best_bound:
                best_v, best_bound, best_rp = v, bound, rp if profits else best_rp
            # Pairs outside the working set that beat their unit's best inside it.
            inside = np.zeros(pairs.size, dtype=bool)
            inside[working] = True
            best_in = np.full(problem.n_units, -np.inf)
            np.maximum.at(best_in, pairs.unit[working], rp[working])
            better = np.flatnonzero(~inside & lag.free_pair & (rp > np.maximum(best_in[pairs.unit], 0.0) - tau))
            LOG.debug(
                "pricing tau %.4g: smoothed %.4f, exact bound %.4f, working set %d, %d pairs price in (%d iterations)",
                tau, out.fun, bound, working.size, better.size, out.nit,
            )
            if better.size == 0 or clock.now() >= deadline:
                break
            clock.spend(clock.rates.pair_pass * pairs.size)
            working = np.union1d(working, _top_per_unit(pairs.unit, rp, ADD_PER_UNIT, better))
    return _Priced(best_v, lag.unpack(best_v), best_bound, best_rp, working)


def _stop_at(clock: _Clock, deadline: float):  # noqa: ANN202 - scipy callback
    def callback(*_: object) -> None:
        if clock.now() >= deadline:
            raise StopIteration  # scipy >= 1.11 ends the minimisation cleanly on this

    return callback


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
        hood = _Neighbourhoods(problem, pairs, rp, unit_best, best_place, locked)
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


def _greedy_and_local_moves(
    problem: AssignmentProblem,
    pairs: _Pairs,
    rp: np.ndarray,
    cost: np.ndarray,
    unit_best: np.ndarray,
    unit_margin: np.ndarray,
    locked: np.ndarray,
    clock: _Clock,
    deadline: float,
    local_moves: bool,
    room: bool,
) -> np.ndarray:
    """The greedy pass (clear-cut units first, each on its best pair by reduced profit that
    fits; with local moves, units asking most of the tight resources before them; without room
    for every unit, units that price out after all that price in), then local moves until a
    share of the time to the deadline is used."""
    n_u = problem.n_units
    clock.spend(clock.rates.pair_pass * 4 * pairs.size + clock.rates.unit * GREEDY_PAIRS * n_u)
    candidates = _top_per_unit(pairs.unit, rp, GREEDY_PAIRS, np.arange(pairs.size))
    # A locked pair may be far down its unit's list by reduced profit: the placer starts from it.
    candidates = np.union1d(candidates, _positions(problem, pairs, _locked_places(problem)))
    placer = _Placer(problem, pairs, candidates, rp, cost, clock)
    # The answer step's pass takes units asking most of the tight resources first (first fit decreasing),
    # clear-cut ones first among equals. Stage 1's pass (no local moves) only sets the persons stage 2 must
    # keep, and keeps the old order: tight-first there priced the 50,000 round worse (docs/decisions.md).
    order = np.lexsort((np.arange(n_u), -unit_best, -unit_margin))
    if local_moves:
        order = order[np.argsort(-_tight_demand(problem, pairs)[order], kind="stable")]
    if not room:
        # Units that price out (no pair with a positive reduced profit) come after all that price in: their
        # margin is how far they price out, so they came first as "clear-cut", and on a tight round (room
        # for 60 % of the persons) they took the room of units the prices want placed (twenty-fifth session).
        # Where every unit fits in total the order stays as it was measured.
        order = order[np.argsort(unit_best[order] <= 0, kind="stable")]
    placer.greedy(order)
    # Local moves: units the greedy pass left out though they price in, then those
    # furthest from their best pair.
    budget = clock.until(IMPROVE_SHARE, deadline)
    for _ in range(IMPROVE_PASSES if local_moves else 0):
        clock.spend(clock.rates.pair_pass * 2 * pairs.size + clock.rates.unit * n_u)
        loss = _loss(problem, pairs, rp, unit_best, placer.assignment())
        todo = np.flatnonzero(loss > 1e-6)
        todo = todo[np.lexsort((todo, -loss[todo]))].tolist()
        moves, tried = placer.improve(todo, IMPROVE_TRIES, budget), len(todo)
        loss = _loss(problem, pairs, rp, unit_best, placer.assignment())
        todo = [u for u in todo if loss[u] > 1e-6]
        relocated = placer.relocate(todo, IMPROVE_TRIES, MOST_EJECTED, budget)
        LOG.debug("local moves: %d of %d units moved, then %d of %d by moving several", moves, tried, relocated, len(todo))
        moves += relocated
        if not moves or clock.now() >= budget:
            break
    return _drop_short(problem, pairs, placer.assignment(), locked)


def _tight_demand(problem: AssignmentProblem, pairs: _Pairs) -> np.ndarray:
    """Per unit, whole numbers of what it asks of the tight resources: its usage weighted by
    each resource's demand over capacity (persons aside: they are the objective)."""
    if problem.pair_usage is not None:  # usage depends on the place: no single demand per unit
        return np.zeros(problem.n_units)
    has = np.zeros(problem.n_units, dtype=bool)
    has[pairs.unit] = True
    demand = problem.usage[has].sum(axis=0).astype(np.float64)
    capacity = problem.capacity.sum(axis=0).astype(np.float64)
    tightness = np.where(capacity > 0, demand / np.maximum(capacity, 1.0), 0.0)
    tightness[problem.persons_index] = 0.0
    return np.floor(problem.usage @ tightness)


@dataclass
class _CoreLP:
    """The LP over a core of pairs: its solution says which units the neighbourhood
    MIPs should re-decide, and on which pairs."""

    value: float  # PERSON_WEIGHT * persons + the stage's objective
    support: np.ndarray  # pair positions with x > 0, sorted
    place_of: np.ndarray  # per unit: the place where x = 1, else -1
    work: float  # counted seconds it took (_Rates)


def _core_pairs(lag: _Lagrangian, rp: np.ndarray) -> np.ndarray:
    """Positions of the core LP's pairs: each unit's within CORE_MARGIN of its best reduced
    profit rp, and the locked pairs (sorted)."""
    problem, pairs = lag.problem, lag.pairs
    lag.clock.spend(lag.clock.rates.pair_pass * 2 * pairs.size)
    best = np.full(problem.n_units, -np.inf)
    np.maximum.at(best, pairs.unit, rp)
    near = [  # in chunks: no temporaries the size of all pairs
        a + np.flatnonzero(rp[a:b] >= best[pairs.unit[a:b]] - CORE_MARGIN) for a, b in chunk_bounds(pairs.size, PAIR_CHUNK_SIZE)
    ]
    return np.union1d(np.concatenate(near), _positions(problem, pairs, _locked_places(problem)))


def _core_lp(lag: _Lagrangian, core: np.ndarray, seconds: float, work_budget: float | None = None) -> _CoreLP | None:
    """The lexicographic LP (PERSON_WEIGHT * persons + the stage's objective) over
    the core pairs (positions), solved by HiGHS; None if it does not finish within
    seconds (wall clock) and, given a work budget, the simplex iterations that fit in it.
    It runs beside the main thread and reports the work it counted instead of spending it.
    Its duals are no bound: they leave pairs outside the core free to price in (measured:
    2.4 % above the Lagrangian bound at 10,000 households), so only the solution is used."""
    problem, pairs = lag.problem, lag.pairs
    start = time.perf_counter()
    sub = dataclasses.replace(
        problem,
        pair_unit=pairs.unit[core],
        pair_place=pairs.place[core],
        pair_score=problem.pair_score[pairs.idx[core]],
        pair_usage=None if problem.pair_usage is None else problem.pair_usage[pairs.idx[core]],
    )
    model = _build_model(sub)
    model_pos = core[model.pair_idx]
    _set_objective(model, lag.cost[model_pos] + PERSON_WEIGHT * model.persons)
    rates = lag.clock.rates
    per_iteration = rates.lp_iteration
    if work_budget is None or per_iteration <= 0:
        iteration_limit = None
    else:
        iteration_limit = max(1, int((work_budget - rates.lp_pair * core.size) / per_iteration))
    lp = solve_lp(model.proto, seconds - (time.perf_counter() - start), iteration_limit)
    if lp is None:
        LOG.debug("core LP over %d pairs: not solved in time", core.size)
        return None
    x = lp.x[: model.n_x]
    one = x > 1 - 1e-6
    place_of = _place_of(model, problem.n_units, one)
    support = np.sort(model_pos[x > 1e-6])
    LOG.debug(
        "core LP over %d pairs in %.1f s: %d units placed whole, %d fractional",
        core.size, time.perf_counter() - start, int((place_of >= 0).sum()), np.unique(model.unit[(x > 1e-6) & ~one]).size,
    )
    return _CoreLP(lp.value, support, place_of, rates.core_lp_seconds(core.size, lp.iterations))


@dataclass
class _PendingCore:
    """The core LP while it solves beside the search's first MIPs (those that need no LP:
    scarce resources, unplaced units). The search takes it up once it is ready: in
    reproducible runs when the search's counted work passes the LP's own (the LP's
    iterations are deterministic, the search's MIPs too), else when it has finished."""

    future: Future[_CoreLP | None]
    began: float  # the clock's work when the LP started
    least: float  # counted seconds it takes at least (by its size)
    budget: float  # counted seconds it may take (its iteration limit)

    def ready(self, clock: _Clock) -> bool:
        if not clock.reproducible:
            return self.future.done()
        return clock.work >= self.began + self.least and clock.work >= self.done_at()

    def done_at(self) -> float:
        """The counted time at which the LP is done (waits for it)."""
        core = self.future.result()
        return self.began + (core.work if core is not None else self.budget)

    def wait(self, clock: _Clock) -> _CoreLP | None:
        """The LP's outcome; the clock counts the wait."""
        core = self.future.result()
        if clock.reproducible:
            clock.work = max(clock.work, self.done_at())
        return core


def _reoptimise(
    sub: AssignmentProblem, params: SolverParams, start_from: np.ndarray, seconds: float, clock: _Clock
) -> tuple[str, np.ndarray]:
    """One MIP over a neighbourhood (SCIP, whatever the round's backend: measured best for
    these MIPs, and its node limit makes them reproducible): most PERSON_WEIGHT * persons
    + score, keeping at least the persons of start_from (also the solver's first
    solution), for seconds, or reproducibly MIP_NODES nodes (the wall clock left is then
    only a safety limit). Returns the solver status and a place per unit (start_from when
    no solution came back)."""
    model = _build_model(sub)
    hint = _hint(model, sub, start_from)
    model.proto.constraint[model.persons_row].lower_bound = float(model.persons @ hint[: model.n_x])
    _set_objective(model, PERSON_WEIGHT * model.persons + model.score)
    scip = dataclasses.replace(params, backend="scip")
    if clock.reproducible:
        limit = clock.wall_left()
        status, values, _, _, wall, iterations = _solve_stage(model, scip, limit, hint, node_limit=MIP_NODES)
        clock.spend(clock.rates.mip_seconds(iterations, model.n_x, len(model.proto.constraint)))
        if wall >= limit - 0.05:  # stopped by the wall clock, not by its nodes
            clock.overrun = clock.cut = True
    else:
        status, values, *_ = _solve_stage(model, scip, seconds, hint)
    if values is None:
        return status, start_from
    return status, _place_of(model, sub.n_units, np.round(values[: model.n_x]) > 0.5)


class _Neighbourhoods:
    """Sets of units for the exact MIP: all units using a scarce resource (one set per
    such resource); per unplaced seed unit the units at its best places and those
    wanting the same places; then, with a core LP, units whose LP place differs from
    their current one, grown from one such seed over the places they share (now or in
    the LP); then seeds far from their best pair as for unplaced ones. Worst-placed
    seeds first. After an unplaced seed's set that gained nothing, one of the later kinds
    comes first (persons first must not starve the score)."""

    def __init__(
        self,
        problem: AssignmentProblem,
        pairs: _Pairs,
        rp: np.ndarray,
        unit_best: np.ndarray,
        best_place: np.ndarray,
        locked: np.ndarray,
    ) -> None:
        self.problem, self.pairs, self.rp, self.unit_best, self.locked = problem, pairs, rp, unit_best, locked
        has_pairs = np.isfinite(unit_best)
        users = [np.flatnonzero((problem.usage[:, r] > 0) & has_pairs) for r in range(len(problem.resources))]
        self.by_resource = [u for r, u in enumerate(users) if r != problem.persons_index and 0 < u.size <= NEIGHBOURHOOD_UNITS]
        top = _top_per_unit(pairs.unit, rp, NEIGHBOURHOOD_PLACES, np.arange(pairs.size))
        self.top_places = pairs.place[top]
        self.top_starts = np.searchsorted(pairs.unit[top], np.arange(problem.n_units + 1))
        self.top_unit = pairs.unit[top]
        self.best_place = best_place
        self.seeded = np.zeros(problem.n_units, dtype=bool)
        self.lp_seeded = np.zeros(problem.n_units, dtype=bool)
        self.size = NEIGHBOURHOOD_UNITS  # units per set now (grows when sets stop paying)
        self.lp_size = NEIGHBOURHOOD_UNITS
        self.fruitless = 0
        self.first = True
        self.core: _CoreLP | None = None
        self.last_kind, self.last_gained = "", True

    def use_core(self, core: _CoreLP | None) -> None:
        """Take up the core LP's solution (None: it did not finish): the LP's places per
        unit and units per place seed sets from now on, and its pairs come first in the MIPs."""
        self.core = core
        if core is None:
            return
        problem, pairs = self.problem, self.pairs
        unit, place = pairs.unit[core.support], pairs.place[core.support]
        self.lp_places = np.split(place, np.searchsorted(unit, np.arange(1, problem.n_units)))
        by_place = np.lexsort((unit, place))
        self.lp_units = np.split(unit[by_place], np.searchsorted(place[by_place], np.arange(1, problem.n_places)))

    def next(self, current: np.ndarray) -> np.ndarray | None:
        """The next set (a mask over units) for the current assignment, or None."""
        problem = self.problem
        if self.first:  # a small round is one neighbourhood
            self.first = False
            if problem.n_units <= NEIGHBOURHOOD_UNITS:
                return ~self.locked & np.isfinite(self.unit_best)
        if self.by_resource:
            free = np.zeros(problem.n_units, dtype=bool)
            free[self.by_resource.pop(0)] = True
            return self._close(free, current)
        loss = _loss(problem, self.pairs, self.rp, self.unit_best, current)
        # Persons come first: unplaced units that price in seed the first sets; after one
        # that gained nothing, one set for the score comes between (at 50,000 households
        # 44 of 60 persons sets gained nothing and no score set ever ran).
        wanting = (loss > 1e-6) & ~self.seeded & ~self.locked
        persons_turn = not (self.last_kind == "persons" and not self.last_gained)
        if (wanting & (current < 0)).any() and persons_turn:
            self.last_kind = "persons"
            return self._seeded_set(np.flatnonzero(wanting & (current < 0)), loss, current)
        self.last_kind = "score"
        if self.core is not None:
            free = self._lp_set(current, loss)
            if free is not None:
                return self._close(free, current)
        if (wanting & (current >= 0)).any():  # placed units far from their best pair
            return self._seeded_set(np.flatnonzero(wanting & (current >= 0)), loss, current)
        if not wanting.any():
            return None
        self.last_kind = "persons"  # only unplaced seeds are left
        return self._seeded_set(np.flatnonzero(wanting), loss, current)

    def _seeded_set(self, seeds: np.ndarray, loss: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Seeds (worst loss first) with the units at their best places that lose least
        by moving, and the units wanting the same places."""
        problem = self.problem
        seeds = seeds[np.lexsort((seeds, -loss[seeds]))]
        chosen_rp = np.full(problem.n_units, np.inf)
        pos = _positions(problem, self.pairs, current)
        chosen_rp[self.pairs.unit[pos]] = self.rp[pos]
        wanting = loss > 1e-6
        free = np.zeros(problem.n_units, dtype=bool)
        places = np.zeros(problem.n_places, dtype=bool)
        for u in seeds.tolist():
            if free.sum() >= self.size:
                break
            self.seeded[u] = True
            free[u] = True
            new = self.top_places[self.top_starts[u] : self.top_starts[u + 1]]
            new = new[~places[new]]
            places[new] = True
            for j in new.tolist():
                # The units at the place that lose least by moving (lowest reduced profit there).
                there = np.flatnonzero(current == j)
                free[there[np.argsort(chosen_rp[there], kind="stable")[:PLACE_UNITS]]] = True
            free |= wanting & (self.best_place >= 0) & places[self.best_place]
        return self._close(free, current)

    def _lp_set(self, current: np.ndarray, loss: np.ndarray) -> np.ndarray | None:
        """Units placed otherwise than in the core LP, grown breadth first from the
        worst-placed such seed over the places they use now or in the LP."""
        problem, core = self.problem, self.core
        differs = (core.place_of != current) & ~self.locked
        seeds = np.flatnonzero(differs & ~self.lp_seeded)
        if seeds.size == 0:
            return None
        seed = int(seeds[np.lexsort((seeds, -loss[seeds]))[0]])
        self.lp_seeded[seed] = True
        order = np.argsort(current, kind="stable")
        bounds = np.searchsorted(current[order], np.arange(problem.n_places + 1))
        free = np.zeros(problem.n_units, dtype=bool)
        seen = np.zeros(problem.n_places, dtype=bool)
        queue, n_free = [seed], 0
        while queue and n_free < self.lp_size:
            u = queue.pop(0)
            if free[u]:
                continue
            free[u] = True
            n_free += 1
            places = self.lp_places[u].tolist() + ([int(current[u])] if current[u] >= 0 else [])
            for j in places:
                if seen[j]:
                    continue
                seen[j] = True
                there = np.union1d(order[bounds[j] : bounds[j + 1]], self.lp_units[j])
                queue.extend(there[differs[there] & ~free[there]].tolist())
        if not queue:  # the whole connected set: any of its units would seed it again
            self.lp_seeded |= free
        return free

    def placed_more(self, current: np.ndarray, before: np.ndarray) -> None:
        """An answer with more persons was kept: the units still unplaced whose best places
        it changed may seed again (the capacity around them has moved). Only those: at
        50,000 households re-seeding every unplaced unit re-tried the same sets, proven
        without gain, after every gain (62 of 72 MIPs)."""
        moved = current != before
        places = np.r_[current[moved], before[moved]]
        changed = np.zeros(self.problem.n_places, dtype=bool)
        changed[places[places >= 0]] = True
        hit = np.zeros(self.problem.n_units, dtype=bool)
        hit[self.top_unit[changed[self.top_places]]] = True
        self.seeded[hit & (current < 0)] = False

    def solved(self, in_time: bool, gained: bool) -> bool:
        """Feedback from the last MIP: LP-guided sets halve (down to a quarter) after a
        MIP that ran out of time, and grow back after one that finished; whether it gained
        decides whether persons sets keep their turn. After GROW_AFTER sets in a row proven
        without a gain, all sets double and their seeds are free again. Returns whether they grew."""
        self.last_gained = gained
        low = max(1, NEIGHBOURHOOD_UNITS // 4)
        self.fruitless = self.fruitless + 1 if in_time and not gained else 0
        grew = self.fruitless >= GROW_AFTER and self.size < MOST_NEIGHBOURHOOD_UNITS
        if grew:
            self.size, self.fruitless = min(MOST_NEIGHBOURHOOD_UNITS, 2 * self.size), 0
            self.seeded[:] = False
            self.lp_seeded[:] = False
            LOG.debug("sets grow to %d units", self.size)
        self.lp_size = min(self.size, self.lp_size * 2) if in_time else max(low, self.lp_size // 2)
        return grew

    def _close(self, free: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Locked units stay. At a place with a minimum intake the MIP decides the whole
        intake, or only an addition to a staying intake that meets the minimum alone."""
        problem = self.problem
        free &= ~self.locked
        staying = _load(problem, self.pairs, np.where(free, -1, current))[:, problem.persons_index]
        below = (staying > 0) & (staying < problem.min_intake)
        free &= ~((current >= 0) & below[np.maximum(current, 0)])
        return free


def _loss(problem: AssignmentProblem, pairs: _Pairs, rp: np.ndarray, unit_best: np.ndarray, place_of: np.ndarray) -> np.ndarray:
    """Per unit: reduced profit of its best pair (0 if none prices in) minus that of its
    current pair (0 if unplaced)."""
    chosen_rp = np.zeros(problem.n_units)
    pos = _positions(problem, pairs, place_of)
    chosen_rp[pairs.unit[pos]] = rp[pos]
    return np.maximum(unit_best, 0.0) - chosen_rp


class _Placer:
    """Assignment state for the greedy pass and the local moves after it: per unit its
    candidate pairs (best reduced profit first), per place the capacity left and its units."""

    def __init__(
        self, problem: AssignmentProblem, pairs: _Pairs, candidates: np.ndarray, rp: np.ndarray, cost: np.ndarray, clock: _Clock
    ) -> None:
        self.problem, self.clock = problem, clock
        cand = candidates[np.lexsort((candidates, -rp[candidates], pairs.unit[candidates]))]
        self.bounds = np.searchsorted(pairs.unit[cand], np.arange(problem.n_units + 1)).tolist()
        self.use = problem.usage_of_pairs(pairs.idx[cand]).tolist()
        self.nz = [[(r, a) for r, a in enumerate(row) if a] for row in self.use]  # the resources a pair uses
        self.places = pairs.place[cand].tolist()
        self.cost = cost[cand].tolist()
        self.pi = problem.persons_index
        self.min_intake = problem.min_intake.tolist()
        self.capacity = problem.capacity.tolist()
        self.left = problem.capacity.astype(np.int64).tolist()
        self.at: list[set[int]] = [set() for _ in range(problem.n_places)]
        self.chosen: list[int] = [-1] * problem.n_units  # candidate index, -1 unplaced
        self.locked = {u for u, _ in problem.locked}
        for u, j in problem.locked:  # locked pairs are always candidates (see _reduce)
            k = next((k for k in range(self.bounds[u], self.bounds[u + 1]) if self.places[k] == j), None)
            if k is None:
                raise ValueError("a locked pair is missing from the candidates")
            self._put(u, k)

    def _put(self, u: int, k: int) -> None:
        row = self.left[self.places[k]]
        for r, a in enumerate(self.use[k]):
            row[r] -= a
        self.at[self.places[k]].add(u)
        self.chosen[u] = k

    def _take(self, u: int) -> None:
        k = self.chosen[u]
        row = self.left[self.places[k]]
        for r, a in enumerate(self.use[k]):
            row[r] += a
        self.at[self.places[k]].discard(u)
        self.chosen[u] = -1

    def _fits(self, k: int) -> bool:
        row = self.left[self.places[k]]
        return all(row[r] >= a for r, a in self.nz[k])

    def greedy(self, unit_order: np.ndarray) -> None:
        """Each unit in turn takes its first candidate that fits (minimum intakes aside)."""
        for u in unit_order.tolist():
            if self.chosen[u] >= 0:
                continue
            for k in range(self.bounds[u], self.bounds[u + 1]):
                if self._fits(k):
                    self._put(u, k)
                    break

    def _persons_ok(self, j: int, delta: int) -> bool:
        """A place's intake after a change stays 0 or at least its minimum."""
        if not self.min_intake[j]:
            return True
        after = self.capacity[j][self.pi] - self.left[j][self.pi] + delta
        return after == 0 or after >= self.min_intake[j]

    def improve(self, units: list[int], tries: int, deadline: float) -> int:
        """Move each unit (unplaced ones: insert it) to a candidate place, if need be
        moving one unit there elsewhere or, when it brings fewer persons, out. A move is
        kept when it places more persons, or as many with a higher objective. Returns
        the moves made."""
        moves = 0
        for n, u in enumerate(units):
            if u in self.locked:
                continue
            if n % 64 == 0 and self.clock.now() >= deadline:
                break
            self.clock.spend(self.clock.rates.unit)
            best: tuple[tuple[int, float], tuple[int, int, int]] | None = None
            pi = self.pi
            k0 = self.chosen[u]
            p0 = self.use[k0][self.pi] if k0 >= 0 else 0
            c0 = self.cost[k0] if k0 >= 0 else 0.0
            if k0 >= 0:
                self._take(u)
                if not self._persons_ok(self.places[k0], 0):
                    self._put(u, k0)
                    continue
            places, use, nz, cost, left, bounds = self.places, self.use, self.nz, self.cost, self.left, self.bounds
            for k in range(bounds[u], min(bounds[u + 1], bounds[u] + tries)):
                if k == k0:
                    continue
                j = places[k]
                self.clock.spend(self.clock.rates.candidate * (1 + len(self.at[j])))
                pu = use[k][pi]
                row = left[j]
                deficit = [(r, a - row[r]) for r, a in nz[k] if a > row[r]]
                if not deficit:
                    if self._persons_ok(j, pu):
                        gain = (pu - p0, cost[k] - c0)
                        if gain > (0, 1e-9) and (best is None or gain > best[0]):
                            best = (gain, (k, -1, -1))
                    continue
                for v in self.at[j]:
                    kv = self.chosen[v]
                    freed = use[kv]
                    if any(freed[r] < d for r, d in deficit) or v in self.locked:
                        continue
                    pv = freed[pi]
                    if not self._persons_ok(j, pu - pv):
                        continue
                    # v leaves the round, or moves to one of its candidates with room.
                    best_v = ((pu - pv - p0, cost[k] - cost[kv] - c0), -1)
                    for k2 in range(bounds[v], min(bounds[v + 1], bounds[v] + tries)):
                        j2 = places[k2]
                        if j2 == j:
                            continue
                        row2 = left[j2]
                        if all(row2[r] >= a for r, a in nz[k2]) and self._persons_ok(j2, pv):
                            option = ((pu - p0, cost[k] - cost[kv] + cost[k2] - c0), k2)
                            if option > best_v:
                                best_v = option
                    gain, k2 = best_v
                    if gain > (0, 1e-9) and (best is None or gain > best[0]):
                        best = (gain, (k, v, k2))
            if best is None:
                if k0 >= 0:
                    self._put(u, k0)
                continue
            k, v, k2 = best[1]
            if v >= 0:
                self._take(v)
                if k2 >= 0:
                    self._put(v, k2)
            self._put(u, k)
            moves += 1
        return moves

    def relocate(self, units: list[int], tries: int, most_out: int, deadline: float) -> int:
        """Move each unit to a better candidate pair (unplaced ones: insert it), making
        room there by moving up to most_out units of that place to other places of
        theirs, or out of the round. Victims are chosen greedily by lexicographic loss
        per unit of missing capacity they free. A move is kept when it places more
        persons, or as many with a higher objective. Returns the moves made."""
        places, use, nz, cost, left, bounds, pi = self.places, self.use, self.nz, self.cost, self.left, self.bounds, self.pi
        moves = 0
        for n, u in enumerate(units):
            if u in self.locked:
                continue
            if n % 16 == 0 and self.clock.now() >= deadline:
                break
            self.clock.spend(self.clock.rates.unit)
            k0 = self.chosen[u]
            p0, c0 = (use[k0][pi], cost[k0]) if k0 >= 0 else (0, 0.0)
            if k0 >= 0:
                self._take(u)
                if not self._persons_ok(places[k0], 0):
                    self._put(u, k0)
                    continue
            best: tuple[tuple[int, float], int, list[tuple[int, int]]] | None = None
            for k in range(bounds[u], min(bounds[u + 1], bounds[u] + tries)):
                if k == k0:
                    continue
                self.clock.spend(self.clock.rates.victim_candidate * (1 + len(self.at[places[k]])))
                plan = self._make_room(k, tries, most_out)
                if plan is None:
                    continue
                lost_persons, score_change, victims = plan
                gain = (use[k][pi] - p0 - lost_persons, cost[k] - c0 + score_change)
                if gain > (0, 1e-9) and (best is None or gain > best[0]):
                    best = (gain, k, victims)
            if best is None:
                if k0 >= 0:
                    self._put(u, k0)
                continue
            _, k, victims = best
            for v, _ in victims:
                self._take(v)
            for v, k2 in victims:
                if k2 >= 0:
                    self._put(v, k2)
            self._put(u, k)
            moves += 1
        return moves

    def _make_room(self, k: int, tries: int, most_out: int) -> tuple[int, float, list[tuple[int, int]]] | None:
        """Victims at pair k's place whose leaving lets k fit: (persons lost, score
        change, [(victim, its new pair or -1)]), or None when no such set is found."""
        places, use, nz, cost, left, bounds, pi = self.places, self.use, self.nz, self.cost, self.left, self.bounds, self.pi
        j = places[k]
        row = left[j]
        deficit = {r: a - row[r] for r, a in nz[k] if a > row[r]}
        if not deficit:
            return (0, 0.0, []) if self._persons_ok(j, use[k][pi]) else None
        options: list[tuple[float, int, int, int, float]] = []  # (loss per freed share, v, new pair, persons lost, score change)
        extra: dict[int, list[int]] = {}  # load the plan puts on other places
        for v in self.at[j]:
            kv = self.chosen[v]
            freed = use[kv]
            share = sum(min(freed[r], d) / d for r, d in deficit.items())
            if share == 0 or v in self.locked:
                continue
            move = (freed[pi], -cost[kv], -1)  # leaves the round
            for k2 in range(bounds[v], min(bounds[v + 1], bounds[v] + tries)):
                j2 = places[k2]
                if j2 != j and -cost[kv] + cost[k2] > move[1] - 1000.0 * move[0]:
                    row2 = left[j2]
                    if all(row2[r] >= a for r, a in nz[k2]) and self._persons_ok(j2, use[k2][pi]):
                        move = (0, cost[k2] - cost[kv], k2)
            options.append(((1000.0 * move[0] - move[1]) / share, v, move[2], move[0], move[1]))
        options.sort()
        chosen: list[tuple[int, int]] = []
        lost, change, out_persons = 0, 0.0, 0
        for _, v, k2, persons_lost, score_change in options:
            if not deficit or len(chosen) >= most_out:
                break
            freed = use[self.chosen[v]]
            if not any(freed[r] for r in deficit):
                continue  # what is still missing, this victim does not free
            if k2 >= 0:
                j2 = places[k2]
                load = extra.setdefault(j2, [0] * len(freed))
                row2 = left[j2]
                if any(row2[r] < load[r] + a for r, a in nz[k2]) or not self._persons_ok(j2, load[pi] + use[k2][pi]):
                    continue  # an earlier victim took the room there
                for r, a in nz[k2]:
                    load[r] += a
            chosen.append((v, k2))
            lost += persons_lost
            change += score_change
            out_persons += freed[pi]
            deficit = {r: d - freed[r] for r, d in deficit.items() if d > freed[r]}
        if deficit or not self._persons_ok(j, use[k][pi] - out_persons):
            return None
        return lost, change, chosen

    def assignment(self) -> np.ndarray:
        return np.array([self.places[k] if k >= 0 else -1 for k in self.chosen], dtype=np.int64)


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


def _value(lag: _Lagrangian, place_of: np.ndarray) -> float:
    """The stage's objective of an assignment."""
    return float(lag.cost[_positions(lag.problem, lag.pairs, place_of)].sum())


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


def _subproblem(
    problem: AssignmentProblem,
    pairs: _Pairs,
    rp: np.ndarray,
    free: np.ndarray,
    load: np.ndarray,
    current: np.ndarray,
    first: np.ndarray | None = None,
) -> tuple[AssignmentProblem, np.ndarray]:
    """The free units on their best pairs by reduced profit, the pair positions in first
    (sorted) ranked before all others, and the capacity left.

    A place whose fixed persons meet its minimum drops the minimum; units of a place
    below it were all freed, so elsewhere the minimum stays as it is."""
    sub_units = np.flatnonzero(free)
    local = np.full(problem.n_units, -1, dtype=np.int64)
    local[sub_units] = np.arange(sub_units.size)
    cand = np.flatnonzero(free[pairs.unit])
    key = rp[cand]
    if first is not None:
        key = key + CORE_FIRST * np.isin(cand, first, assume_unique=True)
    top = cand[_top_per_unit(pairs.unit[cand], key, MIP_PAIRS, np.arange(cand.size))]
    pos = np.union1d(top, _positions(problem, pairs, np.where(free, current, -1)))
    left = problem.capacity - load
    fits = np.ones(pos.size, dtype=bool)
    for r in range(len(problem.resources)):
        fits &= problem.usage_of_pairs(pairs.idx[pos], r) <= left[pairs.place[pos], r]
    pos = pos[fits]
    min_intake = np.where(load[:, problem.persons_index] > 0, 0, problem.min_intake)
    sub = AssignmentProblem(
        unit_ids=[problem.unit_ids[u] for u in sub_units.tolist()],
        place_ids=problem.place_ids,
        resources=problem.resources,
        usage=problem.usage[sub_units],
        capacity=left,
        min_intake=min_intake,
        pair_unit=local[pairs.unit[pos]],
        pair_place=pairs.place[pos],
        pair_score=problem.pair_score[pairs.idx[pos]],
        unit_households=problem.unit_households[sub_units] if problem.unit_households is not None else None,
        pair_usage=None if problem.pair_usage is None else problem.pair_usage[pairs.idx[pos]],
    )
    return sub, sub_units


def solve_large(problem: AssignmentProblem, params: SolverParams, wall_setting: str = "wall_limit_seconds") -> AssignmentResult:
    """Lexicographic solve of a large round (see module docstring). Bounds hold for all pairs.
    With params.reproducible the budgets count work (_Clock), so repeated runs give the
    same assignment and bound. wall_setting is the round setting the result's note names when the
    wall clock cuts the search (a caller that derives the wall limit from another names that)."""
    # Our own threads use both cores; idle OpenBLAS threads would spin on them (measured at
    # 1,000 households: a neighbourhood MIP beside the pricing took 6.8 s instead of 4.6 s).
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve_large(problem, params, wall_setting)


def _solve_large(problem: AssignmentProblem, params: SolverParams, wall_setting: str) -> AssignmentResult:
    # The last steps (bounds, result arrays) run after the deadline: leave them room.
    limit = params.time_limit_seconds
    clock = _Clock(params.reproducible, FINISH_SHARE * params.wall_limit())
    start = clock.start
    deadline = (REPRODUCIBLE_SHARE if params.reproducible else FINISH_SHARE) * limit
    pairs = _usable_pairs(problem)
    clock.rates = RATES.for_round(pairs.size)
    clock.spend(clock.rates.pair_pass * 10 * problem.pair_unit.size)  # the usable pairs and the first working set
    if (_load(problem, pairs, _locked_places(problem)) > problem.capacity).any():  # the locks alone break a capacity
        return _empty_result(problem, params, "infeasible", [], start, solver=SOLVER_LABEL)
    # Exactly one place per unit is the persons stage reaching every unit's persons (each unit has some).
    every_person = int(problem.usage[:, problem.persons_index].sum())
    if problem.exactly_one and _most_persons(problem, pairs) < every_person:  # a unit without a usable pair
        return _empty_result(problem, params, "infeasible", [], start, solver=SOLVER_LABEL)
    all_pos = np.arange(pairs.size)
    LOG.debug("%d usable pairs of %d units", pairs.size, problem.n_units)
    by_score = _top_per_unit(pairs.unit, pairs.score, INITIAL_BY_SCORE, all_pos)
    slack = (problem.capacity[:, problem.persons_index] - problem.min_intake).astype(np.float64)
    by_slack = _top_per_unit(pairs.unit, slack[pairs.place], INITIAL_BY_SLACK, all_pos)
    working = np.union1d(by_score, by_slack)

    persons_only = _Lagrangian(problem, pairs, pairs.persons, None, clock)
    room = _room_in_total(problem)
    while True:  # twice at most: again with the persons stage when every unit's persons prove out of reach
        if room:
            # Stage 1 is skipped: every unit with a usable pair bounds the persons, and stage
            # 2b aims at that bound (its keeping multiplier prices a person). Its pricing and
            # greedy pass took an eighth of the counted time at 10,000 households and only set
            # a persons floor that stage 2b's keeping row then made slack; the score search
            # gets that time (docs/decisions.md, twenty-third session).
            first = _locked_places(problem)
            persons, persons_bound = _persons(problem, pairs, first), float(_most_persons(problem, pairs))
            stage1_working, stage2_start = working, None
            LOG.debug("room in total for every resource: no persons stage, bound %d (every unit's persons)", persons_bound)
        else:
            # Stage 1: persons. Priced and placed on PERSON_WEIGHT * persons + score; the bound
            # on persons alone comes from the same prices scaled down (valid for any prices).
            lag = _Lagrangian(problem, pairs, PERSON_WEIGHT * pairs.persons + pairs.score, None, clock)
            # Its prices start from the summed capacities' (one price per resource, the same at every
            # place): from zero, 8 % of the limit left the 10,000-household round at 60 % capacity
            # with a persons bound of 19,158 where those prices alone prove 14,134.
            summed_bound, summed_prices = _summed_capacity_bound(problem, pairs, clock)
            start = np.zeros(lag.n_vars)
            start[: lag.n_j * lag.n_r] = np.tile(PERSON_WEIGHT * summed_prices, lag.n_j)
            priced = _price(lag, working, PERSONS_PRICING_SHARE * limit, PERSONS_TEMPERATURES, start)
            # Stage 1's answer is the greedy pass (it sets the persons to keep); the local moves
            # and the exact MIPs run in stage 2, on prices that also value the score.
            first, _ = _place(lag, priced, params, deadline, room=False, exact=False)
            priced.release()
            persons = _persons(problem, pairs, first)
            d = priced.dual
            persons_bound, _ = persons_only.bound(_Dual(d.capacity / PERSON_WEIGHT, d.minimum / PERSON_WEIGHT, 0.0))
            persons_bound = min(persons_bound, summed_bound)
            # Stage 1's prices with the persons-keeping multiplier at PERSON_WEIGHT are a feasible start of stage 2.
            stage1_working, stage2_start = priced.working, np.r_[priced.v, PERSON_WEIGHT]
        persons_seconds = clock.wall()

        # Stage 2: score, keeping at least those persons.
        wall2 = clock.wall()
        lag2 = _Lagrangian(problem, pairs, pairs.score, persons, clock)
        priced2 = _price(lag2, stage1_working, clock.until(SCORE_PRICING_SHARE, deadline), SCORE_TEMPERATURES, stage2_start)
        if priced2.dual.keep > 0:  # the stage-2 prices bound persons too, scaled by the keeping multiplier
            persons_bound = min(persons_bound, _persons_bound_at(persons_only, priced2.dual))
        persons_bound = min(float(np.floor(persons_bound + 1e-6)), float(_most_persons(problem, pairs)))
        if problem.exactly_one and persons_bound < every_person:  # the prices prove the capacities too small
            stages = [StageReport("persons", "infeasible", persons, persons_bound, _gap(persons, persons_bound), persons_seconds)]
            return _empty_result(problem, params, "infeasible", stages, start, params.reproducible and not clock.cut, SOLVER_LABEL)
        # Stage 2b: the same score prices, now keeping the persons bound. Its keeping
        # multiplier is what a person is worth in score points when every person counts,
        # so the placement below takes the persons it can reach.
        target = persons_bound
        lag3 = lag2.keeping(target)
        priced3 = _price(lag3, priced2.working, clock.until(TARGET_PRICING_SHARE, deadline), SCORE_TEMPERATURES[-1:], np.r_[priced2.v[:-1], 0.0])
        LOG.debug("pricing for %d persons: keeping multiplier %.4f, bound %.4f", target, priced3.dual.keep, priced3.bound)
        if room and not priced3.dual.keep <= PERSON_WEIGHT:
            # Room in total is no room for every unit: where its places are few and taken, the persons
            # of every unit are out of reach even in the LP, its keeping multiplier diverges (1e32 on
            # 400 households x 401 districts) and prices nothing. The persons stage runs as on a tight
            # round (there: 783 persons and a 0.87 % gap instead of 783 and 5.47 %; twenty-seventh session).
            LOG.debug("every unit's persons are out of reach (keeping multiplier %.3g): the persons stage runs", priced3.dual.keep)
            priced2.release()
            priced3.release()
            room = False
            continue
        if priced3.dual.keep > 0:  # these prices bound persons too (a skipped stage 1 gave only the count of units' persons)
            persons_bound = min(persons_bound, float(np.floor(_persons_bound_at(persons_only, priced3.dual) + 1e-6)))
        break
    # The bound is refined beside the neighbourhood search (same persons), and at the end
    # for the persons actually placed, in time kept back from the answer step.
    answer_deadline = deadline - FINAL_PRICING_SHARE * limit
    priced2.release()
    # Beside the search the bound is priced for the persons bound where every unit fits in total
    # (the search reaches it); on a tight round, for the persons the local moves reached: the persons
    # bound is out of reach there, its keeping multiplier climbs, and the score bound it gave for the
    # persons placed was loose (3,000 households at 60 % capacity: 149,371 for 4,173 persons, where
    # 146,625 held for 4,138 before; twenty-fifth session).
    # There it starts from the summed-capacity LP's prices for those persons: from stage 2b's, which
    # price a person at ~600-950 score points near the persons bound, it did not converge (3,000
    # households at 60 % capacity, 4,118 persons: 147,017 for the 4,173 placed, against 141,108;
    # twenty-sixth session).
    beside = functools.partial(_price_beside, lag2, priced3, answer_deadline, target if room else None, toward=None if room else target)
    second, priced_beside = _place(lag3, priced3, params, answer_deadline, room=room, beside=beside, exchange_deadline=deadline)
    # The assignment is settled here (what follows refines the bound only): whether the
    # wall clock cut it short is known now.
    answer_cut = clock.cut
    if answer_cut:
        second = _insert_unplaced(lag3, second, _locked_places(problem) >= 0, math.inf, after_cut=True)
    priced3.release()
    if _persons(problem, pairs, second) < persons:  # could not keep stage 1's persons
        LOG.debug("the score stage placed fewer persons; keeping the persons stage's answer")
        second = first
    # The lexicographic optimum places at least the persons found; at fixed multipliers
    # the bound for that requirement moves by keep * (persons found - persons kept).
    placed = _persons(problem, pairs, second)
    kept = [(persons, priced2), (target, priced3), *priced_beside]
    at_placed = [q.bound - q.dual.keep * (placed - p) for p, q in kept]
    score_bound = min(at_placed)
    LOG.debug("bound for %d persons from %d price vectors: %.4f", placed, len(kept), score_bound)
    if placed < persons_bound and priced_beside and priced_beside[-1][1].dual.keep > 0:
        # The pricing beside the search aims at the persons bound; where that is out of reach (a tight
        # round) its keeping multiplier climbs, and its prices scaled by it prove a lower persons bound
        # (valid for any prices; one exact pass, so the last vector only).
        persons_bound = min(persons_bound, float(np.floor(_persons_bound_at(persons_only, priced_beside[-1][1].dual) + 1e-6)))
    # The search's last MIP is charged after its root and can end past the deadline. Where it placed
    # fewer persons than the prices aimed at, the bound for those placed still gets its share: each
    # person short moves the kept bounds by the keeping multiplier (1,000 x 401: 138 points a person,
    # gap 2.35 % unpriced, 1.71 % priced; twenty-seventh session).
    pricing_deadline = deadline if placed >= target else max(deadline, clock.now() + FINAL_PRICING_SHARE * limit)
    if clock.now() < pricing_deadline:  # the kept-back time, and what the search left
        lag4 = lag2.keeping(placed)
        # From the prices that give the lowest bound for the persons placed: on a tight round the last
        # ones aimed at an unreachable persons bound and are far off for fewer persons.
        last = kept[int(np.argmin(at_placed))][1] if placed < target else kept[-1][1]
        # On a tight round, from the summed-capacity LP's prices for the persons placed (its working set
        # stays): started from the lowest vector above, 2.4 s took the 3,000-household round at 60 %
        # capacity from 147,017 to 146,869 only; from these, to 140,610 (twenty-sixth session).
        fresh = None if room else _summed_start(lag4, clock, placed)
        rounds = SCORE_TEMPERATURES[-1:] * FINAL_PRICING_ROUNDS
        priced4 = _price(lag4, last.working, pricing_deadline, rounds, last.v if fresh is None else fresh, FINAL_LBFGS_ITERATIONS, False)
        LOG.debug("pricing for the %d persons placed: bound %.4f", placed, priced4.bound)
        score_bound = min(score_bound, priced4.bound)
    persons = placed
    LOG.debug("stage persons: %d placed, bound %d", persons, persons_bound)
    status = "optimal" if persons >= persons_bound else "feasible"
    stages = [StageReport("persons", status, persons, persons_bound, _gap(persons, persons_bound), persons_seconds)]
    score = float(pairs.score[_positions(problem, pairs, second)].sum())
    gap = _gap(score, score_bound)
    LOG.debug("stage score: %.4f, bound %.4f", score, score_bound)
    status = "optimal" if gap <= params.relative_gap else "feasible"
    stages.append(StageReport("score", status, score, score_bound, gap, clock.wall() - wall2))
    reproducible = params.reproducible and not answer_cut
    # Said by the caller in the round's log (AssignmentResult.notes), not logged here.
    notes: tuple[str, ...] = ()
    if answer_cut:
        notes = (
            "the wall-clock limit stopped this solve before its counted work: a repeat may give another assignment"
            f" (a faster or less loaded machine, or a longer {wall_setting}, makes it reproducible)",
        )
    elif params.reproducible and clock.overrun:
        notes = (
            "the wall-clock limit stopped the bound's refinement after the assignment was settled: a repeat"
            " gives the same assignment, but its bound and gap may differ",
        )
    LOG.debug("counted work %.1f s, wall clock %.1f s", clock.work, clock.wall())
    # Only when locks leave a minimum intake unreachable, or (exactly one) the search left a unit unplaced.
    if check_assignment(problem, second):
        result = _empty_result(problem, params, "not_solved", stages, start, reproducible, SOLVER_LABEL)
    else:
        result = _result(problem, pairs, params, second, stages, persons_bound, start, reproducible, reproducible and not clock.overrun)
    return dataclasses.replace(result, notes=notes)


def _persons_bound_at(persons_only: _Lagrangian, dual: _Dual) -> float:
    """The persons bound at a score stage's prices scaled by its keeping multiplier (> 0; valid for any prices)."""
    return persons_only.bound(_Dual(dual.capacity / dual.keep, dual.minimum / dual.keep, 0.0))[0]


def _summed_capacity_bound(problem: AssignmentProblem, pairs: _Pairs, clock: _Clock) -> tuple[float, np.ndarray]:
    """The most persons the places' capacities summed over all places could hold (an LP over the
    units with a usable pair, one row per resource, x between 0 and 1; HiGHS through scipy, ms even at
    50,000 units) and its prices per resource. Valid for the round: each place's rows, summed, are
    these rows. On a tight round it bounds the persons far below stage 1's unconverged dual
    (10,000 households at 60 % capacity: 14,134 against 19,158), and its prices are a start for it."""
    value, prices, _ = _summed_capacity_lp(problem, pairs, clock, None)
    return value, prices


def _summed_capacity_lp(
    problem: AssignmentProblem, pairs: _Pairs, clock: _Clock, persons: float | None
) -> tuple[float, np.ndarray, float]:
    """The summed-capacity LP (see _summed_capacity_bound): with persons None it maximises the persons;
    otherwise each unit's best score, keeping at least that many persons (one more row). Returns its
    value, its prices per resource and the persons row's price (inf, zeros, 0 where the LP does not
    apply: usage that depends on the place, or no answer)."""
    none = math.inf, np.zeros(problem.capacity.shape[1]), 0.0
    if problem.pair_usage is not None:  # usage depends on the place: no single row per unit
        return none
    clock.spend(clock.rates.unit * problem.n_units * problem.capacity.shape[1])
    has = np.zeros(problem.n_units, dtype=bool)
    has[pairs.unit] = True
    usage = problem.usage[has].astype(np.float64)
    a_ub, b_ub = usage.T, problem.capacity.sum(axis=0).astype(np.float64)
    if persons is None:
        profit = usage[:, problem.persons_index]
    else:
        clock.spend(clock.rates.pair_pass * pairs.size)
        best = np.full(problem.n_units, -np.inf)
        np.maximum.at(best, pairs.unit, pairs.score)
        profit = best[has]
        a_ub, b_ub = np.vstack([a_ub, -usage[:, problem.persons_index]]), np.r_[b_ub, -persons]
    out = linprog(-profit, A_ub=a_ub, b_ub=b_ub, bounds=(0.0, 1.0), method="highs")
    if out.status != 0:  # not expected (x = 0 is feasible, and persons are those of an answer); no bound then
        return none
    prices = np.maximum(-out.ineqlin.marginals, 0.0)
    n_r = problem.capacity.shape[1]
    return float(-out.fun), prices[:n_r], float(prices[n_r]) if persons is not None else 0.0


def _summed_start(lag: _Lagrangian, clock: _Clock, persons: float) -> np.ndarray | None:
    """Multipliers of lag (a score stage with its persons-keeping row) from the summed-capacity LP that
    keeps persons: its price per resource at every place, its persons row's price as the keeping
    multiplier (their exact bound is that LP's value). None where that LP does not apply."""
    value, prices, keep = _summed_capacity_lp(lag.problem, lag.pairs, clock, persons)
    if not math.isfinite(value):
        return None
    v = np.zeros(lag.n_vars)
    v[: lag.n_j * lag.n_r] = np.tile(prices, lag.n_j)
    v[-1] = keep
    return v


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


def _result(
    problem: AssignmentProblem,
    pairs: _Pairs,
    params: SolverParams,
    place_of_unit: np.ndarray,
    stages: list[StageReport],
    persons_bound: float,
    start: float,
    reproducible: bool,
    bound_reproducible: bool,
) -> AssignmentResult:
    pos = _positions(problem, pairs, place_of_unit)  # usable pairs are sorted: no second sort of all pairs
    final = stages[-1]
    return AssignmentResult(
        place_of_unit=place_of_unit,
        status="optimal" if all(s.status == "optimal" for s in stages) else "feasible",
        persons_placed=int(pairs.persons[pos].sum()),
        total_score=float(np.round(pairs.score[pos].sum(), 6)),
        objective_value=final.objective_value,
        best_bound=final.best_bound,
        gap=final.gap,
        persons_bound=persons_bound,
        min_unit_score=None,
        wall_seconds=time.perf_counter() - start,
        solver=SOLVER_LABEL,
        params=params.as_dict(),
        stages=tuple(stages),
        bound_scope="all_pairs",
        reproducible=reproducible,
        bound_reproducible=bound_reproducible,
    )


def reduced_problem(problem: AssignmentProblem, max_pairs: int) -> AssignmentProblem:
    """The problem on at most ~max_pairs pairs: each unit's best pairs by score (an
    equal share per unit, at least one) plus locked pairs. Used for maximin at scale."""
    per_unit = max(1, max_pairs // max(problem.n_units, 1))
    all_pos = np.arange(problem.pair_unit.size)
    return problem.with_pairs(_top_per_unit(problem.pair_unit, problem.pair_score, per_unit, all_pos))
