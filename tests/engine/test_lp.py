"""HiGHS LPs through MathOpt: values and duals of a small LP with a known optimum; GLOP
solved again as bounds change (LpRelaxation)."""

from __future__ import annotations

import numpy as np
import pytest
from ortools.linear_solver import linear_solver_pb2

from rematch_pipeline.engine.lp import LpRelaxation, solve_lp


def _proto() -> linear_solver_pb2.MPModelProto:
    """max 3x + 2y s.t. x + y <= 4, x + 3y <= 6, 0 <= x, y <= 10 (x, y integer)."""
    m = linear_solver_pb2.MPModelProto(maximize=True)
    for c in (3.0, 2.0):
        m.variable.add(lower_bound=0.0, upper_bound=10.0, objective_coefficient=c, is_integer=True)
    for coefs, rhs in (((1.0, 1.0), 4.0), ((1.0, 3.0), 6.0)):
        m.constraint.add(lower_bound=-float("inf"), upper_bound=rhs, var_index=[0, 1], coefficient=list(coefs))
    return m


def test_lp_value_solution_and_duals() -> None:
    lp = solve_lp(_proto(), time_limit=10.0)
    assert lp is not None
    assert lp.value == pytest.approx(12.0)
    assert lp.x.tolist() == pytest.approx([4.0, 0.0])
    # The binding row prices at 3 (one more unit of it is worth 3), the slack one at 0;
    # strong duality: 4 * 3 + 6 * 0 = 12.
    assert lp.duals.tolist() == pytest.approx([3.0, 0.0])


def test_integrality_is_dropped() -> None:
    m = _proto()
    m.constraint[0].upper_bound = 3.5  # the LP takes x = 3.5; an integer model could not
    lp = solve_lp(m, time_limit=10.0)
    assert lp is not None
    assert lp.x[0] == pytest.approx(3.5)
    assert m.variable[0].is_integer  # the caller's model is left as it was


def test_iteration_limit_is_a_limit_and_iterations_are_reported() -> None:
    # A transportation-like LP that needs several simplex iterations.
    m = linear_solver_pb2.MPModelProto(maximize=True)
    n = 12
    for i in range(n):
        for j in range(n):
            m.variable.add(lower_bound=0.0, upper_bound=1.0, objective_coefficient=float((i * 7 + j * 3) % 11))
    for i in range(n):
        m.constraint.add(lower_bound=-float("inf"), upper_bound=1.0, var_index=[i * n + j for j in range(n)], coefficient=[1.0] * n)
        m.constraint.add(lower_bound=-float("inf"), upper_bound=1.0, var_index=[j * n + i for j in range(n)], coefficient=[1.0] * n)
    full = solve_lp(m, time_limit=10.0)
    assert full is not None and full.iterations > 1
    assert solve_lp(m, time_limit=10.0, iteration_limit=1) is None
    again = solve_lp(m, time_limit=10.0, iteration_limit=2 * full.iterations + 10)
    assert again is not None and again.value == pytest.approx(full.value)


def test_relaxation_solved_again_gives_each_bounds_own_optimum() -> None:
    """Upper bounds tightened and loosened again, in any order: each solve from the last basis
    gives the value a fresh HiGHS solve of the same bounds gives."""
    m = linear_solver_pb2.MPModelProto(maximize=True)
    n = 12
    for i in range(n):
        for j in range(n):
            m.variable.add(lower_bound=0.0, upper_bound=1.0, objective_coefficient=float((i * 7 + j * 3) % 11), is_integer=True)
    for i in range(n):
        m.constraint.add(lower_bound=-float("inf"), upper_bound=1.0, var_index=[i * n + j for j in range(n)], coefficient=[1.0] * n)
        m.constraint.add(lower_bound=-float("inf"), upper_bound=1.0, var_index=[j * n + i for j in range(n)], coefficient=[1.0] * n)
    relaxation = LpRelaxation(m)
    coef = np.array([v.objective_coefficient for v in m.variable])
    values = []
    for ceiling in (6.0, 2.0, 10.0, 4.0, 9.0, 1.0):  # variables worth more than ceiling fixed to 0
        upper = np.where(coef > ceiling, 0.0, 1.0)
        for v, u in zip(m.variable, upper.tolist(), strict=True):
            v.upper_bound = u
        fresh = solve_lp(m, time_limit=10.0)
        assert fresh is not None
        value = relaxation.value(upper, time_limit=10.0)
        assert value == pytest.approx(fresh.value)
        values.append(value)
    assert len(set(values)) > 2  # the bounds mattered
    assert m.variable[0].is_integer  # the caller's model is left as it was
