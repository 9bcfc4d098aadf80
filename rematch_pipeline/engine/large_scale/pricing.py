"""The Lagrangian dual over all pairs: entropy-smoothed pricing with L-BFGS-B on a working set of pairs,
its exact bound, and the summed-capacity LP that starts tight rounds' prices."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog, minimize
from scipy.sparse import csr_matrix

from rematch_pipeline.engine.large_scale.clock import _Clock
from rematch_pipeline.engine.large_scale.pairs import _Pairs, _positions, _segments, _top_per_unit
from rematch_pipeline.engine.problem import AssignmentProblem

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


def _value(lag: _Lagrangian, place_of: np.ndarray) -> float:
    """The stage's objective of an assignment."""
    return float(lag.cost[_positions(lag.problem, lag.pairs, place_of)].sum())


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
