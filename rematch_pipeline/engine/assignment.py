"""Solving an assignment: which unit (link group of households) goes to which place.

Binary x_p per candidate pair p = (unit u, place j), binary y_j per place with a
minimum intake. Constraints: at most (or exactly) one place per unit; per place and
resource sum of usage <= capacity; per place with a minimum: persons 0 or >= min
(min*y_j <= persons_j <= cap_j*y_j); locked pairs fixed to 1.
Objectives are solved lexicographically with OR-Tools pywraplp (SCIP by default):
1) max persons placed, 2) max total score with persons >= stage-1 value (plus a tiny
deterministic tie-break), or for "maximin" 2) max the minimum per-household score of
placed units (bisection over score thresholds on the persons model, _maximin_stage),
3) max total score keeping both. Rounds with more than
SolverParams.max_model_pairs pairs (lexicographic: or max_model_units units, or max_exact_pairs pairs of the units that
can be placed; uses_large_method) go to the large_scale package (Lagrangian prices and
bound over all pairs, greedy and local moves, exact MIP on close calls). See docs/scoring.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable

import numpy as np

from rematch_pipeline.engine.exchange import exchange_within_classes, reference_seconds
from rematch_pipeline.engine.lp import LpRelaxation
from rematch_pipeline.engine.model import (
    _Model,
    _build_model,
    _gap,
    _hint,
    _max_persons_per_unit,
    _min_score,
    _place_of,
    _set_objective,
    _solve_stage,
    _tie_break,
)
from rematch_pipeline.engine.problem import (
    WALL_LIMIT_FACTOR,
    AssignmentProblem,
    AssignmentResult,
    PairLookup,
    SolveProgress,
    SolverParams,
    StageReport,
    most_units_placed,
)

# Slack when a later stage keeps an earlier stage's (floating point) optimum.
KEEP_TOLERANCE: float = 1e-6
# The exact path's stages share time_limit_seconds (model building included) on the wall
# clock. CBC reads its limit on the CPU seconds of its thread, not the wall clock: on a
# loaded machine its stop lags (measured: a 57.8 s limit stopped after 61.2 s wall, 58.0 s
# CPU), so a CBC stage's limit is scaled by the share of a core the earlier stages got.
# A stage begun with less than MIN_STAGE_SECONDS left is skipped (status not_solved):
# CBC spends ~0.3 s on a 600-household round's root LP whatever its limit. The last stage
# stops STAGE_RESERVE_SHARE of the limit early (at most STAGE_RESERVE_SECONDS), for the
# solver's own overshoot; a solve then ends within TIME_LIMIT_TOLERANCE of the limit
# (docs/decisions.md, "Exact rounds keep their time limit").
MIN_STAGE_SECONDS: float = 0.25
STAGE_RESERVE_SHARE: float = 0.02
STAGE_RESERVE_SECONDS: float = 1.0
TIME_LIMIT_TOLERANCE: float = 1.0
MIN_CPU_SHARE: float = 0.2
# Maximin: a threshold probe's MIP gets at least this multiple of the persons stage's seconds
# (measured: a probe that reached its target took 0.4-3x that stage's time).
PROBE_PERSONS_FACTOR: float = 2.0
# Maximin: below the LP's highest open threshold, MIP probes go down by score gaps doubling
# from this many points (0.5, 1.5, 3.5, ... below it) until one reaches its threshold (that
# highest open threshold was the optimum itself on every measured round).
GALLOP_POINTS: float = 0.5
# Exchanges within usage classes after an unproven last stage (_exchange_passes): a pass
# re-seats each class given the others, so it can open moves for the next pass; one more
# person placed outweighs any score (lexicographic).
MOST_EXCHANGE_PASSES: int = 20
EXCHANGE_PERSON_WEIGHT: float = 1000.0


def _overall(statuses: list[str]) -> str:
    """optimal if every stage is, else feasible (callers handle no-solution cases)."""
    if all(s == "optimal" for s in statuses):
        return "optimal"
    return "feasible"


def uses_large_method(problem: AssignmentProblem, params: SolverParams) -> bool:
    """Whether solve() takes the large-round method (large_scale.solve_large, which ignores the backend and
    budgets counted work) rather than one exact MIP per stage with params.backend: lexicographic rounds above
    max_model_pairs candidate pairs, max_model_units units placed together, or max_exact_pairs pairs of those
    units (their mean count of pairs each)."""
    if params.objective != "lexicographic":
        return False
    # Candidate pairs (before dropping unusable ones) decide the method: cheap to count.
    if problem.pair_unit.size > params.max_model_pairs:
        return True
    placeable = most_units_placed(problem)
    # Units that cannot all be placed do not count (a tight round CBC proves quickly, see max_model_units).
    exact_pairs = placeable * problem.pair_unit.size / max(problem.n_units, 1)
    return placeable > params.max_model_units or exact_pairs > params.max_exact_pairs


def solve(problem: AssignmentProblem, params: SolverParams | None = None, progress: SolveProgress | None = None) -> AssignmentResult:
    """Solve the assignment lexicographically (see module docstring).

    Up to params.max_model_pairs usable pairs (lexicographic: and params.max_model_units
    units placed at most, most_units_placed, with params.max_exact_pairs pairs between them; uses_large_method):
    one exact MIP per stage, units in data_order. Above it: large_scale.solve_large (lexicographic;
    bounds over all pairs) or, for maximin, the exact MIP on a reduced pair set
    (result.bound_scope == "reduced_pairs").
    progress, if given, lets the caller read the large-round method's counted work while it solves.
    Always returns a result: on infeasibility or when no solution was found in time,
    place_of_unit is all -1 and status says why.
    """
    params = params or SolverParams()
    too_large = problem.pair_unit.size > params.max_model_pairs
    if uses_large_method(problem, params):
        from rematch_pipeline.engine.large_scale import solve_large  # avoids an import cycle

        return _in_data_order(functools.partial(solve_large, progress=progress), problem, params)
    if too_large:
        from rematch_pipeline.engine.large_scale import reduced_problem

        result = _in_data_order(_solve_direct, reduced_problem(problem, params.max_model_pairs), params)
        return dataclasses.replace(result, bound_scope="reduced_pairs")
    return _in_data_order(_solve_direct, problem, params)


def data_order(problem: AssignmentProblem) -> np.ndarray:
    """The units (indices) in the order of a digest of each unit's own data: its usage, its
    households and its candidate pairs (place id, score, usage at the place), with the unit
    id only as the last tie-break (units with identical data). Unit ids are pseudonyms,
    ordered differently by every data home's secret, and the solvers follow the order of
    the units (CBC's search, tie-breaks, the large path's passes): in this order two
    installs with the same questionnaires build the same model (docs/decisions.md, "Exact
    rounds in the data's order"). Vectorised: 0.1 s per million pairs."""
    place_code = np.array(
        [int.from_bytes(hashlib.blake2b(p.encode(), digest_size=8).digest(), "little") for p in problem.place_ids], dtype=np.uint64
    )
    pair = _mix(place_code[problem.pair_place] ^ _mix(np.round(problem.pair_score * 1e6).astype(np.int64).view(np.uint64)))
    if problem.pair_usage is not None:
        for r in range(problem.pair_usage.shape[1]):
            pair = _mix(pair ^ _mix(problem.pair_usage[:, r].astype(np.uint64) + np.uint64(r + 1)))
    # A unit's pairs are a set: their codes are summed (mod 2**64, in exact 32-bit halves).
    low = np.bincount(problem.pair_unit, weights=(pair & np.uint64(0xFFFFFFFF)).astype(np.float64), minlength=problem.n_units)
    high = np.bincount(problem.pair_unit, weights=(pair >> np.uint64(32)).astype(np.float64), minlength=problem.n_units)
    unit = _mix(low.astype(np.uint64) + (high.astype(np.uint64) << np.uint64(32)))
    for r in range(problem.usage.shape[1]):
        unit = _mix(unit ^ _mix(problem.usage[:, r].astype(np.uint64) + np.uint64(r + 1)))
    unit = _mix(unit ^ problem.unit_households.astype(np.uint64))
    ids = np.argsort(np.argsort(np.array(problem.unit_ids, dtype=object), kind="stable"), kind="stable")
    return np.lexsort((ids, unit)).astype(np.int64)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on an array of uint64 (wrapping arithmetic): a 64-bit hash."""
    z = np.asarray(z, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _reordered(problem: AssignmentProblem, order: np.ndarray) -> AssignmentProblem:
    """The same problem with its units in order (unit k of the result is unit order[k])."""
    rank = np.empty(problem.n_units, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    return dataclasses.replace(
        problem,
        unit_ids=[problem.unit_ids[u] for u in order.tolist()],
        usage=problem.usage[order],
        pair_unit=rank[problem.pair_unit],
        locked=[(int(rank[u]), j) for u, j in problem.locked],
        unit_households=None if problem.unit_households is None else problem.unit_households[order],
    )


def _in_data_order(
    solver: Callable[[AssignmentProblem, SolverParams], AssignmentResult], problem: AssignmentProblem, params: SolverParams
) -> AssignmentResult:
    """solver on the problem's units in data_order, the answer given back per unit of problem."""
    order = data_order(problem)
    result = solver(_reordered(problem, order), params)
    place_of = np.empty_like(result.place_of_unit)
    place_of[order] = result.place_of_unit
    return dataclasses.replace(result, place_of_unit=place_of)


class _Budget:
    """The wall-clock seconds of the exact path's stages: all of them, model building
    included, within params.time_limit_seconds (see MIN_STAGE_SECONDS)."""

    def __init__(self, start: float, params: SolverParams) -> None:
        self.params = params
        self.deadline = start + params.time_limit_seconds
        self.reserve = min(STAGE_RESERVE_SECONDS, STAGE_RESERVE_SHARE * params.time_limit_seconds)
        # CBC's clock is the CPU time of its thread (one thread: the caller's).
        self.cpu_clock = params.backend == "cbc" and params.threads == 1
        self.cpu_share = 1.0
        self._wall = 0.0
        self._cpu = 0.0

    def seconds(
        self, share: float, *, first: bool = False, last: bool = False, until: float | None = None
    ) -> float | None:
        """The solver's limit for the next stage: share of the wall-clock time left (the
        last stage: less the reserve; until: before that perf_counter time, if earlier), in
        the solver's own clock; None when too little is left to begin a stage (the first
        stage always runs: without it there is no answer)."""
        end = self.deadline if until is None else min(self.deadline, until)
        left = end - time.perf_counter() - (self.reserve if last else 0.0)
        if left < MIN_STAGE_SECONDS and not first:
            return None
        seconds = max(0.05, left * share)
        return seconds * self.cpu_share if self.cpu_clock else seconds

    def solve(
        self,
        model: _Model,
        share: float,
        hint: np.ndarray | None,
        *,
        first: bool = False,
        last: bool = False,
        witness: np.ndarray | None = None,
        until: float | None = None,
        params: SolverParams | None = None,
    ) -> tuple[str, np.ndarray | None, float, float, float]:
        """One stage within the budget (params: the budget's, unless given, for a stage's
        own gap): (status, values or None, objective, bound, wall seconds); a stage without
        time to begin is "not_solved" after 0 s."""
        limit = self.seconds(share, first=first, last=last, until=until)
        if limit is None:
            return "not_solved", None, float("nan"), float("nan"), 0.0
        wall, cpu = time.perf_counter(), time.thread_time()
        status, values, obj, bound, secs, _ = _solve_stage(model, params or self.params, limit, hint, witness=witness)
        self._wall += time.perf_counter() - wall
        self._cpu += time.thread_time() - cpu
        if self._wall > 0.5:  # shorter stages say little about the machine's load
            self.cpu_share = min(1.0, max(MIN_CPU_SHARE, self._cpu / self._wall))
        return status, values, obj, bound, secs


def _solve_direct(
    problem: AssignmentProblem, params: SolverParams, start_from: np.ndarray | None = None
) -> AssignmentResult:
    """One MIP over all usable pairs, stage by stage, all stages within the time limit
    (_Budget). start_from (a place per unit, -1 unplaced) is a feasible assignment handed
    to the solver as its first solution."""
    start = time.perf_counter()
    maximin = params.objective == "maximin"
    # Maximin too is solved on the persons model: its lowest score by thresholds on the pairs
    # (_maximin_stage), not by a variable T and big-M rows, which CBC could not solve at 600
    # households (docs/decisions.md, "Maximin by thresholds").
    model = _build_model(problem)
    n_vars = len(model.proto.variable)
    budget = _Budget(start, params)
    stages: list[StageReport] = []

    # Stage 1: persons placed. Hint: the given assignment, else locked pairs only
    # (feasible whenever the locks are).
    hint = np.zeros(n_vars)
    hint[model.locked_vars] = 1.0
    if start_from is not None:
        hint = _hint(model, problem, start_from)
    use_hint = start_from is not None or not model.locked_vars.size
    # Locked pairs only, minimum-intake indicators set: disproves a solver's "infeasible"
    # whenever the locks alone are feasible.
    locks_only = np.full(problem.n_units, -1, dtype=np.int64)
    for u, j in problem.locked:
        locks_only[u] = j
    witness = _hint(model, problem, locks_only) if start_from is None else hint
    _set_objective(model, model.persons)
    # Persons placed never exceed the persons of units with a usable pair.
    trivial = float(_max_persons_per_unit(model).sum())
    # Persons rank first and come whole: the persons stage stops only at a proven gap below
    # one person, whatever relative_gap allows the score stage (a 0.3 % gap let the demo
    # round's persons stage stop at 935 of 937 persons).
    persons_params = dataclasses.replace(params, relative_gap=min(params.relative_gap, 0.99 / max(trivial, 1.0)))
    status, values, obj, bound, secs = budget.solve(
        model, 0.4 if not maximin else 0.3, hint if use_hint else None, first=True, witness=witness, params=persons_params
    )
    stages.append(StageReport("persons", status, obj, bound, _gap(obj, bound), secs))
    if values is None:
        return _empty_result(problem, params, status, stages, start)
    persons_best = round(obj)
    persons_bound = float(np.floor(min(bound, trivial) + 1e-6))
    stages[-1] = StageReport(
        "persons", status, obj, persons_bound, _gap(obj, persons_bound), secs
    )
    # Keep stage 1: persons >= its value (integer, so no tolerance needed).
    model.proto.constraint[model.persons_row].lower_bound = float(persons_best)
    current = values

    if maximin:
        report, current = _maximin_stage(model, problem, budget, current, persons_best, 0.5, stages[0].wall_seconds)
        stages.append(report)
        # Keep the lowest score reached: pairs of households below it are dropped.
        lowest = _min_score(model, current)
        _drop_below(model, lowest)
        if most_units_placed(problem) > params.max_model_units:
            # CBC's score stage finds no answer at this many units (1,000 x 40: none in 34 s); the large
            # path's score stage on the pairs the lowest score leaves does (docs/decisions.md, "Maximin's score stage").
            return _maximin_score_on_large_path(problem, params, model, budget, current, lowest, stages, persons_bound, start)

    coefs = model.score + (_tie_break(model) if params.tie_break else 0.0)
    _set_objective(model, coefs)
    status, values, obj, bound, secs = budget.solve(model, 1.0, current, last=True)
    # The gap is the solver's own (tie-break included); the reported objective is the
    # pure total score, which the bound (on score + tie-break) also bounds from above.
    gap = _gap(obj, bound)
    if values is not None:
        current = values
    else:
        bound, gap = float("nan"), float("inf")
    x = np.round(current[: model.n_x]) > 0.5
    if status != "optimal":
        x = _exchange_passes(problem, model, x, budget.deadline)
        if math.isfinite(bound):
            gap = _gap(float(coefs[x].sum()), bound)
    obj = float(model.score[x].sum())
    stages.append(StageReport("score", status, obj, bound, gap, secs))

    finished = _finished(stages)  # the exact path's answer and bound repeat when every stage finished
    return _result_of(problem, params, _place_of(model, problem.n_units, x), stages, persons_bound, start, f"ortools-{params.backend}", finished)


def _maximin_score_on_large_path(
    problem: AssignmentProblem,
    params: SolverParams,
    model: _Model,
    budget: _Budget,
    current: np.ndarray,
    lowest: float,
    stages: list[StageReport],
    persons_bound: float,
    start: float,
) -> AssignmentResult:
    """Maximin's score stage of a round above params.max_model_units, where CBC's finds no answer: the large
    path's lexicographic solve (large_scale.solve_large) on the pairs whose per-household score is at least
    the lowest score reached (locked pairs kept), in the time left. Its answer is kept when it places more
    persons than the maximin stage's answer after exchanges, or as many with a higher score (it cannot fall
    below the lowest score: the pairs below are gone); else that answer is, with the large path's bound.
    Either bound holds for those pairs and that many persons, as the exact path's score stage's does."""
    from rematch_pipeline.engine.large_scale import SOLVER_LABEL, solve_large  # avoids an import cycle

    fallback = _exchange_passes(problem, model, np.round(current[: model.n_x]) > 0.5, budget.deadline)
    fallback_score = float(model.score[fallback].sum())
    persons_kept = float(model.persons[fallback].sum())
    households = np.maximum(problem.unit_households, 1)[problem.pair_unit] if problem.unit_households is not None else 1
    sub = problem.with_pairs(problem.pair_score / households >= lowest - KEEP_TOLERANCE)
    left = budget.deadline - time.perf_counter() - budget.reserve
    large = None
    if left >= MIN_STAGE_SECONDS:
        # The round's limit holds on the wall clock: the wall clock stops the large path at what is left
        # (flagged not reproducible when it does), its counted budgets get a share of that as large rounds do.
        sub_params = dataclasses.replace(
            params, time_limit_seconds=left / WALL_LIMIT_FACTOR, wall_limit_seconds=left, objective="lexicographic"
        )
        large = solve_large(sub, sub_params, wall_setting="time_limit_seconds")  # its wall limit is what the round's limit left
    if large is not None and (large.persons_placed, large.total_score) > (persons_kept, fallback_score + KEEP_TOLERANCE):
        place_of, score_stage = large.place_of_unit, large.stages[-1]
        score_stage = StageReport("score", score_stage.status, large.total_score, score_stage.best_bound, score_stage.gap, score_stage.wall_seconds)
        solver, reproducible = f"ortools-{params.backend}+{SOLVER_LABEL.removeprefix('ortools-')}", large.reproducible and _finished(stages)
    else:
        place_of = _place_of(model, problem.n_units, fallback)
        seconds = time.perf_counter() - start - sum(s.wall_seconds for s in stages)
        if large is None:  # no time left for it: the exchanges alone weighed the scores, with no bound
            score_stage = StageReport("score", "not_solved", fallback_score, float("nan"), float("inf"), seconds)
        else:
            # The large path's bound is for at least its own persons on the same pairs: no fewer than the
            # answer kept places, so it bounds that answer's score too.
            bound = large.stages[-1].best_bound
            score_stage = StageReport("score", "feasible", fallback_score, bound, _gap(fallback_score, bound), seconds)
        solver, reproducible = f"ortools-{params.backend}", False
    # The large path's note (a wall-clock cut, naming time_limit_seconds) holds for this answer when both agree on
    # whether a repeat gives it: not so for a cut only of its bound's refinement once this answer is unreproducible.
    notes = large.notes if large is not None and large.reproducible == reproducible else ()
    result = _result_of(problem, params, place_of, [*stages, score_stage], persons_bound, start, solver, reproducible)
    return dataclasses.replace(result, notes=notes)


def _result_of(
    problem: AssignmentProblem,
    params: SolverParams,
    place_of: np.ndarray,
    stages: list[StageReport],
    persons_bound: float,
    start: float,
    solver: str,
    reproducible: bool,
) -> AssignmentResult:
    """The answer place_of with its stages: persons, total score and (maximin) the lowest per-household
    score are read from its pairs; status, objective, bound and gap are the last stage's."""
    at = PairLookup.of(problem).positions(problem, place_of)
    at = at[at >= 0]
    scores = problem.pair_score[at]
    min_score = None
    if params.objective == "maximin" and at.size:
        households = np.maximum(problem.unit_households, 1)[problem.pair_unit[at]] if problem.unit_households is not None else 1
        min_score = float((scores / households).min())
    final = stages[-1]
    return AssignmentResult(
        place_of_unit=place_of,
        status=_overall([s.status for s in stages]),
        persons_placed=int(problem.usage_of_pairs(at, problem.persons_index).sum()),
        total_score=float(np.round(scores.sum(), 6)),
        objective_value=final.objective_value,
        best_bound=final.best_bound,
        gap=final.gap,
        persons_bound=persons_bound,
        min_unit_score=min_score,
        wall_seconds=time.perf_counter() - start,
        solver=solver,
        params=params.as_dict(),
        stages=tuple(stages),
        reproducible=reproducible,
        bound_reproducible=reproducible,
    )


def _exchange_passes(problem: AssignmentProblem, model: _Model, x: np.ndarray, deadline: float) -> np.ndarray:
    """The answer x (chosen model pairs) improved by exchanges within usage classes
    (exchange.py) on the pairs the model still allows, pass after pass until one moves
    nobody, MOST_EXCHANGE_PASSES, or the time left (in counted work, so a repeat of the
    same answer gets the same exchanges). Persons never fall; capacities, minimum intakes
    and locks hold; the score only rises."""
    allowed = np.array([v.upper_bound > 0.5 for v in model.proto.variable[: model.n_x]], dtype=bool)
    keys = model.unit * max(problem.n_places, 1) + model.place
    positions = np.flatnonzero(allowed)
    positions = positions[np.argsort(keys[positions], kind="stable")]
    place_of = _place_of(model, problem.n_units, x)
    locked = np.zeros(problem.n_units, dtype=bool)
    locked[[u for u, _ in problem.locked]] = True
    budget = max(0.0, deadline - time.perf_counter())
    for _ in range(MOST_EXCHANGE_PASSES):
        done = exchange_within_classes(
            problem.usage, problem.capacity, problem.min_intake, problem.persons_index, keys[positions],
            model.score[positions], place_of, locked, EXCHANGE_PERSON_WEIGHT, reference_seconds, budget,
        )
        budget -= reference_seconds(done.entries, done.solved)
        if done.moved == 0 or done.gain <= 0:
            break
        place_of = done.place_of
    return place_of[model.unit] == model.place


def _drop_below(model: _Model, threshold: float) -> np.ndarray:
    """Fix to 0 the pairs whose per-household score is below threshold (all others free;
    locked pairs keep their lower bound 1). Returns the upper bounds of all variables."""
    below = model.household_score < threshold - KEEP_TOLERANCE
    below[model.locked_vars] = False  # fixed to 1: an upper bound of 0 would make the model invalid
    upper = np.ones(len(model.proto.variable))
    upper[: model.n_x][below] = 0.0
    for v, u in zip(model.proto.variable, upper.tolist(), strict=True):
        v.upper_bound = u
    return upper


def _maximin_stage(
    model: _Model,
    problem: AssignmentProblem,
    budget: _Budget,
    current: np.ndarray,
    persons_best: int,
    share: float,
    persons_seconds: float,
) -> tuple[StageReport, np.ndarray]:
    """The highest threshold t such that persons_best persons can be placed with every
    placed unit's per-household score >= t, over the distinct scores on the persons stage's
    own model (CBC could not solve one with a threshold variable and big-M rows at 600
    households) with the pairs below t fixed to 0.

    First the LP relaxation alone, by bisection: a t whose LP (GLOP, solved again from its
    last basis, a fraction of a MIP's time) places fewer persons is proven out of reach, and
    so is every higher one. Then MIPs maximising the persons placed (gap 0; hinted with the
    last answer less its units below t), which reach t when they place persons_best and prove
    it out of reach when their bound is below: the first at the highest t the LP left open
    (on all four measured rounds the optimum itself), then down by doubling score gaps
    (GALLOP_POINTS) until one reaches, then bisection. A probe the time limit cuts counts as
    out of reach for the answer, not for the bound. share of the time left goes to the stage;
    persons_seconds (what the persons stage took) sets a probe's least time. Returns the stage
    report (value: lowest score reached; bound: highest score not proven out of reach) and the
    assignment."""
    start = time.perf_counter()
    stage_end = start + max(0.0, budget.deadline - start) * share
    reached = _min_score(model, current)
    if persons_best <= 0:  # nothing placed: no household below any threshold
        return StageReport("min_score", "optimal", reached, reached, 0.0, 0.0), current
    levels = np.unique(model.household_score)
    levels = levels[levels > reached + KEEP_TOLERANCE]
    if model.locked_vars.size:  # a locked unit is placed at its pair's score: no threshold above it is reachable
        levels = levels[levels <= model.household_score[model.locked_vars].min() + KEEP_TOLERANCE]
    lo, hi, proven = -1, levels.size, levels.size  # levels[proven] and above: proven out of reach
    persons_row = model.proto.constraint[model.persons_row]
    persons_row.lower_bound = -np.inf  # the probes' persons, proven short or not, decide
    _set_objective(model, model.persons)

    # The LP's open range: lo < k < hi. The persons LP falls with t, so one bisection finds
    # where it drops below persons_best.
    lp_lo = lo
    relaxation = LpRelaxation(model.proto) if hi - lp_lo > 1 else None
    while relaxation is not None and hi - lp_lo > 1:
        mid = (lp_lo + hi) // 2
        upper = _drop_below(model, float(levels[mid]))
        left = stage_end - time.perf_counter()
        value = relaxation.value(upper, left / 4) if left >= MIN_STAGE_SECONDS else None
        if value is None:
            break  # cut: the MIPs decide the rest
        if np.floor(value + KEEP_TOLERANCE) < persons_best:
            hi = proven = mid
        else:
            lp_lo = mid

    exact = dataclasses.replace(budget.params, relative_gap=0.0)  # a bound just above the target decides nothing
    # Down from the top, by score gaps doubling from GALLOP_POINTS, until a probe reaches its
    # threshold; bisection after that.
    top = float(levels[hi - 1]) if hi > 0 else reached
    below_top, descending = 0.0, True
    while hi - lo > 1:
        if descending:
            mid = int(np.searchsorted(levels, top - below_top + KEEP_TOLERANCE, side="right")) - 1
            mid = min(hi - 1, max(lo + 1, mid))
            below_top = 2 * below_top + GALLOP_POINTS
        else:
            mid = (lo + hi) // 2
        # A MIP gets 1/steps of what is left, steps being the bisection steps to go but at
        # most 3, and never less than PROBE_PERSONS_FACTOR times what the persons stage
        # took: a probe is that stage's MIP on fewer pairs, and one cut before it can find
        # persons_best decides nothing.
        steps = min(3, max(1, int(np.ceil(np.log2(hi - lo)))))
        left = stage_end - time.perf_counter()
        probe_share = min(1.0, max(1.0 / steps, PROBE_PERSONS_FACTOR * persons_seconds / max(left, 1e-9)))
        threshold = float(levels[mid])
        _drop_below(model, threshold)
        keep = (np.round(current[: model.n_x]) > 0.5) & (model.household_score >= threshold - KEEP_TOLERANCE)
        place_of = _place_of(model, problem.n_units, keep)
        status, values, obj, bound, secs = budget.solve(
            model, probe_share, _hint(model, problem, place_of), until=stage_end, params=exact
        )
        if values is not None and obj >= persons_best - KEEP_TOLERANCE:
            current, descending = values, False
            lo = int(np.searchsorted(levels, _min_score(model, current) + KEEP_TOLERANCE)) - 1
        elif status == "infeasible" or (values is not None and np.floor(bound + KEEP_TOLERANCE) < persons_best):
            hi = proven = mid
        elif secs == 0.0:
            break  # no time left to begin a probe
        else:
            hi = mid  # undecided: not reached, not proven out of reach either
    _drop_below(model, -np.inf)
    persons_row.lower_bound = float(persons_best)
    reached = _min_score(model, current)
    bound = max(float(levels[proven - 1]) if proven > 0 else reached, reached)
    status = "optimal" if bound <= reached + KEEP_TOLERANCE else "feasible"
    secs = time.perf_counter() - start
    return StageReport("min_score", status, reached, bound, _gap(reached, bound), secs), current


def _finished(stages: list[StageReport]) -> bool:
    """Every stage proved its answer within the gap: a stage stopped by the wall clock
    returns what the solver had at that moment, which a repeat may not."""
    return all(s.status == "optimal" for s in stages)


def _empty_result(
    problem: AssignmentProblem,
    params: SolverParams,
    status: str,
    stages: list[StageReport],
    start: float,
    reproducible: bool | None = None,
    solver: str | None = None,
) -> AssignmentResult:
    """No assignment. reproducible (of the bound too) defaults to the exact path's rule:
    every stage finished; solver to the exact path's label."""
    if reproducible is None:
        reproducible = _finished(stages)
    return AssignmentResult(
        place_of_unit=np.full(problem.n_units, -1, dtype=np.int64),
        status=status,
        persons_placed=0,
        total_score=0.0,
        objective_value=float("nan"),
        best_bound=float("nan"),
        gap=float("inf"),
        persons_bound=float("nan"),
        min_unit_score=None,
        wall_seconds=time.perf_counter() - start,
        solver=solver or f"ortools-{params.backend}",
        params=params.as_dict(),
        stages=tuple(stages),
        reproducible=reproducible,
        bound_reproducible=reproducible,
    )
