"""The MIP of an assignment problem (OR-Tools pywraplp): the pairs and rows that can bind, the
objectives, one solve of a stage, and reading an answer back."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

from rematch_pipeline.engine.problem import BACKENDS, AssignmentProblem, SolverParams

# The tie-break terms of all units together stay below half the score resolution
# (scores carry 4 decimals), so they can never outweigh a real score difference.
TIE_BREAK_TOTAL: float = 0.5e-4
# Maximin: per-household scores are 0..100, so 100 is a valid big-M and T's ceiling.
SCORE_CEILING: float = 100.0
# A solver's best bound at or beyond this magnitude is none (it has not proven any).
NO_BOUND: float = 1e19
# Row kinds of the model, recorded so that duals can be mapped back (large_scale).
ROW_UNIT, ROW_CAPACITY, ROW_MIN_HIGH, ROW_MIN_LOW, ROW_PERSONS = range(5)

_STATUS: dict[int, str] = {
    pywraplp.Solver.OPTIMAL: "optimal",
    pywraplp.Solver.FEASIBLE: "feasible",
    pywraplp.Solver.INFEASIBLE: "infeasible",
    pywraplp.Solver.UNBOUNDED: "unbounded",
    pywraplp.Solver.ABNORMAL: "abnormal",
    pywraplp.Solver.MODEL_INVALID: "model_invalid",
    pywraplp.Solver.NOT_SOLVED: "not_solved",
}


@dataclass
class _Model:
    """Reduced model arrays: pairs that can be used at all, rows that can bind."""

    pair_idx: np.ndarray  # indices into the problem's pairs
    unit: np.ndarray
    place: np.ndarray
    persons: np.ndarray  # persons of each kept pair's unit
    score: np.ndarray
    household_score: np.ndarray  # per-household mean score of the pair
    locked_vars: np.ndarray  # variable indices fixed to 1
    min_places: np.ndarray  # places with a minimum intake (each gets a y variable)
    proto: linear_solver_pb2.MPModelProto
    n_x: int
    persons_row: int  # row: sum persons * x >= (stage-1 value)
    # Per constraint row: kind (ROW_*), place, resource, unit (-1 where not applicable).
    row_kind: np.ndarray
    row_place: np.ndarray
    row_resource: np.ndarray
    row_unit: np.ndarray
    y_place: np.ndarray  # place of each y variable (variable index n_x + k)


def _reduce(problem: AssignmentProblem) -> np.ndarray:
    """Indices of pairs worth a variable: the unit fits the place's capacity on its own
    and the place can reach its minimum intake at all. Locked pairs always stay."""
    fits = np.ones(problem.pair_unit.size, dtype=bool)
    for r in range(len(problem.resources)):  # per resource: no [pairs x resources] temporaries
        fits &= problem.usage_of_pairs(resource=r) <= problem.capacity[problem.pair_place, r]
    cap_persons = problem.capacity[:, problem.persons_index]
    reachable = problem.min_intake <= cap_persons
    keep = fits & reachable[problem.pair_place]
    if problem.locked:
        keep |= np.isin(problem.pair_keys(), problem.locked_keys())
    return np.flatnonzero(keep)


def _build_model(problem: AssignmentProblem) -> _Model:
    """Encode the model once as an MPModelProto (fast bulk construction from numpy).

    Objective coefficients are set per stage; stage-keeping rows start unbounded.
    """
    idx = _reduce(problem)
    unit = problem.pair_unit[idx]
    place = problem.pair_place[idx]
    order = np.lexsort((place, unit))  # pairs sorted by unit then place (tie-break order)
    idx, unit, place = idx[order], unit[order], place[order]
    n_x = idx.size
    pi = problem.persons_index
    persons = problem.usage_of_pairs(idx, pi).astype(np.float64)
    score = problem.pair_score[idx]
    hh = np.maximum(problem.unit_households, 1)[unit].astype(np.float64)
    locked_set = {u * problem.n_places + j for u, j in problem.locked}
    keys = unit * problem.n_places + place
    locked_vars = np.flatnonzero(np.isin(keys, np.array(sorted(locked_set), dtype=np.int64)))

    m = linear_solver_pb2.MPModelProto()
    m.maximize = True
    lb = np.zeros(n_x)
    lb[locked_vars] = 1.0
    add_var = m.variable.add
    for low in lb.tolist():
        add_var(lower_bound=low, upper_bound=1.0, is_integer=True)

    # One y per place with a minimum intake that some pair could use.
    used_places = np.unique(place)
    min_places = used_places[problem.min_intake[used_places] > 0]
    y_of = {int(j): n_x + k for k, j in enumerate(min_places.tolist())}
    for _ in range(min_places.size):
        add_var(lower_bound=0.0, upper_bound=1.0, is_integer=True)

    rows: list[tuple[int, int, int, int]] = []
    # Unit rows: at most / exactly one place.
    u_order = np.argsort(unit, kind="stable")
    u_starts = np.searchsorted(unit[u_order], np.arange(problem.n_units + 1))
    for u in range(problem.n_units):
        members = u_order[u_starts[u] : u_starts[u + 1]]
        if members.size == 0 and not problem.exactly_one:
            continue
        rows.append((ROW_UNIT, -1, -1, u))
        ct = m.constraint.add(lower_bound=1.0 if problem.exactly_one else 0.0, upper_bound=1.0)
        ct.var_index.extend(members.tolist())
        ct.coefficient.extend([1.0] * members.size)

    # Place rows: capacity per resource; rows that cannot bind are left out.
    p_order = np.argsort(place, kind="stable")
    p_starts = np.searchsorted(place[p_order], np.arange(problem.n_places + 1))
    for j in range(problem.n_places):
        members = p_order[p_starts[j] : p_starts[j + 1]]
        if members.size == 0:
            continue
        use = problem.usage_of_pairs(idx[members])  # [members, resources]
        cap = problem.capacity[j]
        for r in range(len(problem.resources)):
            coef = use[:, r]
            nz = coef > 0
            if r == pi and j in y_of:
                # min*y <= persons <= cap*y : zero or at least the minimum.
                rows.append((ROW_MIN_HIGH, j, r, -1))
                ct = m.constraint.add(lower_bound=-np.inf, upper_bound=0.0)
                ct.var_index.extend([*members[nz].tolist(), y_of[j]])
                ct.coefficient.extend([*coef[nz].astype(float).tolist(), -float(cap[r])])
                rows.append((ROW_MIN_LOW, j, r, -1))
                ct = m.constraint.add(lower_bound=0.0, upper_bound=np.inf)
                ct.var_index.extend([*members[nz].tolist(), y_of[j]])
                ct.coefficient.extend([*coef[nz].astype(float).tolist(), -float(problem.min_intake[j])])
                continue
            if coef.sum() <= cap[r]:
                continue  # every candidate together fits: row never binds
            rows.append((ROW_CAPACITY, j, r, -1))
            ct = m.constraint.add(lower_bound=-np.inf, upper_bound=float(cap[r]))
            ct.var_index.extend(members[nz].tolist())
            ct.coefficient.extend(coef[nz].astype(float).tolist())

    persons_row = len(m.constraint)
    rows.append((ROW_PERSONS, -1, pi, -1))
    ct = m.constraint.add(lower_bound=-np.inf, upper_bound=np.inf)
    ct.var_index.extend(range(n_x))
    ct.coefficient.extend(persons.tolist())
    return _Model(
        pair_idx=idx,
        unit=unit,
        place=place,
        persons=persons,
        score=score,
        household_score=score / hh,
        locked_vars=locked_vars,
        min_places=min_places,
        proto=m,
        n_x=n_x,
        persons_row=persons_row,
        row_kind=np.array([r[0] for r in rows], dtype=np.int64),
        row_place=np.array([r[1] for r in rows], dtype=np.int64),
        row_resource=np.array([r[2] for r in rows], dtype=np.int64),
        row_unit=np.array([r[3] for r in rows], dtype=np.int64),
        y_place=min_places.astype(np.int64),
    )


def _set_objective(model: _Model, coefs: dict[int, float] | np.ndarray) -> None:
    """Replace the objective: dense array over x variables, or sparse {var: coef}."""
    variables = model.proto.variable
    for v in variables:
        v.objective_coefficient = 0.0
    if isinstance(coefs, np.ndarray):
        for v, c in zip(variables, coefs.tolist(), strict=False):
            v.objective_coefficient = c
    else:
        for k, c in coefs.items():
            variables[k].objective_coefficient = c


def _tie_break(model: _Model) -> np.ndarray:
    """Tiny weights strictly decreasing in sorted (unit, place) pair order (the exact path's
    units are in data_order, so the weights do not hang on the pseudonyms).

    A unit takes at most one pair, so the chosen weights sum to at most
    TIE_BREAK_TOTAL, below any real score difference (multiples of 1e-4).
    """
    n_x = model.n_x
    if n_x == 0:
        return np.zeros(0)
    n_units = max(1, np.unique(model.unit).size)
    return TIE_BREAK_TOTAL / n_units * (n_x - np.arange(n_x, dtype=np.float64)) / n_x


def _gap(obj: float, bound: float) -> float:
    """Relative gap (bound - objective) / |objective|; inf without a finite bound."""
    if not np.isfinite(bound) or not np.isfinite(obj):
        return float("inf")
    diff = max(0.0, bound - obj)
    if diff <= 1e-9:
        return 0.0
    return diff / max(abs(obj), 1e-9)


def _solve_stage(
    model: _Model,
    params: SolverParams,
    time_limit: float,
    hint: np.ndarray | None,
    node_limit: int | None = None,
    witness: np.ndarray | None = None,
    settings: str = "",
) -> tuple[str, np.ndarray | None, float, float, float, int]:
    """One MIP solve, stopped at time_limit seconds or (SCIP only) after node_limit
    branch-and-bound nodes; settings: further SCIP parameters, one "name = value" a line
    (a name SCIP does not know raises ValueError). Returns (status, values or None,
    objective, bound, seconds, simplex iterations).

    "infeasible" only when proven: a solver claim that a known feasible point (witness,
    else hint) contradicts, or that came when its time limit ran out, is "not_solved" (CBC
    stopped by its limit in preprocessing reports the model infeasible: measured on a
    600-household maximin stage, 1.4 s limit)."""
    start = time.perf_counter()
    solver = pywraplp.Solver.CreateSolver(BACKENDS[params.backend])
    if solver is None:
        raise RuntimeError(f"OR-Tools backend {params.backend} is not available")
    proto = model.proto
    del proto.solution_hint.var_index[:]
    del proto.solution_hint.var_value[:]
    # HiGHS through pywraplp 9.15 crashes on solution hints: never pass one to it.
    if hint is not None and params.backend != "highs":
        proto.solution_hint.var_index.extend(range(hint.size))
        proto.solution_hint.var_value.extend(hint.tolist())
    error = solver.LoadModelFromProto(proto)
    if error:
        raise RuntimeError(f"model rejected by OR-Tools: {error}")
    solver.SuppressOutput()
    solver.SetNumThreads(params.threads)
    if params.backend == "scip":
        nodes = f"limits/nodes = {node_limit}\n" if node_limit is not None else ""
        # SCIP rejects an unknown name (a parameter renamed in another version) and would then solve on
        # its defaults: stop instead.
        if not solver.SetSolverSpecificParametersAsString(f"randomization/randomseedshift = {params.seed}\n{nodes}{settings}"):
            raise ValueError(f"SCIP rejected the parameters: {nodes}{settings}".strip())
    elif params.backend == "cp_sat":
        solver.SetSolverSpecificParametersAsString(f"random_seed:{params.seed}")
    # cbc and highs take no seed through pywraplp; their defaults are fixed seeds.
    solver.SetTimeLimit(max(1, int(time_limit * 1000)))
    mp = pywraplp.MPSolverParameters()
    mp.SetDoubleParam(mp.RELATIVE_MIP_GAP, params.relative_gap)
    code = solver.Solve(mp)
    status = _STATUS.get(code, "unknown")
    if status == "infeasible":
        witness = hint if witness is None else witness
        cut = time.perf_counter() - start >= time_limit
        if cut or (witness is not None and _satisfies(proto, witness)):
            status = "not_solved"
    values: np.ndarray | None = None
    obj = float("nan")
    bound = float("nan")
    if status in ("optimal", "feasible"):
        response = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(response)
        values = np.asarray(response.variable_value, dtype=np.float64)
        obj = float(solver.Objective().Value())
        bound = float(solver.Objective().BestBound())
        # Backends report +-1e20..1e30 for "no bound yet": say so honestly.
        if not np.isfinite(bound) or abs(bound) >= NO_BOUND:
            bound = float("inf")
    return status, values, obj, bound, time.perf_counter() - start, int(solver.iterations())


def _satisfies(proto: linear_solver_pb2.MPModelProto, values: np.ndarray) -> bool:
    """True when values (one per variable) keep every bound, integrality and row of proto,
    up to a relative 1e-6."""
    if values.size != len(proto.variable):
        return False
    for v, val in zip(proto.variable, values.tolist(), strict=True):
        if not v.lower_bound - 1e-6 <= val <= v.upper_bound + 1e-6:
            return False
        if v.is_integer and abs(val - round(val)) > 1e-6:
            return False
    for ct in proto.constraint:
        activity = float(values[np.asarray(ct.var_index, dtype=np.int64)] @ np.asarray(ct.coefficient))
        slack = 1e-6 * max(1.0, abs(activity))
        if not ct.lower_bound - slack <= activity <= ct.upper_bound + slack:
            return False
    return True


def _place_of(model: _Model, n_units: int, chosen: np.ndarray) -> np.ndarray:
    """The assignment (a place per unit, -1 unplaced) of the model's chosen pair variables
    (a mask over its first n_x); _hint is the way back."""
    place_of = np.full(n_units, -1, dtype=np.int64)
    place_of[model.unit[chosen]] = model.place[chosen]
    return place_of


def _hint(model: _Model, problem: AssignmentProblem, place_of_unit: np.ndarray) -> np.ndarray:
    """Variable values of an assignment (a place per unit, -1 unplaced) as a solver hint."""
    hint = np.zeros(len(model.proto.variable))
    hint[: model.n_x] = place_of_unit[model.unit] == model.place
    persons = np.zeros(problem.n_places)
    np.add.at(persons, model.place, model.persons * hint[: model.n_x])
    hint[model.n_x : model.n_x + model.min_places.size] = persons[model.min_places] > 0
    return hint


def _max_persons_per_unit(model: _Model) -> np.ndarray:
    """Most persons each unit with a usable pair can bring (its usage, or the largest
    per-pair usage)."""
    if model.unit.size == 0:
        return np.zeros(0)
    best = np.zeros(int(model.unit.max()) + 1)
    np.maximum.at(best, model.unit, model.persons)
    return best


def _min_score(model: _Model, values: np.ndarray) -> float:
    x = np.round(values[: model.n_x]) > 0.5
    return float(model.household_score[x].min()) if x.any() else SCORE_CEILING
