"""Sets of units for the exact neighbourhood MIPs, the MIP over one set (SCIP), and the LP over the core
of pairs that guides the sets."""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from rematch_pipeline.engine._common import PAIR_CHUNK_SIZE, chunk_bounds
from rematch_pipeline.engine.large_scale.chains import CHAIN_SET_LEAST, _ChainSets
from rematch_pipeline.engine.large_scale.clock import _Clock
from rematch_pipeline.engine.large_scale.local_moves import _loss
from rematch_pipeline.engine.large_scale.pairs import _Pairs, _load, _locked_places, _positions, _top_per_unit
from rematch_pipeline.engine.large_scale.pricing import PERSON_WEIGHT, _Lagrangian
from rematch_pipeline.engine.lp import solve_lp
from rematch_pipeline.engine.model import _build_model, _hint, _place_of, _set_objective, _solve_stage
from rematch_pipeline.engine.problem import AssignmentProblem, SolverParams

LOG = logging.getLogger(__name__)

# Pairs per unit in a neighbourhood MIP, best reduced profit first (the core LP's before all).
MIP_PAIRS: int = 8
# Large neighbourhood search: units per MIP (about), the best places per seed unit whose
# units join it, and units taken per such place.
NEIGHBOURHOOD_UNITS: int = 600
NEIGHBOURHOOD_PLACES: int = 3
PLACE_UNITS: int = 60
# After this many sets in a row proven optimal at the current answer, the sets double in size (up to
# MOST_NEIGHBOURHOOD_UNITS) and every seed may seed again: the answer is locally optimal for sets of
# this size, and only larger ones can still improve it.
GROW_AFTER: int = 8
MOST_NEIGHBOURHOOD_UNITS: int = 2400
# The LP over the core: pairs within this many points of their unit's best reduced profit.
CORE_MARGIN: float = 0.5
# Added to the reduced profit of the LP's pairs: they come first wherever pairs are ranked.
CORE_FIRST: float = 1e6
# Reproducible runs: a neighbourhood MIP stops after this many branch-and-bound nodes (its root
# does most of the work: measured at 10,000 households, 8 s runs found what root-only runs found).
MIP_NODES: int = 1


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
    comes first (persons first must not starve the score). Given a clock, once the core LP is
    in and no unit that prices in is left out, every second set is one of near-paying ejection
    chains (chains.py), until such a set gains nothing."""

    def __init__(
        self,
        problem: AssignmentProblem,
        pairs: _Pairs,
        rp: np.ndarray,
        unit_best: np.ndarray,
        best_place: np.ndarray,
        locked: np.ndarray,
        clock: _Clock | None = None,
    ) -> None:
        self.problem, self.pairs, self.rp, self.unit_best, self.locked = problem, pairs, rp, unit_best, locked
        self.clock = clock
        self.chains: _ChainSets | None = None
        self.chain_turns, self.chain_last, self.chain_off = 0, False, clock is None
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
        was_first = self.first
        if self.first:  # a small round is one neighbourhood
            self.first = False
            if problem.n_units <= NEIGHBOURHOOD_UNITS:
                return ~self.locked & np.isfinite(self.unit_best)
        if self.by_resource:
            free = np.zeros(problem.n_units, dtype=bool)
            free[self.by_resource.pop(0)] = True
            return self._close(free, current)
        loss = _loss(problem, self.pairs, self.rp, self.unit_best, current)
        if self.core is not None and not was_first:
            chained = self._chain_set(current, loss)
            if chained is not None:
                return chained
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

    def _chain_set(self, current: np.ndarray, loss: np.ndarray) -> np.ndarray | None:
        """Every second call, while no unit that prices in is left out: the units of near-paying
        ejection chains (chains.py), or None. After such a set that gained nothing, none again: on
        the 10,000 round the first one or two gained most (+359 and +164 points on seed 1), later
        ones nothing at 1.4 counted seconds of chains each (docs/decisions.md, twenty-ninth session)."""
        if self.chain_off:
            return None
        if self.chain_last and not self.last_gained:
            self.chain_off = True
            return None
        self.chain_last = False
        self.chain_turns += 1
        if self.chain_turns % 2 or ((loss > 1e-6) & (current < 0) & ~self.locked).any():
            return None
        clock = self.clock
        assert clock is not None
        if self.chains is None:
            clock.spend(clock.rates.pair_pass * 10 * self.pairs.size)  # each unit's chain pairs
            self.chains = _ChainSets(self.problem, self.pairs, self.rp)
        free, nodes = self.chains.next(current, loss, self.locked, self.size)
        clock.spend(clock.rates.chain_node * nodes)
        LOG.debug("ejection chains: %d units in %d steps", int(free.sum()), nodes)
        if free.sum() < CHAIN_SET_LEAST:
            return None
        self.last_kind, self.chain_last = "score", True
        return self._close(free, current)

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
