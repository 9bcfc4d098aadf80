"""Property tests: on random small problems no answer breaks a constraint, locks are
kept, and the lexicographic optimum equals brute force."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rematch_pipeline.engine.assignment import solve
from rematch_pipeline.engine.problem import AssignmentProblem, SolverParams, check_assignment

EXACT = SolverParams(time_limit_seconds=10, relative_gap=0.0)


@st.composite
def problems(draw: st.DrawFn) -> AssignmentProblem:
    n_units = draw(st.integers(0, 5))
    n_places = draw(st.integers(1, 3))
    n_res = draw(st.integers(1, 3))
    usage = np.array(
        [[draw(st.integers(1 if r == 0 else 0, 4)) for r in range(n_res)] for _ in range(n_units)], dtype=np.int64
    ).reshape(n_units, n_res)
    capacity = np.array(
        [[draw(st.integers(0, 8)) for _ in range(n_res)] for _ in range(n_places)], dtype=np.int64
    ).reshape(n_places, n_res)
    min_intake = np.array([draw(st.sampled_from([0, 0, 2, 4, 9])) for _ in range(n_places)], dtype=np.int64)
    pairs = [(u, j) for u in range(n_units) for j in range(n_places) if draw(st.booleans())]
    scores = [float(draw(st.integers(0, 1000))) / 10 for _ in pairs]
    locked: list[tuple[int, int]] = []
    for u in range(n_units):
        mine = [p for p in pairs if p[0] == u]
        if mine and draw(st.integers(0, 5)) == 0:
            locked.append(draw(st.sampled_from(mine)))
    return AssignmentProblem(
        unit_ids=[f"u{u}" for u in range(n_units)],
        place_ids=[f"{j + 1:05d}" for j in range(n_places)],
        resources=["persons", "kita_places", "accessible_units"][:n_res],
        usage=usage,
        capacity=capacity,
        min_intake=min_intake,
        pair_unit=np.array([p[0] for p in pairs], dtype=np.int64),
        pair_place=np.array([p[1] for p in pairs], dtype=np.int64),
        pair_score=np.array(scores, dtype=np.float64),
        locked=locked,
        exactly_one=draw(st.integers(0, 4)) == 0,
    )


def brute_force(problem: AssignmentProblem) -> tuple[int, float] | None:
    """(max persons, max score among those) over all feasible assignments, None if none."""
    options: list[list[int]] = []
    for u in range(problem.n_units):
        places = [int(j) for uu, j in zip(problem.pair_unit, problem.pair_place, strict=True) if uu == u]
        options.append(places if problem.exactly_one else [-1, *places])
    score = {(int(u), int(j)): s for u, j, s in zip(problem.pair_unit, problem.pair_place, problem.pair_score, strict=True)}
    best: tuple[int, float] | None = None
    for combo in itertools.product(*options):
        assignment = np.array(combo, dtype=np.int64)
        if check_assignment(problem, assignment):
            continue
        persons = int(problem.usage[assignment >= 0, problem.persons_index].sum())
        total = sum(score[(u, j)] for u, j in enumerate(combo) if j >= 0)
        if best is None or (persons, total) > (best[0], best[1] + 1e-9):
            best = (persons, total)
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(problems())
def test_no_answer_breaks_a_constraint_and_matches_brute_force(problem: AssignmentProblem) -> None:
    result = solve(problem, EXACT)
    expected = brute_force(problem)
    if result.status in ("optimal", "feasible"):
        assert check_assignment(problem, result) == []
        for u, j in problem.locked:
            assert result.place_of_unit[u] == j
        assert expected is not None
        assert result.persons_placed == expected[0]
        assert abs(result.total_score - expected[1]) < 1e-6
        assert result.best_bound >= result.objective_value - 1e-6
    else:
        assert result.status == "infeasible"
        assert expected is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(problems(), st.sampled_from(["scip", "cbc", "cp_sat"]), st.sampled_from(["lexicographic", "maximin"]))
def test_backends_and_maximin_stay_feasible(problem: AssignmentProblem, backend: str, objective: str) -> None:
    params = SolverParams(time_limit_seconds=10, relative_gap=0.0, backend=backend, objective=objective)  # type: ignore[arg-type]
    result = solve(problem, params)
    expected = brute_force(problem)
    if result.status in ("optimal", "feasible"):
        assert check_assignment(problem, result) == []
        assert expected is not None and result.persons_placed == expected[0]
        if objective == "maximin" and result.min_unit_score is not None:
            worst = min(
                float(s) for u, j, s in zip(problem.pair_unit, problem.pair_place, problem.pair_score, strict=True)
                if result.place_of_unit[u] == j
            )
            assert abs(result.min_unit_score - worst) < 1e-9
    else:
        assert expected is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(problems())
def test_large_round_method_stays_feasible(problem: AssignmentProblem) -> None:
    # max_model_pairs=0 forces the Lagrangian path (prices, greedy, MIP on close calls) on tiny
    # problems: its answers must be feasible, keep locks, and its bounds must hold.
    result = solve(problem, SolverParams(time_limit_seconds=10, max_model_pairs=0))
    expected = brute_force(problem)
    if result.status in ("optimal", "feasible"):
        assert check_assignment(problem, result) == []
        assert expected is not None
        assert result.persons_placed <= expected[0]
        if result.bound_scope == "all_pairs":
            assert result.persons_bound >= expected[0] - 1e-6
            if result.persons_placed == expected[0]:
                assert result.best_bound >= expected[1] - 1e-6
    else:
        assert expected is None
