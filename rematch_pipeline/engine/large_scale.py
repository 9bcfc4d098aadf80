"""Large rounds: price-and-restrict instead of one MIP over millions of pairs.

A national round has ~10,000 units x 401 places, i.e. millions of candidate pairs; the
simplex LP of the full model alone takes minutes. Per lexicographic stage we therefore

1. solve the LP relaxation on a restricted pair set with PDLP (first-order, loose
   tolerance: seconds, not minutes) and read its duals;
2. price every candidate pair with those duals (numpy, vectorised) and add the pairs
   that could improve the LP (column generation), until none or the budget is spent;
3. compute the Lagrangian bound of the FULL problem from the duals (valid for any
   nonnegative multipliers, so it is an honest upper bound whatever PDLP's accuracy);
4. solve the MIP with SCIP/CBC/... on a small set: pairs the LP uses, each unit's best
   few pairs by reduced profit, locked pairs and the previous stage's choice.

The reported bound is the Lagrangian bound over all pairs, so the gap is against the
full problem, not against the restricted one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

from rematch_pipeline.engine.heuristics import PlacementState, greedy, local_search, repair_min_intake
from rematch_pipeline.engine.assignment import (
    ROW_CAPACITY,
    ROW_MIN_HIGH,
    ROW_MIN_LOW,
    ROW_PERSONS,
    ROW_UNIT,
    AssignmentProblem,
    AssignmentResult,
    SolverParams,
    StageReport,
    _build_model,
    _gap,
    _Model,
    _overall,
    _reduce,
    _set_objective,
    _solve_direct,
    check_assignment,
    _solve_stage,
    _tie_break,
)

LOG = logging.getLogger(__name__)

# Starting set per unit: best pairs by score plus pairs at the least demanded places
# (so that maximising persons has room beyond everyone's favourites).
INITIAL_BY_SCORE: int = 4
INITIAL_BY_SLACK: int = 3
# Per place, pairs until the place could be filled this many times over.
PLACE_COVER: float = 2.0
# Pairs added per unit and column-generation round, and rounds at most.
ADD_PER_ROUND: int = 3
MAX_ROUNDS: int = 8
# Pairs per unit handed to the MIP besides those the LP uses.
MIP_BY_REDUCED_PROFIT: int = 3
# PDLP stopping tolerance: duals only need to be good, the bound is exact anyway.
PDLP_TOLERANCE: float = 1e-4
# Pairs per unplaced unit tried by the final insertion pass.
INSERT_CANDIDATES: int = 40
# The MIP polish runs only with at least this much time left.
MIP_MIN_SECONDS: float = 8.0
# LP values above this count as "used by the LP".
LP_USED: float = 1e-3


@dataclass
class _Pairs:
    """Usable pairs of the full problem, sorted by (unit, place)."""

    idx: np.ndarray  # indices into problem pairs
    unit: np.ndarray
    place: np.ndarray
    persons: np.ndarray
    score: np.ndarray
    unit_start: np.ndarray  # start offset of each unit that has pairs
    unit_of_start: np.ndarray  # the unit of each start
    locked: np.ndarray  # positions (into idx) of locked pairs


def _usable_pairs(problem: AssignmentProblem) -> _Pairs:
    idx = _reduce(problem)
    unit = problem.pair_unit[idx]
    place = problem.pair_place[idx]
    keys = unit * problem.n_places + place
    if keys.size and not (np.diff(keys) > 0).all():  # build_problem already sorts them
        order = np.argsort(keys, kind="stable")
        idx, unit, place = idx[order], unit[order], place[order]
    starts = np.flatnonzero(np.r_[True, np.diff(unit) != 0]) if unit.size else np.zeros(0, np.int64)
    keys = unit * problem.n_places + place
    locked_keys = np.array(sorted(u * problem.n_places + j for u, j in problem.locked), dtype=np.int64)
    locked = np.flatnonzero(np.isin(keys, locked_keys))
    return _Pairs(
        idx=idx,
        unit=unit,
        place=place,
        persons=problem.usage[unit, problem.persons_index].astype(np.float64),
        score=problem.pair_score[idx],
        unit_start=starts,
        unit_of_start=unit[starts] if unit.size else np.zeros(0, np.int64),
        locked=locked,
    )


def _top_k_per_unit(pairs: _Pairs, key: np.ndarray, k: int, among: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask: each unit's k pairs with the largest key (ties: earlier place)."""
    mask = np.zeros(pairs.unit.size, dtype=bool)
    cand = np.arange(pairs.unit.size) if among is None else np.flatnonzero(among)
    if cand.size == 0 or k <= 0:
        return mask
    order = cand[np.lexsort((pairs.place[cand], -key[cand], pairs.unit[cand]))]
    u = pairs.unit[order]
    first = np.searchsorted(u, u, side="left")
    rank = np.arange(u.size) - first
    mask[order[rank < k]] = True
    return mask


def _place_cover(problem: AssignmentProblem, pairs: _Pairs, key: np.ndarray, factor: float) -> np.ndarray:
    """Boolean mask: per place, its best pairs by key until they could fill every
    resource factor times over. So every place that is contested in the full problem
    is contested in the restricted one too, and its LP price is not spuriously 0."""
    order = np.lexsort((pairs.unit, -key, pairs.place))
    place = pairs.place[order]
    first = np.searchsorted(place, place, side="left")
    keep = np.zeros(order.size, dtype=bool)
    for r in range(len(problem.resources)):
        use = problem.usage[pairs.unit[order], r].astype(np.float64)
        cum = np.cumsum(use)
        before = cum - use - (cum[first] - use[first])  # usage of earlier pairs of the place
        target = factor * problem.capacity[place, r]
        keep |= (use > 0) & (before < target)
    mask = np.zeros(pairs.unit.size, dtype=bool)
    mask[order[keep]] = True
    return mask


def _subproblem(problem: AssignmentProblem, pairs: _Pairs, mask: np.ndarray) -> tuple[AssignmentProblem, np.ndarray]:
    """Problem restricted to the masked pairs; returns it and the positions used."""
    mask = mask.copy()
    mask[pairs.locked] = True
    pos = np.flatnonzero(mask)
    sub = AssignmentProblem(
        unit_ids=problem.unit_ids,
        place_ids=problem.place_ids,
        resources=problem.resources,
        usage=problem.usage,
        capacity=problem.capacity,
        min_intake=problem.min_intake,
        pair_unit=pairs.unit[pos],
        pair_place=pairs.place[pos],
        pair_score=pairs.score[pos],
        locked=problem.locked,
        exactly_one=problem.exactly_one,
        unit_households=problem.unit_households,
    )
    return sub, pos


def _solve_lp(model: _Model, objective: np.ndarray, time_limit: float, threads: int) -> tuple[np.ndarray, np.ndarray] | None:
    """LP relaxation with PDLP; returns (primal, duals) or None."""
    _set_objective(model, objective)
    lp = linear_solver_pb2.MPModelProto()
    lp.CopyFrom(model.proto)
    for v in lp.variable:
        v.is_integer = False
    del lp.solution_hint.var_index[:]
    del lp.solution_hint.var_value[:]
    # Free rows (both bounds infinite) carry no information and PDLP's answer omits
    # them; drop them and give them dual 0.
    kept = [i for i, c in enumerate(model.proto.constraint) if np.isfinite(c.lower_bound) or np.isfinite(c.upper_bound)]
    if len(kept) < len(lp.constraint):
        del lp.constraint[:]
        lp.constraint.extend(model.proto.constraint[i] for i in kept)
    solver = pywraplp.Solver.CreateSolver("PDLP")
    if solver is None or solver.LoadModelFromProto(lp):
        return None
    solver.SuppressOutput()
    solver.SetSolverSpecificParametersAsString(
        f"num_threads: {threads} termination_criteria {{ simple_optimality_criteria {{"
        f" eps_optimal_relative: {PDLP_TOLERANCE} eps_optimal_absolute: {PDLP_TOLERANCE} }} }}"
    )
    solver.SetTimeLimit(max(1, int(time_limit * 1000)))
    code = solver.Solve()
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return None
    response = linear_solver_pb2.MPSolutionResponse()
    solver.FillSolutionResponseProto(response)
    if len(response.dual_value) != len(kept) or len(response.variable_value) != len(lp.variable):
        return None
    duals = np.zeros(len(model.proto.constraint))
    duals[kept] = np.asarray(response.dual_value)
    return np.asarray(response.variable_value), duals


@dataclass
class _Prices:
    """Multipliers of the relaxed rows, arranged for pricing over all pairs."""

    place_resource: np.ndarray  # [n_places, n_resources] price of one unit of usage
    persons_row: float  # price on persons of the stage-keeping row
    y_profit: np.ndarray  # [n_places] Lagrangian profit of opening a min-intake place
    constant: float
    unit_dual: np.ndarray  # [n_units] dual of the unit rows (0 if absent)


def _prices(problem: AssignmentProblem, model: _Model, duals: np.ndarray) -> _Prices:
    """Map LP duals to multipliers. Signs follow pywraplp for maximisation: a binding
    <= row has a dual >= 0, a binding >= row a dual <= 0. A multiplier whose side has an
    infinite bound would make the bound meaningless and is set to 0 (still valid)."""
    rows = model.proto.constraint
    lb = np.array([c.lower_bound for c in rows])
    ub = np.array([c.upper_bound for c in rows])
    pi = np.where(duals > 0, np.where(np.isfinite(ub), duals, 0.0), np.where(np.isfinite(lb), duals, 0.0))
    kind = model.row_kind
    # Unit rows stay in the Lagrangian subproblem (each unit picks at most one pair):
    # only the relaxed rows contribute multiplier x bound.
    relaxed = kind != ROW_UNIT
    side = np.where(pi > 0, np.where(np.isfinite(ub), ub, 0.0), np.where(np.isfinite(lb), lb, 0.0))
    constant = float(np.sum((pi * side)[relaxed]))
    price = np.zeros_like(problem.capacity, dtype=np.float64)
    cap_rows = np.flatnonzero(np.isin(kind, (ROW_CAPACITY, ROW_MIN_HIGH, ROW_MIN_LOW)))
    np.add.at(price, (model.row_place[cap_rows], model.row_resource[cap_rows]), pi[cap_rows])
    y_profit = np.zeros(problem.n_places)
    cap_p = problem.capacity[:, problem.persons_index].astype(np.float64)
    for k in np.flatnonzero(kind == ROW_MIN_HIGH).tolist():
        y_profit[model.row_place[k]] += pi[k] * cap_p[model.row_place[k]]
    for k in np.flatnonzero(kind == ROW_MIN_LOW).tolist():
        y_profit[model.row_place[k]] += pi[k] * problem.min_intake[model.row_place[k]]
    persons_rows = np.flatnonzero(kind == ROW_PERSONS)
    unit_dual = np.zeros(problem.n_units)
    unit_rows = np.flatnonzero(kind == ROW_UNIT)
    unit_dual[model.row_unit[unit_rows]] = duals[unit_rows]
    return _Prices(price, float(pi[persons_rows].sum()), y_profit, constant, unit_dual)


def _reduced_profit(problem: AssignmentProblem, pairs: _Pairs, objective: np.ndarray, prices: _Prices) -> np.ndarray:
    rp = objective - prices.persons_row * pairs.persons
    for r in range(len(problem.resources)):
        rp -= problem.usage[pairs.unit, r] * prices.place_resource[pairs.place, r]
    return rp


def lagrangian_bound(problem: AssignmentProblem, pairs: _Pairs, rp: np.ndarray, prices: _Prices) -> float:
    """Upper bound of the full problem: each unit takes its best reduced profit (or
    nothing), each min-intake place opens if profitable, plus the multipliers' constant."""
    if pairs.unit.size:
        best = np.maximum.reduceat(rp, pairs.unit_start)
    else:
        best = np.zeros(0)
    if not problem.exactly_one:
        best = np.maximum(best, 0.0)
    if pairs.locked.size:
        # A locked unit has no choice: its locked pair's reduced profit counts.
        where = np.searchsorted(pairs.unit_of_start, pairs.unit[pairs.locked])
        best[where] = rp[pairs.locked]
    return float(best.sum() + np.maximum(prices.y_profit, 0.0).sum() + prices.constant)


@dataclass
class _StageLp:
    mask: np.ndarray  # pairs in the restricted set
    used: np.ndarray  # pairs the last LP uses
    value: np.ndarray  # LP value per pair (0 outside the last restricted set)
    rp: np.ndarray  # reduced profit under the last duals
    bound: float
    rounds: int


def _column_generation(
    problem: AssignmentProblem,
    pairs: _Pairs,
    mask: np.ndarray,
    objective: np.ndarray,
    keep_persons: float | None,
    deadline: float,
    params: SolverParams,
) -> _StageLp:
    best_bound = float("inf")
    used = np.zeros(pairs.unit.size, dtype=bool)
    value = np.zeros(pairs.unit.size)
    rp = objective.copy()
    rounds = 0
    last_lp_seconds = 0.0
    scale = max(1.0, float(np.abs(objective).max(initial=0.0)))
    while rounds < MAX_ROUNDS:
        left = deadline - time.perf_counter()
        if left <= 0.5 or left < 0.8 * last_lp_seconds:
            break  # an LP that cannot finish in time would only waste the budget
        sub, pos = _subproblem(problem, pairs, mask)
        model = _build_model(sub, maximin=False)
        if keep_persons is not None:
            model.proto.constraint[model.persons_row].lower_bound = keep_persons
        t = time.perf_counter()
        lp = _solve_lp(model, objective[pos][model.pair_idx], left, params.threads)
        rounds += 1
        last_lp_seconds = time.perf_counter() - t
        if lp is None:
            LOG.debug("column generation round %d: LP failed after %.1f s", rounds, time.perf_counter() - t)
            break
        values, duals = lp
        prices = _prices(problem, model, duals)
        rp = _reduced_profit(problem, pairs, objective, prices)
        best_bound = min(best_bound, lagrangian_bound(problem, pairs, rp, prices))
        value = np.zeros(pairs.unit.size)
        value[pos[model.pair_idx]] = values[: model.n_x]
        used = value > LP_USED
        improving = (rp - prices.unit_dual[pairs.unit] > 1e-6 * scale) & ~mask
        LOG.debug(
            "column generation round %d: %d pairs, LP %.1f s, LP value %.2f, bound %.2f, %d improving",
            rounds, pos.size, time.perf_counter() - t, float(objective[pos][model.pair_idx] @ values[: model.n_x]),
            best_bound, int(improving.sum()),
        )
        if not improving.any():
            break
        mask = mask | _top_k_per_unit(pairs, rp, ADD_PER_ROUND, among=improving)
    return _StageLp(mask, used, value, rp, best_bound, rounds)


def _hint(model: _Model, pos: np.ndarray, chosen: np.ndarray, problem: AssignmentProblem) -> np.ndarray:
    """Variable values of a model for the chosen pair positions (x, y; T stays 0)."""
    hint = np.zeros(len(model.proto.variable))
    x = np.isin(pos[model.pair_idx], chosen)
    hint[: model.n_x] = x
    if model.y_place.size:
        load = np.zeros(problem.n_places)
        np.add.at(load, model.place[x], model.persons[x])
        hint[model.n_x : model.n_x + model.y_place.size] = load[model.y_place] > 0
    return hint


def _mip(
    problem: AssignmentProblem,
    pairs: _Pairs,
    mask: np.ndarray,
    fix: np.ndarray,
    coefs: np.ndarray,
    keep_persons: float | None,
    previous: np.ndarray | None,
    params: SolverParams,
    time_limit: float,
) -> tuple[str, np.ndarray | None, float]:
    """MIP on the masked pairs with the fix positions locked; returns (status, chosen
    pair positions, seconds). If the locks make it infeasible, retries without them."""
    if fix.size:
        locked = sorted({*problem.locked, *zip(pairs.unit[fix].tolist(), pairs.place[fix].tolist(), strict=True)})
        if len({u for u, _ in locked}) == len(locked):  # never two locks for one unit
            fixed = AssignmentProblem(
                unit_ids=problem.unit_ids, place_ids=problem.place_ids, resources=problem.resources,
                usage=problem.usage, capacity=problem.capacity, min_intake=problem.min_intake,
                pair_unit=problem.pair_unit, pair_place=problem.pair_place, pair_score=problem.pair_score,
                locked=locked, exactly_one=problem.exactly_one, unit_households=problem.unit_households,
            )
            fixed_pairs = _Pairs(**{**pairs.__dict__, "locked": np.union1d(pairs.locked, fix)})
            start = time.perf_counter()
            status, chosen, secs = _mip(
                fixed, fixed_pairs, mask | np.isin(np.arange(mask.size), fix), np.zeros(0, np.int64),
                coefs, keep_persons, previous, params, time_limit * 0.8,
            )
            if chosen is not None:
                return status, chosen, secs
            time_limit = max(0.5, time_limit - (time.perf_counter() - start))
    sub, pos = _subproblem(problem, pairs, mask)
    model = _build_model(sub, maximin=False)
    if keep_persons is not None:
        model.proto.constraint[model.persons_row].lower_bound = keep_persons
    obj = coefs[pos][model.pair_idx]
    if keep_persons is not None and params.tie_break:
        obj = obj + _tie_break(model)
    _set_objective(model, obj)
    hint = _hint(model, pos, previous, problem) if previous is not None else None
    status, values, obj, bound, secs = _solve_stage(model, params, time_limit, hint)
    LOG.debug(
        "MIP: %d variables (%d locked), %s in %.1f s of %.1f, objective %.2f, bound %.2f",
        model.n_x, model.locked_vars.size, status, secs, time_limit, obj, bound,
    )
    if values is None:
        return status, None, secs
    x = np.round(values[: model.n_x]) > 0.5
    return status, pos[model.pair_idx[x]], secs


def _priority(pairs: _Pairs, among: np.ndarray, *keys: np.ndarray) -> list[int]:
    """Positions of the masked pairs ordered by the keys (descending), then unit, place."""
    cand = np.flatnonzero(among)
    order = np.lexsort((pairs.place[cand], pairs.unit[cand], *(-k[cand] for k in reversed(keys))))
    return cand[order].tolist()


def _pairs_by_unit(pairs: _Pairs, among: np.ndarray, value: np.ndarray, n_units: int) -> list[list[int]]:
    """For each unit, its masked pair positions by descending value."""
    out: list[list[int]] = [[] for _ in range(n_units)]
    order = _priority(pairs, among, value)
    for u, k in zip(pairs.unit[order].tolist(), order, strict=True):
        out[u].append(k)
    return out


def _heuristic(
    problem: AssignmentProblem,
    pairs: _Pairs,
    lp: _StageLp,
    value: np.ndarray,
    start_from: np.ndarray | None,
    deadline: float,
) -> PlacementState:
    """Greedy from the LP (most certain pairs first), min-intake repair, then local
    search over the restricted set and, for units still unplaced, over all pairs."""
    state = PlacementState(problem, pairs.unit, pairs.place)
    for k in pairs.locked.tolist():
        state.add(k)
    if start_from is not None:
        for k in start_from.tolist():
            if state.pair_of_unit[pairs.unit[k]] < 0:
                state.add(k)
    priority = _priority(pairs, lp.mask, lp.value, lp.rp)
    greedy(state, priority)
    repair_min_intake(state, priority)
    local_search(state, _pairs_by_unit(pairs, lp.mask, value, problem.n_units), value, deadline)
    unplaced = np.array([u for u, k in enumerate(state.pair_of_unit) if k < 0], dtype=np.int64)
    if unplaced.size and time.perf_counter() < deadline:
        # Insertion over all pairs, but only each unplaced unit's best few: the Python
        # loop must stay small even with millions of pairs.
        rest = _top_k_per_unit(pairs, value, INSERT_CANDIDATES, among=np.isin(pairs.unit, unplaced))
        local_search(state, _pairs_by_unit(pairs, rest, value, problem.n_units), value, deadline, passes=1)
    return state


def _polish(
    problem: AssignmentProblem,
    pairs: _Pairs,
    lp: _StageLp,
    chosen: np.ndarray,
    objective: np.ndarray,
    keep_persons: float | None,
    params: SolverParams,
    deadline: float,
) -> np.ndarray:
    """Residual MIP: lock the pairs where heuristic and LP agree (LP value >= 0.5, no
    minimum intake at the place) and let the MIP re-decide all other units over their
    LP-relevant pairs, hinted with the heuristic answer. Returns the better answer."""
    left = deadline - time.perf_counter()
    if left < 1.0:
        return chosen
    agree = chosen[(lp.value[chosen] >= 0.5) & (problem.min_intake[pairs.place[chosen]] == 0)]
    mask = lp.used | _top_k_per_unit(pairs, lp.rp, MIP_BY_REDUCED_PROFIT, among=lp.mask)
    mask[chosen] = True
    status, better, _ = _mip(problem, pairs, mask, agree, objective, keep_persons, chosen, params, left)
    if better is not None and objective[better].sum() > objective[chosen].sum() + 1e-9:
        return better
    return chosen


def solve_large(problem: AssignmentProblem, params: SolverParams) -> AssignmentResult:
    """Lexicographic solve (persons, then score) by price-and-restrict; see module doc.

    Stage 1 takes the LP-guided heuristic's answer (no MIP: at this size SCIP does not
    finish its root LP in the time available); stage 2 adds a MIP polish when at least
    MIP_MIN_SECONDS remain. Bounds are Lagrangian bounds over all pairs."""
    start = time.perf_counter()
    # Keep a margin for building the answer and its check after the last step.
    deadline = start + params.time_limit_seconds - min(3.0, 0.05 * params.time_limit_seconds)
    pairs = _usable_pairs(problem)
    stages: list[StageReport] = []

    # Initial set: best by score, the least demanded places, and per place enough
    # pairs to fill it twice (so contested places get a price from the first LP).
    demand = np.bincount(pairs.place, weights=pairs.persons, minlength=problem.n_places)
    slack = problem.capacity[:, problem.persons_index] / np.maximum(demand, 1.0)
    mask = (
        _top_k_per_unit(pairs, pairs.score, INITIAL_BY_SCORE)
        | _top_k_per_unit(pairs, slack[pairs.place], INITIAL_BY_SLACK)
        | _place_cover(problem, pairs, pairs.score, PLACE_COVER)
    )

    def until(share: float) -> float:
        return time.perf_counter() + max(0.5, (deadline - time.perf_counter()) * share)

    # Stage 1: persons.
    t0 = time.perf_counter()
    lp1 = _column_generation(problem, pairs, mask, pairs.persons, None, until(0.4), params)
    chosen = _heuristic(problem, pairs, lp1, pairs.persons, None, until(0.1)).chosen()
    chosen = _polish(problem, pairs, lp1, chosen, pairs.persons, None, params, until(0.25))
    persons = float(pairs.persons[chosen].sum())
    persons_bound = float(np.floor(lp1.bound + 1e-6))
    # Proven only when the bound over all pairs closes the gap.
    s1 = "optimal" if persons >= persons_bound else "feasible"
    stages.append(StageReport("persons", s1, persons, persons_bound, _gap(persons, persons_bound), time.perf_counter() - t0))

    # Stage 2: score with persons kept.
    t0 = time.perf_counter()
    chosen_mask = np.zeros(pairs.unit.size, dtype=bool)
    chosen_mask[chosen] = True
    mask2 = lp1.mask | chosen_mask | _top_k_per_unit(pairs, pairs.score, INITIAL_BY_SCORE)
    lp2 = _column_generation(problem, pairs, mask2, pairs.score, persons, until(0.45), params)
    # Two starts: the LP-guided greedy (if it keeps the persons), and stage 1's answer.
    candidates = []
    fresh = _heuristic(problem, pairs, lp2, pairs.score, None, until(0.25)).chosen()
    if pairs.persons[fresh].sum() >= persons:
        candidates.append(fresh)
    candidates.append(_heuristic(problem, pairs, lp2, pairs.score, chosen, until(0.3)).chosen())
    chosen = max(candidates, key=lambda c: float(pairs.score[c].sum()))
    status2 = "feasible"
    if deadline - time.perf_counter() > MIP_MIN_SECONDS:
        mip_mask2 = lp2.used | _top_k_per_unit(pairs, lp2.rp, MIP_BY_REDUCED_PROFIT, among=lp2.mask)
        mip_mask2[chosen] = True
        status2, better, _ = _mip(
            problem, pairs, mip_mask2, np.zeros(0, np.int64), pairs.score, persons, chosen, params,
            max(0.5, deadline - time.perf_counter()),
        )
        if better is not None and pairs.score[better].sum() > pairs.score[chosen].sum():
            chosen = better
    total = float(pairs.score[chosen].sum())
    gap = _gap(total, lp2.bound)
    s2 = "optimal" if gap <= params.relative_gap else "feasible"
    stages.append(StageReport("score", s2, total, lp2.bound, gap, time.perf_counter() - t0))

    place_of = np.full(problem.n_units, -1, dtype=np.int64)
    place_of[pairs.unit[chosen]] = pairs.place[chosen]
    if check_assignment(problem, place_of):
        # Only locks the heuristics cannot honour get here (e.g. locked units that
        # overfill a place): let the exact model on a reduced set decide and report.
        LOG.debug("heuristic answer rejected by check_assignment; exact model on reduced pairs")
        fallback = _solve_direct(reduced_problem(problem, params.max_model_pairs), params)
        return dataclasses.replace(fallback, bound_scope="reduced_pairs")
    return AssignmentResult(
        place_of_unit=place_of,
        status=_overall([s.status for s in stages]),
        persons_placed=int(problem.usage[place_of >= 0, problem.persons_index].sum()),
        total_score=float(np.round(total, 6)),
        objective_value=total,
        best_bound=lp2.bound,
        gap=gap,
        persons_bound=persons_bound,
        min_unit_score=None,
        wall_seconds=time.perf_counter() - start,
        solver=f"ortools-{params.backend}+pdlp",
        params=params.as_dict(),
        stages=tuple(stages),
    )


def reduced_problem(problem: AssignmentProblem, max_pairs: int) -> AssignmentProblem:
    """The problem on each unit's best pairs by score plus per-place cover, about
    max_pairs pairs in all (locked pairs always kept). Used for maximin at scale."""
    pairs = _usable_pairs(problem)
    k = max(1, max_pairs // max(1, np.unique(pairs.unit).size) - 2)
    mask = _top_k_per_unit(pairs, pairs.score, k) | _place_cover(problem, pairs, pairs.score, 1.0)
    sub, _ = _subproblem(problem, pairs, mask)
    return sub
