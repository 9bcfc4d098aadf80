"""Per-pair usage in the general model, and the generalized assignment problem (GAP)
solved through it: OR-Library instances with known optima, brute force on tiny ones."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from rematch_pipeline.engine.assignment import solve
from rematch_pipeline.engine.gap import (
    _agent_neighbourhoods,
    _construct,
    _cost_of,
    _feasible,
    _reassign_agents,
    _Search,
    gap_problem,
    solve_gap,
    solve_gap_problem,
)
from rematch_pipeline.engine.model import _build_model
from rematch_pipeline.engine.problem import AssignmentProblem, SolverParams, check_assignment

GAP_DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "gap"
EXACT = SolverParams(time_limit_seconds=20, relative_gap=0.0)


def read_gap(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OR-Library single-instance format: m n, costs [m x n], uses [m x n], capacities [m]."""
    numbers = np.array((GAP_DATA / name).read_text().split(), dtype=np.int64)
    m, n = int(numbers[0]), int(numbers[1])
    cost = numbers[2 : 2 + m * n].reshape(m, n)
    use = numbers[2 + m * n : 2 + 2 * m * n].reshape(m, n)
    return cost, use, numbers[2 + 2 * m * n : 2 + 2 * m * n + m]


def brute_force(cost: np.ndarray, use: np.ndarray, capacity: np.ndarray) -> int | None:
    m, n = cost.shape
    best = None
    for agents in itertools.product(range(m), repeat=n):
        a = np.array(agents)
        load = np.bincount(a, weights=use[a, np.arange(n)], minlength=m)
        if (load <= capacity).all():
            c = int(cost[a, np.arange(n)].sum())
            best = c if best is None else min(best, c)
    return best


def two_units_one_place(pair_usage: np.ndarray | None, capacity: int = 3) -> AssignmentProblem:
    # Units of 1 person each by unit usage; per pair they may count differently.
    return AssignmentProblem(
        unit_ids=["u0", "u1"],
        place_ids=["00001"],
        resources=["persons"],
        usage=np.array([[1], [1]]),
        capacity=np.array([[capacity]]),
        min_intake=np.array([0]),
        pair_unit=np.array([0, 1]),
        pair_place=np.array([0, 0]),
        pair_score=np.array([10.0, 20.0]),
        pair_usage=pair_usage,
    )


# --------------------------------------------------------------------------- per-pair usage


def test_pair_usage_forbids_what_unit_usage_allows() -> None:
    both = np.array([0, 0])
    assert check_assignment(two_units_one_place(None), both) == []
    per_pair = two_units_one_place(np.array([[2], [2]]))
    problems = check_assignment(per_pair, both)
    assert len(problems) == 1 and "persons used 4 > capacity 3" in problems[0]
    assert check_assignment(per_pair, np.array([-1, 0])) == []
    result = solve(per_pair, EXACT)
    assert result.place_of_unit.tolist() == [-1, 0]  # only one fits; 2 persons placed
    assert result.persons_placed == 2 and result.total_score == pytest.approx(20.0)
    assert check_assignment(per_pair, result) == []


def test_pair_usage_allows_what_unit_usage_forbids() -> None:
    # Unit usage 2 each (4 > 3); per pair 1 and 2: both fit.
    problem = two_units_one_place(np.array([[1], [2]]))
    problem.usage = np.array([[2], [2]])
    assert check_assignment(problem, np.array([0, 0])) == []
    result = solve(problem, EXACT)
    assert result.place_of_unit.tolist() == [0, 0]
    assert result.persons_placed == 3


def test_pair_usage_drives_min_intake_rows() -> None:
    # Minimum intake 3 persons: only reachable with the per-pair usage (1 + 2).
    problem = two_units_one_place(np.array([[1], [2]]), capacity=5)
    problem.min_intake = np.array([3])
    assert check_assignment(problem, np.array([-1, 0])) == ["place 00001: intake 2 persons below minimum 3"]
    result = solve(problem, EXACT)
    assert result.place_of_unit.tolist() == [0, 0]
    assert check_assignment(problem, result) == []


def test_pair_usage_validation() -> None:
    with pytest.raises(ValueError, match="pair_usage shape"):
        two_units_one_place(np.array([[1], [2], [3]]))
    with pytest.raises(ValueError, match="pair_usage must be >= 0"):
        two_units_one_place(np.array([[1], [-1]]))


def test_default_path_unchanged() -> None:
    # Explicit per-pair usage equal to the unit usage builds the very same model.
    rng = np.random.default_rng(3)
    n_u, n_j = 12, 4
    pair_unit, pair_place = (a.ravel() for a in np.meshgrid(np.arange(n_u), np.arange(n_j), indexing="ij"))
    keep = rng.random(pair_unit.size) < 0.7
    usage = rng.integers(1, 5, size=(n_u, 2))
    args = dict(
        unit_ids=[f"u{i:02d}" for i in range(n_u)],
        place_ids=[f"{j + 1:05d}" for j in range(n_j)],
        resources=["persons", "rooms"],
        usage=usage,
        capacity=rng.integers(4, 12, size=(n_j, 2)),
        min_intake=np.array([0, 3, 0, 2]),
        pair_unit=pair_unit[keep],
        pair_place=pair_place[keep],
        pair_score=np.round(rng.random(int(keep.sum())) * 100, 4),
    )
    plain = AssignmentProblem(**args)
    explicit = AssignmentProblem(**args, pair_usage=usage[pair_unit[keep]])
    assert plain.pair_usage is None
    np.testing.assert_array_equal(plain.usage_of_pairs(), explicit.usage_of_pairs())
    assert _build_model(plain).proto == _build_model(explicit).proto
    a, b = solve(plain, EXACT), solve(explicit, EXACT)
    np.testing.assert_array_equal(a.place_of_unit, b.place_of_unit)
    assert (a.persons_placed, a.total_score) == (b.persons_placed, b.total_score)
    assert check_assignment(plain, a) == check_assignment(explicit, a) == []


# --------------------------------------------------------------------------- GAP


def test_gap_problem_shape() -> None:
    cost, use, capacity = read_gap("a05100")
    problem = gap_problem(cost, use, capacity)
    assert problem.exactly_one and problem.n_units == 100 and problem.n_places == 5
    assert problem.resources == ["persons", "load"]
    k = 7 * 5 + 3  # job 7 on agent 3
    assert (problem.pair_unit[k], problem.pair_place[k]) == (7, 3)
    assert problem.pair_score[k] == -cost[3, 7]
    assert problem.pair_usage[k].tolist() == [1, use[3, 7]]
    everything_on_0 = np.zeros(100, dtype=np.int64)
    assert any("load used" in msg for msg in check_assignment(problem, everything_on_0))


@pytest.mark.parametrize(("name", "optimum"), [("a05100", 1698), ("c05100", 1931)])
def test_or_library_optimum(name: str, optimum: int) -> None:
    cost, use, capacity = read_gap(name)
    problem = gap_problem(cost, use, capacity)
    result = solve_gap_problem(problem, time_limit=20)
    assert result.proven and result.objective == optimum and result.bound == optimum
    assert check_assignment(problem, result.place_of_unit) == []
    assert int(cost[result.place_of_unit, np.arange(cost.shape[1])].sum()) == optimum


@pytest.mark.parametrize("workers", [1, 2])
def test_tiny_instances_match_brute_force(workers: int) -> None:
    rng = np.random.default_rng(11)
    for _ in range(4):
        m, n = 3, 7
        cost = rng.integers(1, 30, size=(m, n))
        use = rng.integers(1, 10, size=(m, n))
        capacity = (0.7 * use.sum(axis=1) / m).astype(np.int64)
        objective, bound, proven = solve_gap(cost, use, capacity, time_limit=10, workers=workers)
        expected = brute_force(cost, use, capacity)
        if expected is None:
            assert objective is None
            continue
        assert proven and objective == expected and bound == expected


def test_infeasible_and_fallback() -> None:
    # Job 1 fits no agent: no solution, proven.
    objective, _, proven = solve_gap(np.ones((2, 2)), np.array([[1, 9], [1, 9]]), np.array([5, 5]), time_limit=5)
    assert objective is None and proven
    # Locked pairs: no Lagrangian stage, the MIP path still finds the constrained optimum.
    cost = np.array([[1, 5, 5], [5, 1, 1]])
    problem = gap_problem(cost, np.ones((2, 3), dtype=np.int64), np.array([3, 3]))
    problem.locked = [(1, 0)]  # job 1 must go to agent 0
    result = solve_gap_problem(problem, time_limit=10)
    assert result.place_of_unit.tolist() == [0, 0, 1] and result.objective == 7 and result.proven


def test_reassigning_every_agent_is_exact() -> None:
    rng = np.random.default_rng(5)
    m, n = 3, 7
    cost = rng.integers(1, 30, size=(m, n))
    use = rng.integers(1, 10, size=(m, n))
    capacity = (0.8 * use.sum(axis=1) / m).astype(np.int64)
    expected = brute_force(cost, use, capacity)
    assert expected is not None
    search = _Search(gap_problem(cost, use, capacity), time_limit=10)
    dense = search.full
    start = _construct(dense)
    assert start is not None
    found, optimal = _reassign_agents(dense, start, np.arange(m), time_limit=5)
    assert optimal and found is not None and _feasible(dense, found)
    assert _cost_of(dense, found) == expected


def test_agent_neighbourhoods_improve_a_type_d_start() -> None:
    cost, use, capacity = read_gap("d05100")
    dense = _Search(gap_problem(cost, use, capacity), time_limit=10).full
    start = _construct(dense)
    assert start is not None
    found = _agent_neighbourhoods(dense, start, time.perf_counter() + 3)
    assert _feasible(dense, found)
    assert _cost_of(dense, found) < _cost_of(dense, start)


def test_an_unresolved_window_hands_the_wide_window_to_the_neighbourhood_search() -> None:
    # Type D: the first window cannot be closed in a few seconds; the wide window then
    # runs SCIP beside the neighbourhood search instead of HiGHS.
    cost, use, capacity = read_gap("d10100")
    problem = gap_problem(cost, use, capacity)
    result = solve_gap_problem(problem, time_limit=8)
    wide = [line for line in result.log if "(target" in line][-2:]
    assert any("neighbourhoods: limit" in line for line in wide)
    assert not any("highs:" in line for line in wide)
    assert check_assignment(problem, result.place_of_unit) == []
    assert result.bound is not None and result.bound <= result.objective
