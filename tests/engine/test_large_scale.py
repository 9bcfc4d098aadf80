"""The Lagrangian path of large rounds: its dual is right, its bounds hold, its answers repeat."""

from __future__ import annotations

import numpy as np

from rematch_pipeline.engine import large_scale
from rematch_pipeline.engine.assignment import SolverParams, build_problem, check_assignment, solve
from rematch_pipeline.engine.compatibility import candidate_pairs
from rematch_pipeline.engine.scoring import score_pairs
from rematch_pipeline.engine.synthetic import random_households, random_municipalities


def _round(households: int = 200, places: int = 15, seed: int = 5):  # noqa: ANN202 - test helper
    mu = random_municipalities(seed, total_capacity=households * 2, n_places=places)
    mu = mu.with_columns(min_persons=np.where(np.arange(mu.height) % 4 == 0, 6, 0))
    hh = random_households(households, seed, places=mu)
    return build_problem(hh, mu, score_pairs(candidate_pairs(hh, mu), hh, mu))


def test_smoothed_dual_gradient_matches_finite_differences() -> None:
    problem = _round(60, 8)
    pairs = large_scale._usable_pairs(problem)
    lag = large_scale._Lagrangian(problem, pairs, pairs.score, keep_persons=20.0)
    working = lag.working(np.arange(pairs.size))
    v = np.random.default_rng(3).uniform(0.0, 5.0, lag.n_vars)
    value, grad = lag.smoothed(v, working, tau=2.0)
    for k in np.random.default_rng(4).choice(lag.n_vars, 12, replace=False):
        step = np.zeros(lag.n_vars)
        step[k] = 1e-5
        numeric = (lag.smoothed(v + step, working, 2.0)[0] - lag.smoothed(v - step, working, 2.0)[0]) / 2e-5
        assert abs(numeric - grad[k]) <= 1e-4 * max(1.0, abs(numeric))
    # The smoothed dual is above the exact one at the same multipliers (entropy term >= 0).
    assert value >= lag.bound(lag.unpack(v))[0] - 1e-6


def test_bounds_hold_against_the_exact_model_with_minimum_intakes_and_locks() -> None:
    problem = _round()
    assert (problem.min_intake > 0).any()
    problem.locked = [(int(problem.pair_unit[0]), int(problem.pair_place[0]))]
    exact = solve(problem, SolverParams(time_limit_seconds=30, relative_gap=0.0, backend="cbc"))
    assert exact.status == "optimal"
    large = solve(problem, SolverParams(time_limit_seconds=30, backend="cbc", max_model_pairs=0))
    assert large.solver.endswith("+lagrangian")
    assert check_assignment(problem, large) == []
    assert large.place_of_unit[problem.locked[0][0]] == problem.locked[0][1]
    assert large.persons_bound >= exact.persons_placed
    assert exact.persons_bound >= large.persons_placed
    if large.persons_placed == exact.persons_placed:
        assert large.best_bound >= exact.total_score - 1e-6
        assert large.total_score <= exact.total_score + 1e-6
    assert large.persons_placed >= 0.95 * exact.persons_placed


def test_same_input_same_assignment() -> None:
    problem = _round(120, 10, seed=8)
    params = SolverParams(time_limit_seconds=60, backend="cbc", max_model_pairs=0)
    first = solve(problem, params)
    second = solve(problem, params)
    assert first.place_of_unit.tolist() == second.place_of_unit.tolist()
    assert first.best_bound == second.best_bound
