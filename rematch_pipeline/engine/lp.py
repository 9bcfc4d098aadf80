"""LP relaxations through HiGHS (OR-Tools' MathOpt), and the MPModelProto to MathOpt bridge;
LpRelaxation: an LP's value alone by GLOP, solved again as bounds change (the maximin probes).

HiGHS' dual simplex solves the LP of a large round's core (the pairs near each unit's
best at the Lagrangian prices) about 4x faster than SCIP's SoPlex (measured: 7 s
against 28 s at 10,000 households, 19,000 pairs). highspy itself cannot be imported
next to OR-Tools 9.15, which bundles its own HiGHS, so MathOpt is the way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp
from ortools.math_opt import model_pb2
from ortools.math_opt.python import mathopt


def to_mathopt(proto: linear_solver_pb2.MPModelProto) -> mathopt.Model:
    """An MPModelProto (linear rows only) as a MathOpt model."""
    mo = model_pb2.ModelProto()
    nv = len(proto.variable)
    mo.variables.ids.extend(range(nv))
    mo.variables.lower_bounds.extend(v.lower_bound for v in proto.variable)
    mo.variables.upper_bounds.extend(v.upper_bound for v in proto.variable)
    mo.variables.integers.extend(v.is_integer for v in proto.variable)
    mo.objective.maximize = proto.maximize
    mo.objective.offset = proto.objective_offset
    for k, v in enumerate(proto.variable):
        if v.objective_coefficient:
            mo.objective.linear_coefficients.ids.append(k)
            mo.objective.linear_coefficients.values.append(v.objective_coefficient)
    mo.linear_constraints.ids.extend(range(len(proto.constraint)))
    mo.linear_constraints.lower_bounds.extend(c.lower_bound for c in proto.constraint)
    mo.linear_constraints.upper_bounds.extend(c.upper_bound for c in proto.constraint)
    mat = mo.linear_constraint_matrix
    for r, c in enumerate(proto.constraint):
        pairs = sorted((int(i), float(a)) for i, a in zip(c.var_index, c.coefficient, strict=True) if a)
        mat.row_ids.extend([r] * len(pairs))
        mat.column_ids.extend(i for i, _ in pairs)
        mat.coefficients.extend(a for _, a in pairs)
    return mathopt.Model.from_model_proto(mo)


def _relaxed(proto: linear_solver_pb2.MPModelProto) -> linear_solver_pb2.MPModelProto:
    """A copy of proto with integrality (and any solution hint) dropped."""
    relaxed = linear_solver_pb2.MPModelProto()
    relaxed.CopyFrom(proto)
    del relaxed.solution_hint.var_index[:]
    del relaxed.solution_hint.var_value[:]
    for v in relaxed.variable:
        v.is_integer = False
    return relaxed


@dataclass
class LpSolution:
    """An optimal LP solution: objective value, variable values and row duals (MathOpt's
    signs: for a maximisation, a binding <= row has a dual >= 0)."""

    value: float
    x: np.ndarray
    duals: np.ndarray
    iterations: int  # simplex iterations HiGHS took


def solve_lp(
    proto: linear_solver_pb2.MPModelProto, time_limit: float, iteration_limit: int | None = None
) -> LpSolution | None:
    """The LP relaxation of proto (integrality dropped) by HiGHS' dual simplex; None unless
    proven optimal within time_limit seconds and iteration_limit simplex iterations (a
    limit that, unlike time, gives the same outcome on every run)."""
    relaxed = _relaxed(proto)
    model = to_mathopt(relaxed)
    seconds = min(max(0.05, time_limit), 86_400.0)  # timedelta cannot hold inf
    params = mathopt.SolveParameters(time_limit=timedelta(seconds=seconds), iteration_limit=iteration_limit)
    result = mathopt.solve(model, mathopt.SolverType.HIGHS, params=params)
    if result.termination.reason != mathopt.TerminationReason.OPTIMAL:
        return None
    values = result.variable_values()
    x = np.array([values[model.get_variable(k)] for k in range(len(relaxed.variable))])
    row_duals = result.dual_values()
    duals = np.array([row_duals[model.get_linear_constraint(r)] for r in range(len(relaxed.constraint))])
    return LpSolution(float(result.objective_value()), x, duals, int(result.solve_stats.simplex_iterations))


class LpRelaxation:
    """The LP relaxation of one model in GLOP (through pywraplp), loaded once and solved
    again from its last basis as the variables' upper bounds change: the maximin threshold
    probes, which need only the value. GLOP's presolve is off, since with it every solve
    starts over: measured on the persons LP of a 1,000 households x 40 round, eight
    thresholds took 6.1 s with presolve and 2.2 s without (3,000-4,700 simplex iterations
    each, against 0-800 after the first), and HiGHS' dual simplex through MathOpt took 6-10 s
    for one (docs/decisions.md, "Maximin by thresholds")."""

    def __init__(self, proto: linear_solver_pb2.MPModelProto) -> None:
        relaxed = _relaxed(proto)
        self._solver = pywraplp.Solver.CreateSolver("GLOP")
        error = self._solver.LoadModelFromProto(relaxed)
        if error:
            raise RuntimeError(f"LP rejected by OR-Tools: {error}")
        self._solver.SetSolverSpecificParametersAsString("use_preprocessing: false")
        self._variables = self._solver.variables()
        self._upper = np.array([v.upper_bound for v in relaxed.variable])

    def value(self, upper_bounds: np.ndarray, time_limit: float) -> float | None:
        """The LP's optimal value with these upper bounds (one per variable); None unless
        proven optimal within time_limit seconds."""
        for k in np.flatnonzero(upper_bounds != self._upper).tolist():
            self._variables[k].SetUb(float(upper_bounds[k]))
        self._upper = upper_bounds.copy()
        self._solver.SetTimeLimit(max(1, int(min(time_limit, 86_400.0) * 1000)))
        if self._solver.Solve() != pywraplp.Solver.OPTIMAL:
            return None
        return float(self._solver.Objective().Value())
