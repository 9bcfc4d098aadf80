"""Generalized assignment (GAP) through the general assignment model.

A GAP instance (minimise sum cost[i, j] over jobs j each put on exactly one agent i,
agent i's load sum use[i, j] <= capacity[i]) is an AssignmentProblem: jobs are units
(exactly_one=True), agents are places, the agent load is a resource with per-pair usage
(pair_usage) and pair_score = -cost; every job uses 1 "persons" so persons counts jobs.

solve_gap_problem() minimises -pair_score on such a problem (any exactly-one problem
whose model has one binding capacity resource; others go straight to stage 5) in
stages, all on the engine's own model (model._build_model):

1. LP relaxation (GLOP): a first bound and multipliers.
2. Lagrangian relaxation of the exactly-one rows: one 0-1 knapsack per agent, solved
   exactly by dynamic programming. Subgradient ascent gives a proven lower bound at
   least as strong as the LP; its knapsack solutions, repaired and improved by local
   search, give incumbents.
3. Tabu search (shift and swap moves, adaptive penalty on overloads) on the incumbent.
4. Windows: for a target T, the bound with pair (i, j) forced in is exact knapsack
   arithmetic; pairs whose forced bound reaches T are removed. Every assignment
   cheaper than T survives in the reduced model, so a solver's verdict on it holds for
   the whole problem below T. The first window is just above the Lagrangian bound;
   it widens when empty, and falls back to "below the incumbent" when unresolved.
5. Each window goes to HiGHS (through MathOpt, which reports its dual bound; the
   objective <= T - 1 as a row) and SCIP (the incumbent as hint) side by side, one
   process and thread each; the first proof stops the other. Once a window has run
   out of time unresolved, a larger next window (everything below the incumbent) is
   not proven either: there HiGHS' process runs a large-neighbourhood search instead
   (all jobs of a few related agents re-decided exactly by CP-SAT, _agent_neighbourhoods).

The objective returned is the recomputed cost of an assignment that passed
check_assignment; the bound is a proven lower bound on the optimum. Time limits are
wall clock, so (unlike assignment.solve with fixed parameters) results may vary with
machine load.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection, wait

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp
from ortools.math_opt.python import mathopt
from ortools.sat.python import cp_model

from rematch_pipeline.engine.lp import to_mathopt
from rematch_pipeline.engine.model import ROW_CAPACITY, ROW_PERSONS, ROW_UNIT, _Model, _build_model, _place_of
from rematch_pipeline.engine.problem import AssignmentProblem, PairLookup, check_assignment

LOAD = "load"
# Knapsack dynamic programmes are O(items * capacity): above this capacity the
# Lagrangian stages are skipped and the model goes to the MIP solvers directly.
MAX_DP_CAPACITY = 200_000


# --------------------------------------------------------------------------- problem


def gap_problem(cost: np.ndarray, use: np.ndarray, capacity: np.ndarray) -> AssignmentProblem:
    """The GAP instance (cost[i, j], use[i, j] of job j on agent i, capacity[i]) as an
    AssignmentProblem: jobs = units with exactly_one, agents = places, resources
    ("persons", "load") with per-pair usage (1 person per job, load use[i, j]),
    pair_score = -cost. Every (job, agent) pair is a candidate."""
    cost = np.asarray(cost)
    use = np.asarray(use, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    m, n = cost.shape
    if use.shape != (m, n) or capacity.shape != (m,):
        raise ValueError(f"cost {cost.shape}, use {use.shape} and capacity {capacity.shape} do not match")
    jobs, agents = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")  # pair order: job, then agent
    pair_unit, pair_place = jobs.ravel(), agents.ravel()
    load = use[pair_place, pair_unit]
    return AssignmentProblem(
        unit_ids=[f"job{j}" for j in range(n)],
        place_ids=[f"agent{i}" for i in range(m)],
        resources=["persons", LOAD],
        # Unit usage (used only by code that ignores pair_usage): the largest per-pair load.
        usage=np.stack([np.ones(n, dtype=np.int64), use.max(axis=0) if m else np.zeros(n, np.int64)], axis=1),
        capacity=np.stack([np.full(m, n, dtype=np.int64), capacity], axis=1),
        min_intake=np.zeros(m, dtype=np.int64),
        pair_unit=pair_unit,
        pair_place=pair_place,
        pair_score=-cost[pair_place, pair_unit].astype(np.float64),
        exactly_one=True,
        pair_usage=np.stack([np.ones(pair_unit.size, dtype=np.int64), load], axis=1),
    )


@dataclass
class GapResult:
    """place_of_unit (-1 where no solution), objective = total cost (None without a
    solution), bound = proven lower bound on the optimal cost, proven = optimal."""

    place_of_unit: np.ndarray
    objective: int | float | None
    bound: float | None
    proven: bool
    wall_seconds: float
    log: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- dense view


@dataclass
class _Dense:
    """The model's variables as [agents, jobs] matrices (cost inf where no variable)."""

    cost: np.ndarray  # float, inf = no variable
    use: np.ndarray  # int64 load of the binding resource
    cap: np.ndarray  # int64
    var: np.ndarray  # variable index or -1
    integral: bool  # all costs integers: bounds may be rounded up


def _dense(problem: AssignmentProblem, model: _Model) -> tuple[_Dense | None, str]:
    """Dense GAP view of the model, or None (with the reason) when it is not a GAP with
    one binding resource that the knapsack programmes can handle."""
    m, n = problem.n_places, problem.n_units
    if not problem.exactly_one:
        return None, "not exactly-one"
    if problem.locked:
        return None, "locked pairs"
    if set(model.row_kind.tolist()) - {ROW_UNIT, ROW_CAPACITY, ROW_PERSONS}:
        return None, "minimum intakes"
    binding = {int(r) for r in model.row_resource[model.row_kind == ROW_CAPACITY].tolist()}
    if len(binding) > 1:
        return None, "more than one binding resource"
    r = binding.pop() if binding else problem.persons_index
    cap = problem.capacity[:, r].astype(np.int64)
    if cap.size and cap.max() > MAX_DP_CAPACITY:
        return None, "capacity too large for the knapsack programme"
    cost = np.full((m, n), np.inf)
    use = np.zeros((m, n), dtype=np.int64)
    var = np.full((m, n), -1, dtype=np.int64)
    cost[model.place, model.unit] = -model.score
    use[model.place, model.unit] = problem.usage_of_pairs(model.pair_idx, r)
    var[model.place, model.unit] = np.arange(model.n_x)
    finite = cost[np.isfinite(cost)]
    return _Dense(cost, use, cap, var, bool(np.all(finite == np.round(finite)))), ""


# --------------------------------------------------------------------------- knapsack


def _knapsack(profit: np.ndarray, weight: np.ndarray, cap: int, items: np.ndarray) -> tuple[float, np.ndarray]:
    """Max sum profit over a subset of items with sum weight <= cap (exact DP)."""
    f = np.zeros(cap + 1)
    take = np.zeros((items.size, cap + 1), dtype=bool)
    for k, it in enumerate(items.tolist()):
        w = int(weight[it])
        cand = f[: cap + 1 - w] + profit[it]
        better = cand > f[w:]
        take[k, w:] = better
        f[w:] = np.where(better, cand, f[w:])
    chosen = []
    c = cap
    for k in range(items.size - 1, -1, -1):
        if take[k, c]:
            chosen.append(items[k])
            c -= int(weight[items[k]])
    return float(f[cap]), np.asarray(chosen, dtype=np.int64)


def _lagrangian(d: _Dense, u: np.ndarray) -> tuple[float, np.ndarray]:
    """L(u) = sum u + sum_i min over agent i's knapsack of sum (cost - u) x, and the
    [agents, jobs] 0/1 solution of the knapsacks."""
    m, n = d.cost.shape
    value = float(u.sum())
    x = np.zeros((m, n), dtype=bool)
    for i in range(m):
        profit = u - d.cost[i]
        items = np.flatnonzero((profit > 1e-12) & (d.use[i] <= d.cap[i]))
        v, chosen = _knapsack(profit, d.use[i], int(d.cap[i]), items)
        value -= v
        x[i, chosen] = True
    return value, x


def _fixing_deltas(d: _Dense, u: np.ndarray) -> np.ndarray:
    """How much L(u) rises when pair (i, j) is forced into agent i's knapsack: exact,
    from prefix and suffix DP tables (inf where the pair cannot be used)."""
    m, n = d.cost.shape
    up = np.full((m, n), np.inf)
    for i in range(m):
        cap = int(d.cap[i])
        profit = u - d.cost[i]
        w = d.use[i]
        fits = np.isfinite(d.cost[i]) & (w <= cap)
        items = np.flatnonzero((profit > 1e-12) & fits)
        pre = np.zeros((items.size + 1, cap + 1))  # pre[k]: best over the first k items
        for k, it in enumerate(items.tolist()):
            wk = int(w[it])
            pre[k + 1] = pre[k]
            pre[k + 1, wk:] = np.maximum(pre[k, wk:], pre[k, : cap + 1 - wk] + profit[it])
        suf = np.zeros((items.size + 1, cap + 1))  # suf[k]: best over items k..end
        for k in range(items.size - 1, -1, -1):
            wk = int(w[items[k]])
            suf[k] = suf[k + 1]
            suf[k, wk:] = np.maximum(suf[k + 1, wk:], suf[k + 1, : cap + 1 - wk] + profit[items[k]])
        best = pre[-1, cap]
        out = fits.copy()
        out[items] = False
        # An item outside the knapsack solution set: the others keep cap - w.
        up[i, out] = best - profit[out] - pre[-1][cap - w[out]]
        for k, it in enumerate(items.tolist()):
            c = cap - int(w[it])
            without = np.max(pre[k, : c + 1] + suf[k + 1, c::-1])
            up[i, it] = best - profit[it] - without
    return np.maximum(up, 0.0)


# --------------------------------------------------------------------------- heuristics


def _cost_of(d: _Dense, assign: np.ndarray) -> float:
    return float(d.cost[assign, np.arange(assign.size)].sum())


def _feasible(d: _Dense, assign: np.ndarray) -> bool:
    n = assign.size
    if (assign < 0).any() or not np.isfinite(d.cost[assign, np.arange(n)]).all():
        return False
    load = np.bincount(assign, weights=d.use[assign, np.arange(n)], minlength=d.cap.size)
    return bool((load <= d.cap + 1e-9).all())


def _local_search(d: _Dense, assign: np.ndarray, deadline: float) -> np.ndarray:
    """Best-improvement shift and swap moves until none improves (feasible input)."""
    m, n = d.cost.shape
    jobs = np.arange(n)
    assign = assign.copy()
    load = np.bincount(assign, weights=d.use[assign, jobs], minlength=m).astype(np.int64)
    while time.perf_counter() < deadline:
        cur = d.cost[assign, jobs]
        own = d.use[assign, jobs]
        slack = d.cap - load
        # Shift j to agent i.
        shift = np.where(d.use <= slack[:, None], d.cost - cur[None, :], np.inf)
        shift[assign, jobs] = np.inf
        k = int(np.argmin(shift))
        best_shift = shift.flat[k]
        # Swap j1 (agent a1) with j2 (agent a2): cx[j1, j2] = cost of j2 at a1.
        cx = d.cost[assign]  # [n, n]
        ux = d.use[assign]
        ok = (ux - own[:, None] <= slack[assign][:, None]) & (ux.T - own[None, :] <= slack[assign][None, :])
        ok &= assign[:, None] != assign[None, :]
        swap = np.where(ok, cx + cx.T - cur[:, None] - cur[None, :], np.inf)
        s = int(np.argmin(swap))
        best_swap = swap.flat[s]
        if min(best_shift, best_swap) >= -1e-9:
            break
        if best_shift <= best_swap:
            i, j = divmod(k, n)
            load[assign[j]] -= d.use[assign[j], j]
            load[i] += d.use[i, j]
            assign[j] = i
        else:
            j1, j2 = divmod(s, n)
            a1, a2 = assign[j1], assign[j2]
            load[a1] += d.use[a1, j2] - d.use[a1, j1]
            load[a2] += d.use[a2, j1] - d.use[a2, j2]
            assign[j1], assign[j2] = a2, a1
    return assign


def _repair(d: _Dense, x: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    """Feasible assignment from knapsack solutions x: duplicates keep their cheapest
    agent, missing jobs go, largest regret first, to the cheapest agent with room
    (weight is the desirability used: cost or cost-like). None if some job fits nowhere."""
    m, n = d.cost.shape
    jobs = np.arange(n)
    masked = np.where(x, weight, np.inf)
    assign = np.where(x.any(axis=0), np.argmin(masked, axis=0), -1)
    placed = assign >= 0
    load = np.bincount(assign[placed], weights=d.use[assign[placed], jobs[placed]], minlength=m)
    missing = list(np.flatnonzero(~placed))
    while missing:
        slack = d.cap - load
        cand = np.where(d.use[:, missing] <= slack[:, None], weight[:, missing], np.inf)  # [m, k]
        srt = np.sort(cand, axis=0)
        if not np.isfinite(srt[0]).all():
            return None
        regret = (srt[1] - srt[0]) if m > 1 else np.zeros(len(missing))
        regret = np.where(np.isfinite(regret), regret, np.inf)
        pick = int(np.argmax(regret))
        j = missing.pop(pick)
        i = int(np.argmin(cand[:, pick]))
        assign[j] = i
        load[i] += d.use[i, j]
    return assign


def _construct(d: _Dense) -> np.ndarray | None:
    """Regret heuristics (Martello-Toth style) with a few desirabilities."""
    best: np.ndarray | None = None
    empty = np.zeros(d.cost.shape, dtype=bool)
    usable = np.isfinite(d.cost)
    cost = np.where(usable, d.cost, 0.0)
    for weight in (cost, d.use.astype(float), d.use / np.maximum(d.cap, 1)[:, None], cost * d.use):
        w = np.where(usable, weight, np.inf)
        a = _repair(d, empty, w)
        if a is not None and (best is None or _cost_of(d, a) < _cost_of(d, best)):
            best = a
    return best


def _tabu(d: _Dense, assign: np.ndarray, until: float, max_iter: int, seed: int = 0) -> np.ndarray:
    """Tabu search over shift and swap moves with an adaptive penalty on overloads
    (strategic oscillation); restarts from the best feasible assignment when stuck.
    Returns the best feasible assignment seen (at least as good as assign)."""
    m, n = d.cost.shape
    jobs = np.arange(n)
    rng = np.random.default_rng(seed)
    ok = np.isfinite(d.cost) & (d.use <= d.cap[:, None])
    c = np.where(ok, d.cost, 0.0)
    a_use = d.use
    cap = d.cap
    cur = assign.copy()
    load = np.bincount(cur, weights=a_use[cur, jobs], minlength=m).astype(np.int64)
    best, best_cost = cur.copy(), float(c[cur, jobs].sum())
    spread = np.diff(np.sort(np.where(ok, d.cost, np.nan), axis=0), axis=0)
    alpha = float(np.nanmedian(spread)) / max(1.0, float(np.median(a_use))) + 1e-3 if np.isfinite(spread).any() else 1.0
    tabu_until = np.zeros((m, n), dtype=np.int64)
    last_improvement = 0
    restart = 1500
    for it in range(1, max_iter + 1):
        if it % 64 == 0 and time.perf_counter() > until:
            break
        cur_c = c[cur, jobs]
        own = a_use[cur, jobs]
        over = np.maximum(load - cap, 0)
        total_over = int(over.sum())
        cost_now = float(cur_c.sum())
        # Shift job j to agent i.
        d_pen = (np.maximum(load[:, None] + a_use - cap[:, None], 0) - over[:, None]) + (
            np.maximum(load[cur] - own - cap[cur], 0) - over[cur]
        )[None, :]
        d_cost = c - cur_c[None, :]
        shift = d_cost + alpha * d_pen
        shift[~ok] = np.inf
        shift[cur, jobs] = np.inf
        aspire = (total_over + d_pen == 0) & (cost_now + d_cost < best_cost - 1e-9)
        shift[(tabu_until > it) & ~aspire] = np.inf
        k = int(np.argmin(shift))
        # Swap j1 (agent cur[j1]) with j2 (agent cur[j2]).
        okx = ok[cur]
        pen1 = np.maximum((load[cur] - own)[:, None] + a_use[cur] - cap[cur][:, None], 0) - over[cur][:, None]
        d_pen2 = pen1 + pen1.T
        cx = c[cur]
        d_cost2 = cx + cx.T - cur_c[:, None] - cur_c[None, :]
        swap = d_cost2 + alpha * d_pen2
        swap[(cur[:, None] == cur[None, :]) | ~okx | ~okx.T] = np.inf
        tb = tabu_until[cur] > it
        aspire2 = (total_over + d_pen2 == 0) & (cost_now + d_cost2 < best_cost - 1e-9)
        swap[(tb | tb.T) & ~aspire2] = np.inf
        s2 = int(np.argmin(swap))
        if not (np.isfinite(shift.flat[k]) or np.isfinite(swap.flat[s2])):
            tabu_until[:] = 0
            continue
        tenure = 5 + int(rng.integers(0, 10))
        if shift.flat[k] <= swap.flat[s2]:
            i, j = divmod(k, n)
            a = cur[j]
            load[a] -= a_use[a, j]
            load[i] += a_use[i, j]
            cur[j] = i
            tabu_until[a, j] = it + tenure
        else:
            j1, j2 = divmod(s2, n)
            a1, a2 = cur[j1], cur[j2]
            load[a1] += a_use[a1, j2] - a_use[a1, j1]
            load[a2] += a_use[a2, j1] - a_use[a2, j2]
            cur[j1], cur[j2] = a2, a1
            tabu_until[a1, j1] = it + tenure
            tabu_until[a2, j2] = it + tenure
        if (load <= cap).all():
            cost = float(c[cur, jobs].sum())
            if cost < best_cost - 1e-9:
                best, best_cost, last_improvement = cur.copy(), cost, it
            alpha /= 1.02
        else:
            alpha *= 1.02
        alpha = min(max(alpha, 1e-6), 1e9)
        if it - last_improvement >= restart and it % restart == 0:
            cur = best.copy()
            load = np.bincount(cur, weights=a_use[cur, jobs], minlength=m).astype(np.int64)
            tabu_until[:] = 0
    return best


def _reassign_agents(d: _Dense, assign: np.ndarray, agents: np.ndarray, time_limit: float) -> tuple[np.ndarray | None, bool]:
    """Re-decide every job of the given agents among those agents, exactly (CP-SAT, one
    worker, hinted with assign): the other agents' loads do not change. Returns the new
    assignment (None without one) and whether CP-SAT proved it optimal."""
    jobs = np.flatnonzero(np.isin(assign, agents))
    model = cp_model.CpModel()
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    for j in jobs.tolist():
        usable = [int(i) for i in agents if np.isfinite(d.cost[i, j]) and d.use[i, j] <= d.cap[i]]
        for i in usable:
            x[i, j] = model.new_bool_var("")
        model.add_exactly_one(x[i, j] for i in usable)
    for i in agents.tolist():
        load = [int(d.use[i, j]) * x[i, j] for j in jobs.tolist() if (i, j) in x]
        if load:
            model.add(sum(load) <= int(d.cap[i]))
    model.minimize(sum(int(d.cost[i, j]) * v for (i, j), v in x.items()))
    for (i, j), v in x.items():
        model.add_hint(v, int(assign[j] == i))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.max_time_in_seconds = time_limit
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, False
    out = assign.copy()
    for (i, j), v in x.items():
        if solver.value(v):
            out[j] = i
    return out, status == cp_model.OPTIMAL


def _agent_neighbourhoods(d: _Dense, assign: np.ndarray, until: float, seed: int = 0) -> np.ndarray:
    """Large-neighbourhood search for integral GAP costs: repeatedly re-decide all jobs of
    a few related agents exactly (_reassign_agents). Agents are related when the jobs of
    one are cheap at the other; the neighbourhood grows while its solves prove optimal
    quickly and shrinks when they run out of time. Returns the best feasible assignment
    (at least as good as assign)."""
    m = d.cost.shape[0]
    rng = np.random.default_rng(seed)
    cost = np.where(np.isfinite(d.cost), d.cost, np.nan)
    best, best_cost = assign.copy(), _cost_of(d, assign)
    target_jobs = 30
    while time.perf_counter() < until - 0.1 and m > 1:
        first = int(rng.integers(m))
        own = np.flatnonzero(best == first)
        closeness = np.nansum(1.0 / (1.0 + np.maximum(cost[:, own] - cost[first, own], 0.0)), axis=1)
        closeness = closeness + rng.random(m) * max(float(closeness.max()), 1e-9) * 0.5
        closeness[first] = -np.inf
        order = np.r_[first, np.argsort(-closeness, kind="stable")[: m - 1]]
        counts = np.cumsum(np.bincount(best, minlength=m)[order])
        agents = order[: max(2, int(np.searchsorted(counts, target_jobs)) + 1)]
        started = time.perf_counter()
        found, optimal = _reassign_agents(d, best, agents, min(1.0, max(0.05, until - started)))
        quick = optimal and time.perf_counter() - started < 0.3
        target_jobs = target_jobs + 3 if quick else max(12, target_jobs - 5)
        if found is not None and _feasible(d, found):
            c = _cost_of(d, found)
            if c < best_cost - 1e-9:
                best, best_cost = found, c
    return best


# --------------------------------------------------------------------------- solvers


def _lp(model: _Model, cost: np.ndarray) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """LP relaxation (GLOP): bound, x values, duals of the unit rows (per unit)."""
    proto = linear_solver_pb2.MPModelProto()
    proto.CopyFrom(model.proto)
    proto.maximize = False
    for k, v in enumerate(proto.variable):
        v.is_integer = False
        v.objective_coefficient = float(cost[k]) if k < cost.size else 0.0
    request = linear_solver_pb2.MPModelRequest(
        model=proto, solver_type=linear_solver_pb2.MPModelRequest.GLOP_LINEAR_PROGRAMMING
    )
    response = linear_solver_pb2.MPSolutionResponse()
    pywraplp.Solver.SolveWithProto(request, response)
    if response.status == linear_solver_pb2.MPSOLVER_INFEASIBLE:
        return math.inf, None, None
    if response.status != linear_solver_pb2.MPSOLVER_OPTIMAL:
        return -math.inf, None, None
    duals = np.asarray(response.dual_value)
    unit_duals = np.zeros(int(model.row_unit.max()) + 1 if model.row_unit.size else 0)
    rows = np.flatnonzero(model.row_kind == ROW_UNIT)
    unit_duals[model.row_unit[rows]] = duals[rows]
    return float(response.objective_value), np.asarray(response.variable_value), unit_duals


@dataclass
class _MipOutcome:
    """status: "optimal", "infeasible", "limit" (time out), "error"."""

    solver: str
    status: str
    values: np.ndarray | None
    objective: float
    bound: float
    seconds: float


def _mip(proto_bytes: bytes, solver: str, time_limit: float) -> _MipOutcome:
    """One MIP solve of a minimisation MPModelProto (serialised) with one thread."""
    start = time.perf_counter()
    proto = linear_solver_pb2.MPModelProto.FromString(proto_bytes)
    limit = max(0.05, time_limit)
    if solver == "highs":
        model = to_mathopt(proto)
        params = mathopt.SolveParameters(
            time_limit=timedelta(seconds=limit), relative_gap_tolerance=0.0, absolute_gap_tolerance=1e-6
        )
        result = mathopt.solve(model, mathopt.SolverType.HIGHS, params=params)
        reason = result.termination.reason
        values = None
        obj = math.inf
        if result.has_primal_feasible_solution():
            sol = result.variable_values()
            values = np.array([sol[model.get_variable(k)] for k in range(len(proto.variable))])
            obj = float(result.objective_value())
        bound = float(result.termination.objective_bounds.dual_bound)
        if reason == mathopt.TerminationReason.OPTIMAL:
            return _MipOutcome(solver, "optimal", values, obj, obj, time.perf_counter() - start)
        if reason == mathopt.TerminationReason.INFEASIBLE:
            return _MipOutcome(solver, "infeasible", None, math.inf, math.inf, time.perf_counter() - start)
        return _MipOutcome(solver, "limit", values, obj, bound, time.perf_counter() - start)
    request = linear_solver_pb2.MPModelRequest(model=proto, solver_time_limit_seconds=limit)
    if solver == "scip":
        request.solver_type = linear_solver_pb2.MPModelRequest.SCIP_MIXED_INTEGER_PROGRAMMING
        request.solver_specific_parameters = "limits/gap = 0\nlimits/absgap = 0\nparallel/maxnthreads = 1\n"
    else:
        request.solver_type = linear_solver_pb2.MPModelRequest.SAT_INTEGER_PROGRAMMING
        request.solver_specific_parameters = "num_workers:1,linearization_level:2"
    response = linear_solver_pb2.MPSolutionResponse()
    pywraplp.Solver.SolveWithProto(request, response)
    seconds = time.perf_counter() - start
    values = np.asarray(response.variable_value) if len(response.variable_value) else None
    if response.status == linear_solver_pb2.MPSOLVER_OPTIMAL:
        return _MipOutcome(solver, "optimal", values, response.objective_value, response.objective_value, seconds)
    if response.status == linear_solver_pb2.MPSOLVER_INFEASIBLE:
        return _MipOutcome(solver, "infeasible", None, math.inf, math.inf, seconds)
    if response.status == linear_solver_pb2.MPSOLVER_FEASIBLE:
        return _MipOutcome(solver, "limit", values, response.objective_value, response.best_objective_bound, seconds)
    if response.status == linear_solver_pb2.MPSOLVER_NOT_SOLVED or response.status == 99:
        return _MipOutcome(solver, "limit", None, math.inf, -math.inf, seconds)
    return _MipOutcome(solver, "error", None, math.inf, -math.inf, seconds)


@dataclass
class _NeighbourhoodJob:
    """A heuristic job for the portfolio: large-neighbourhood search from an incumbent."""

    dense: _Dense
    incumbent: np.ndarray


NEIGHBOURHOODS = "neighbourhoods"
_Job = bytes | _NeighbourhoodJob  # a serialised minimisation MPModelProto, or the heuristic's input


def _run(job: _Job, solver: str, time_limit: float) -> _MipOutcome:
    """One portfolio job: a MIP solve, or the neighbourhood search (its best assignment
    as values of the model's pair variables; it proves nothing)."""
    if isinstance(job, bytes):
        return _mip(job, solver, time_limit)
    start = time.perf_counter()
    d = job.dense
    assign = _agent_neighbourhoods(d, job.incumbent, start + time_limit)
    values = np.zeros(int(d.var.max()) + 1)
    values[d.var[assign, np.arange(assign.size)]] = 1.0
    return _MipOutcome(solver, "limit", values, _cost_of(d, assign), -math.inf, time.perf_counter() - start)


def _child(conn: Connection, job: _Job, solver: str, time_limit: float) -> None:
    try:
        conn.send(_run(job, solver, time_limit))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which goes on
        conn.send(_MipOutcome(solver, f"error: {type(exc).__name__}", None, math.inf, -math.inf, 0.0))
    finally:
        conn.close()


def _portfolio(jobs: list[tuple[str, _Job]], time_limit: float) -> list[_MipOutcome]:
    """Run (solver, job) pairs side by side, one process (and thread) each;
    stop all as soon as one proves its result. Without fork, or with one job: in process,
    one after the other until one proves."""
    if len(jobs) == 1 or "fork" not in multiprocessing.get_all_start_methods():
        out = []
        for solver, data in jobs:
            out.append(_run(data, solver, time_limit / len(jobs)))
            if out[-1].status in ("optimal", "infeasible"):
                break
        return out
    ctx = multiprocessing.get_context("fork")
    running: dict[Connection, tuple[str, multiprocessing.process.BaseProcess]] = {}
    for solver, data in jobs:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(child, data, solver, time_limit), daemon=True)
        proc.start()
        child.close()
        running[parent] = (solver, proc)
    outcomes: list[_MipOutcome] = []
    deadline = time.perf_counter() + time_limit + 5.0
    try:
        while running:
            ready = wait(list(running), timeout=max(0.0, deadline - time.perf_counter()))
            if not ready:
                break
            for conn in ready:
                solver, proc = running.pop(conn)
                try:
                    outcomes.append(conn.recv())
                except EOFError:
                    outcomes.append(_MipOutcome(solver, "error: no result", None, math.inf, -math.inf, 0.0))
                conn.close()
                proc.join(timeout=1.0)
            if any(o.status in ("optimal", "infeasible") for o in outcomes):
                break
    finally:
        for conn, (_, proc) in running.items():
            proc.kill()
            proc.join(timeout=1.0)
            conn.close()
    return outcomes


# --------------------------------------------------------------------------- main


class _Search:
    """Incumbent, bounds and log of one solve."""

    def __init__(self, problem: AssignmentProblem, time_limit: float) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + time_limit
        self.time_limit = time_limit
        self.problem = problem
        self.model = _build_model(problem)
        self.full, self.why = _dense(problem, self.model)
        costs = -self.model.score
        # Integer costs: bounds round up and "better" means at least 1 lower.
        self.step = 1.0 if bool(np.all(costs == np.round(costs))) else 1e-6
        self.best: np.ndarray | None = None
        self.ub = math.inf
        self.lb = -math.inf
        self.log: list[str] = []

    def note(self, msg: str) -> None:
        self.log.append(f"{time.perf_counter() - self.start:6.2f}s {msg}")

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def offer(self, assign: np.ndarray | None, source: str) -> None:
        """Keep assign if it is feasible and cheaper than the incumbent."""
        if assign is None:
            return
        if self.full is not None:
            if not _feasible(self.full, assign):
                return
            c = _cost_of(self.full, assign)
        else:
            if check_assignment(self.problem, assign):
                return
            c = _assignment_cost(self.problem, assign)
        if c < self.ub - 1e-9:
            self.best, self.ub = assign.copy(), c
            self.note(f"incumbent {c:g} ({source})")

    def raise_lb(self, bound: float, scope_ub: float = math.inf) -> None:
        """bound holds for solutions below scope_ub (the incumbent when it was found)."""
        b = min(bound, scope_ub)
        if self.step == 1.0 and math.isfinite(b):
            b = math.ceil(b - 1e-6)
        self.lb = max(self.lb, b)

    @property
    def proven(self) -> bool:
        return math.isfinite(self.ub) and self.lb >= self.ub - 1e-9

    def offer_values(self, values: np.ndarray | None, source: str) -> None:
        if values is None:
            return
        m = self.model
        self.offer(_place_of(m, self.problem.n_units, np.round(values[: m.n_x]) > 0.5), source)


def _subgradient(
    s: _Search, d: _Dense, u: np.ndarray, until: float, max_iter: int = 10_000, lam: float = 0.5
) -> tuple[np.ndarray, float]:
    """Polyak-step subgradient ascent on L(u) over the (possibly reduced) dense view d;
    knapsack solutions are repaired into incumbents. Returns best multipliers and L."""
    best_u, best_l = u.copy(), -math.inf
    stall = 0
    it = 0
    for it in range(max_iter):
        if time.perf_counter() > until:
            break
        value, x = _lagrangian(d, u)
        if value > best_l + 1e-9:
            best_l, best_u, stall = value, u.copy(), 0
        else:
            stall += 1
            if stall >= 8:
                lam, stall = lam * 0.5, 0
        if it % 5 == 0 or stall == 0:
            a = _repair(d, x, d.cost)
            if a is not None:
                s.offer(_local_search(s.full, a, until), f"lagrangian it {it}")
        if math.isfinite(s.ub) and best_l > s.ub - s.step + 1e-6:
            break
        g = 1.0 - x.sum(axis=0)
        if not g.any() or lam < 1e-3:
            break
        target = s.ub if math.isfinite(s.ub) else best_l + 0.01 * abs(best_l) + 1.0
        u = u + lam * max(target - value, 1e-3) / float(g @ g) * g
    return best_u, best_l


def solve_gap_problem(problem: AssignmentProblem, time_limit: float = 60.0, workers: int = 2) -> GapResult:
    """Solve a GAP-form AssignmentProblem (exactly_one; minimise -pair_score)."""
    s = _Search(problem, time_limit)
    model = s.model
    n_units = problem.n_units
    if n_units == 0:
        return GapResult(np.zeros(0, np.int64), 0, 0.0, True, time.perf_counter() - s.start, s.log)
    if np.unique(model.unit).size < n_units:
        s.note("a job has no usable agent: infeasible")
        return GapResult(np.full(n_units, -1, np.int64), None, math.inf, True, time.perf_counter() - s.start, s.log)

    proto = linear_solver_pb2.MPModelProto()
    proto.CopyFrom(model.proto)
    proto.maximize = False
    cost_x = -model.score
    for k in range(model.n_x):
        proto.variable[k].objective_coefficient = float(cost_x[k])

    solvers = ("highs", "scip", "cp_sat")[: max(1, min(workers, 3))]
    lp_bound, _, duals = _lp(model, cost_x)
    s.note(f"LP bound {lp_bound:.3f}")
    if lp_bound == math.inf:
        return GapResult(np.full(n_units, -1, np.int64), None, math.inf, True, time.perf_counter() - s.start, s.log)
    s.raise_lb(lp_bound)
    d = s.full
    if d is None:
        s.note(f"no Lagrangian stage: {s.why}")
        _mip_round(s, [(solver, proto.SerializeToString()) for solver in solvers], math.inf, s.left())
        return _result(s)
    a = _construct(d)
    s.offer(_local_search(d, a, s.deadline) if a is not None else None, "construct")
    u = duals.copy() if duals is not None else np.zeros(n_units)
    u, lag = _subgradient(s, d, u, s.start + 0.08 * time_limit, max_iter=400)
    s.raise_lb(lag)
    s.note(f"lagrangian bound {lag:.3f}")
    if s.best is not None and not s.proven:
        s.offer(_tabu(d, s.best, time.perf_counter() + 0.05 * time_limit, max_iter=20_000), "tabu search")
    # Windows [lb, target): fix every pair that cannot take part in an assignment
    # cheaper than target, solve the rest; widen the window when it holds none.
    delta = max(s.step, 1e-3 * abs(lag))
    unresolved_pairs = math.inf  # pairs of the last window that ran out of time
    while not s.proven and s.left() > 0.5:
        target = lag + delta
        if s.step == 1.0 and math.isfinite(target):
            target = math.ceil(target - 1e-9)
        target = min(s.ub, target)
        sub = linear_solver_pb2.MPModelProto()
        sub.CopyFrom(proto)
        window_pairs = model.n_x
        if math.isfinite(target):
            up = _fixing_deltas(d, u)
            free = (lag + up <= target - s.step + 1e-6) & (d.var >= 0)
            window_pairs = int(free.sum())
            s.note(f"window below {target:g}: {window_pairs} of {model.n_x} pairs")
            if not free.any(axis=0).all():
                s.raise_lb(math.inf, target)
                delta *= 3
                continue
            keep = np.zeros(len(sub.variable), dtype=bool)
            keep[d.var[free]] = True
            keep[model.n_x :] = True
            if s.best is not None:
                # The incumbent's pairs stay too, so that it can be the hint (and cutoff).
                incumbent = d.var[s.best, np.arange(n_units)]
                keep[incumbent] = True
                hint = np.zeros(len(sub.variable))
                hint[incumbent] = 1.0
                sub.solution_hint.var_index.extend(range(hint.size))
                sub.solution_hint.var_value.extend(hint.tolist())
            for k in np.flatnonzero(~keep).tolist():
                sub.variable[k].upper_bound = 0.0
        with_row = linear_solver_pb2.MPModelProto()
        with_row.CopyFrom(sub)
        del with_row.solution_hint.var_index[:]
        del with_row.solution_hint.var_value[:]
        if math.isfinite(target):
            # HiGHS takes no cutoff and no hint here: give it the objective as a row.
            row = with_row.constraint.add(lower_bound=-np.inf, upper_bound=float(target - s.step))
            ks = np.flatnonzero(np.array([v.upper_bound > 0 for v in sub.variable[: model.n_x]]))
            row.var_index.extend(ks.tolist())
            row.coefficient.extend(cost_x[ks].tolist())
        wide = target >= s.ub
        # A larger window than one that ran out of time is not proven either; there the
        # time is worth more to the search for a cheaper assignment (type D: the MIPs
        # found none in such windows), so it takes HiGHS' process. A window that shrank
        # with a better incumbent keeps both MIPs (e10200: SCIP proved it in 14 s).
        search = wide and window_pairs > unresolved_pairs and d.integral and s.best is not None and len(solvers) > 1
        jobs: list[tuple[str, _Job]] = [
            (solver, (with_row if solver == "highs" else sub).SerializeToString())
            for solver in solvers
            if not (search and solver == "highs")
        ]
        if search:
            jobs.append((NEIGHBOURHOODS, _NeighbourhoodJob(d, s.best.copy())))
        status = _mip_round(s, jobs, target, s.left() * (1.0 if wide else 0.5))
        if status in ("infeasible", "optimal"):
            delta = max(delta * 3, s.lb + s.step - lag)
        elif status == "limit":
            delta = math.inf  # the window is unresolved: next, everything below the incumbent
            unresolved_pairs = window_pairs
    return _result(s)


def _mip_round(s: _Search, jobs: list[tuple[str, _Job]], target: float, limit: float) -> str:
    """MIP solvers on the window's models (every assignment below target is in them);
    bounds hold below target. An "optimal" result at or above target proves the window empty."""
    outcomes = _portfolio(jobs, limit)
    for o in outcomes:
        s.note(f"{o.solver}: {o.status} obj {o.objective:g} bound {o.bound:g} in {o.seconds:.1f}s (target {target:g})")
        s.offer_values(o.values, o.solver)
    done = [o for o in outcomes if o.status in ("optimal", "infeasible")]
    if done:
        s.raise_lb(done[0].objective, target)
        return done[0].status
    bounds = [o.bound for o in outcomes if o.status == "limit" and math.isfinite(o.bound)]
    if bounds:
        s.raise_lb(max(bounds), target)
    return "limit"


def _assignment_cost(problem: AssignmentProblem, place_of: np.ndarray) -> float:
    """Total cost (-pair_score) of a complete assignment of candidate pairs."""
    return float(-problem.pair_score[PairLookup.of(problem).positions(problem, place_of)].sum())


def _result(s: _Search) -> GapResult:
    """The incumbent, checked independently, with its true cost and the proven bound."""
    problem = s.problem
    place_of = s.best if s.best is not None else np.full(problem.n_units, -1, dtype=np.int64)
    objective: int | float | None = None
    if s.best is not None:
        problems = check_assignment(problem, place_of)
        if problems:
            raise RuntimeError(f"GAP solution fails the check: {problems[:3]}")
        objective = _assignment_cost(problem, place_of)
        if s.step == 1.0:
            objective = int(round(objective))
    bound = None if s.lb == -math.inf else float(min(s.lb, objective if objective is not None else s.lb))
    return GapResult(place_of, objective, bound, s.proven, time.perf_counter() - s.start, s.log)


def solve_gap(
    cost: np.ndarray, use: np.ndarray, capacity: np.ndarray, time_limit: float = 60.0, workers: int = 2
) -> tuple[int | None, float | None, bool]:
    """Minimise sum cost[i, j] x[i, j], each job j on exactly one agent i, agent loads
    sum use[i, j] x[i, j] <= capacity[i]. Returns (objective, proven lower bound, proven)."""
    result = solve_gap_problem(gap_problem(cost, use, capacity), time_limit, workers)
    return result.objective, result.bound, result.proven
