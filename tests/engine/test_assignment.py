"""Assignment model: hand-built instances with known optima, and the safety net."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest

from rematch_pipeline.engine import assignment
from rematch_pipeline.engine.assignment import (
    STAGE_RESERVE_SECONDS,
    STAGE_RESERVE_SHARE,
    TIME_LIMIT_TOLERANCE,
    _Budget,
    _drop_below,
    solve,
    uses_large_method,
)
from rematch_pipeline.engine.compatibility import candidate_pairs
from rematch_pipeline.engine.lp import solve_lp
from rematch_pipeline.engine.model import _build_model, _set_objective, _solve_stage
from rematch_pipeline.engine.problem import (
    AssignmentProblem,
    SolverParams,
    build_problem,
    check_assignment,
    household_assignment,
    most_units_placed,
)
from rematch_pipeline.engine.scoring import score_pairs
from rematch_pipeline.engine.synthetic import random_households, random_municipalities
from tests.engine.builders import household, households_df, municipalities_df, municipality

EXACT = SolverParams(time_limit_seconds=20, relative_gap=0.0)


def persons_problem(
    persons: list[int],
    capacity: list[int],
    pairs: list[tuple[int, int, float]],
    *,
    min_intake: list[int] | None = None,
    locked: list[tuple[int, int]] | None = None,
    exactly_one: bool = False,
) -> AssignmentProblem:
    """A problem with only the persons resource."""
    return AssignmentProblem(
        unit_ids=[f"u{i}" for i in range(len(persons))],
        place_ids=[f"{j + 1:05d}" for j in range(len(capacity))],
        resources=["persons"],
        usage=np.array(persons, dtype=np.int64)[:, None],
        capacity=np.array(capacity, dtype=np.int64)[:, None],
        min_intake=np.array(min_intake or [0] * len(capacity), dtype=np.int64),
        pair_unit=np.array([p[0] for p in pairs], dtype=np.int64),
        pair_place=np.array([p[1] for p in pairs], dtype=np.int64),
        pair_score=np.array([p[2] for p in pairs], dtype=np.float64),
        locked=locked or [],
        exactly_one=exactly_one,
    )


def three_units() -> AssignmentProblem:
    # A (3 persons), B (2), C (2); P holds 4, Q holds 3. Only A->Q, B->P, C->P places all
    # 7 persons; A->P + B->Q would score more (200) but places only 5.
    return persons_problem(
        [3, 2, 2],
        [4, 3],
        [(0, 0, 100.0), (0, 1, 50.0), (1, 0, 40.0), (1, 1, 100.0), (2, 0, 30.0), (2, 1, 30.0)],
    )


def test_persons_first_then_score() -> None:
    result = solve(three_units(), EXACT)
    assert result.place_of_unit.tolist() == [1, 0, 0]
    assert result.persons_placed == 7
    assert result.total_score == 120.0
    assert result.status == "optimal"
    assert [s.name for s in result.stages] == ["persons", "score"]


def test_far_from_bound_flags_persons_short_or_a_wide_gap() -> None:
    result = solve(three_units(), EXACT)
    assert not result.far_from_bound()  # optimal
    assert dataclasses.replace(result, persons_placed=6, persons_bound=7.0).far_from_bound()
    assert not dataclasses.replace(result, persons_placed=99, persons_bound=100.0).far_from_bound()
    assert dataclasses.replace(result, gap=0.06).far_from_bound()
    assert not dataclasses.replace(result, gap=0.04).far_from_bound()
    # Bounds that were not proven say nothing.
    assert not dataclasses.replace(result, persons_bound=float("inf"), gap=float("inf")).far_from_bound()


@pytest.mark.parametrize("backend", ["scip", "cbc", "highs", "cp_sat"])
def test_every_backend_finds_the_known_optimum(backend: str) -> None:
    result = solve(three_units(), SolverParams(time_limit_seconds=20, relative_gap=0.0, backend=backend))
    assert result.place_of_unit.tolist() == [1, 0, 0]
    assert result.solver == f"ortools-{backend}"
    assert check_assignment(three_units(), result) == []


def test_score_decides_among_persons_optima() -> None:
    # One slot each at P and Q for two 2-person units: both ways place 4 persons.
    problem = persons_problem([2, 2], [2, 2], [(0, 0, 10.0), (0, 1, 90.0), (1, 0, 80.0), (1, 1, 20.0)])
    assert solve(problem, EXACT).place_of_unit.tolist() == [1, 0]


def test_min_intake_nothing_or_at_least_minimum() -> None:
    # P wants >= 5 persons: two 2-person units are not enough, three are.
    two = persons_problem([2, 2], [10, 10], [(0, 0, 90.0), (1, 0, 90.0), (0, 1, 10.0), (1, 1, 10.0)], min_intake=[5, 0])
    result = solve(two, EXACT)
    assert result.place_of_unit.tolist() == [1, 1]
    three = persons_problem(
        [2, 2, 2], [10, 10], [(u, 0, 90.0) for u in range(3)] + [(u, 1, 10.0) for u in range(3)], min_intake=[5, 0]
    )
    assert solve(three, EXACT).place_of_unit.tolist() == [0, 0, 0]


def test_min_intake_above_capacity_means_closed() -> None:
    problem = persons_problem([2], [4, 4], [(0, 0, 99.0), (0, 1, 1.0)], min_intake=[5, 0])
    assert solve(problem, EXACT).place_of_unit.tolist() == [1]


def test_all_resources_respected() -> None:
    problem = AssignmentProblem(
        unit_ids=["a", "b"],
        place_ids=["01001", "01002"],
        resources=["persons", "kita_places"],
        usage=np.array([[2, 1], [2, 1]]),
        capacity=np.array([[10, 1], [10, 1]]),
        min_intake=np.array([0, 0]),
        pair_unit=np.array([0, 0, 1, 1]),
        pair_place=np.array([0, 1, 0, 1]),
        pair_score=np.array([90.0, 10.0, 80.0, 20.0]),
    )
    result = solve(problem, EXACT)
    assert result.place_of_unit.tolist() == [0, 1]  # one kita place each
    assert check_assignment(problem, result) == []


def test_locked_pair_kept_even_if_worse() -> None:
    base = three_units()
    locked = persons_problem(
        [3, 2, 2], [4, 3], list(zip(base.pair_unit.tolist(), base.pair_place.tolist(), base.pair_score.tolist())),
        locked=[(0, 0)],
    )
    result = solve(locked, EXACT)
    assert result.place_of_unit[0] == 0
    assert result.persons_placed == 5
    assert check_assignment(locked, result) == []


def test_exactly_one_infeasible_is_reported() -> None:
    problem = persons_problem([3, 3], [3], [(0, 0, 1.0), (1, 0, 1.0)], exactly_one=True)
    result = solve(problem, EXACT)
    assert result.status == "infeasible"
    assert result.place_of_unit.tolist() == [-1, -1]


def test_exactly_one_places_everyone_when_possible() -> None:
    problem = persons_problem([3, 3], [3, 3], [(0, 0, 90.0), (1, 0, 90.0), (1, 1, 10.0)], exactly_one=True)
    assert solve(problem, EXACT).place_of_unit.tolist() == [0, 1]


def test_maximin_lifts_the_worst_off() -> None:
    # Total: A->P + B->Q = 120 (worst 20); maximin: A->Q + B->P (worst 30).
    problem = persons_problem([2, 2], [2, 2], [(0, 0, 100.0), (0, 1, 30.0), (1, 0, 60.0), (1, 1, 20.0)])
    assert solve(problem, EXACT).place_of_unit.tolist() == [0, 1]
    result = solve(problem, SolverParams(time_limit_seconds=20, relative_gap=0.0, objective="maximin"))
    assert result.place_of_unit.tolist() == [1, 0]
    assert result.min_unit_score == 30.0
    assert [s.name for s in result.stages] == ["persons", "min_score", "score"]


def test_tie_break_prefers_earlier_pairs() -> None:
    problem = persons_problem([1], [5, 5, 5], [(0, 0, 50.0), (0, 1, 50.0), (0, 2, 50.0)])
    assert solve(problem, EXACT).place_of_unit.tolist() == [0]


def test_bound_not_below_objective() -> None:
    mu = random_municipalities(11, total_capacity=300, n_places=12)
    hh = random_households(150, 11, places=mu)
    problem = build_problem(hh, mu, score_pairs(candidate_pairs(hh, mu), hh, mu))
    result = solve(problem, SolverParams(time_limit_seconds=20))
    assert result.status in ("optimal", "feasible")
    assert result.best_bound >= result.objective_value - 1e-6
    assert result.persons_bound >= result.persons_placed
    assert 0.0 <= result.gap <= 1e-4 + 1e-9 or result.status == "feasible"
    assert check_assignment(problem, result) == []


def test_deterministic_and_independent_of_row_order() -> None:
    mu = random_municipalities(7, total_capacity=400, n_places=15)
    hh = random_households(200, 7, places=mu)
    scored = score_pairs(candidate_pairs(hh, mu), hh, mu)
    first = solve(build_problem(hh, mu, scored), EXACT)
    second = solve(
        build_problem(hh.reverse(), mu.sample(fraction=1.0, shuffle=True, seed=2), scored.sample(fraction=1.0, shuffle=True, seed=4)),
        EXACT,
    )
    assert first.place_of_unit.tobytes() == second.place_of_unit.tobytes()
    assert first.total_score == second.total_score
    assert first.persons_placed == second.persons_placed


def linked_round() -> tuple[pl.DataFrame, pl.DataFrame]:
    hh = households_df(
        household("a1", link_group="g", persons=2),
        household("a2", link_group="g", persons=2, pets=True),
        household("b", persons=3),
    )
    mu = municipalities_df(
        municipality("01001", capacity_persons=10, pets_allowed=False),  # a2 cannot go here
        municipality("01002", capacity_persons=4),
        municipality("01003", capacity_persons=3),
    )
    return hh, mu


def test_linked_households_never_split() -> None:
    hh, mu = linked_round()
    scored = score_pairs(candidate_pairs(hh, mu), hh, mu)
    problem = build_problem(hh, mu, scored)
    assert problem.unit_ids == ["b", "g"]
    assert problem.usage[:, problem.persons_index].tolist() == [3, 4]
    g = problem.unit_ids.index("g")
    # The group has pairs only where both are compatible (01002, 01003), and 01003 is
    # too small for 4 persons: the solver must use 01002.
    g_places = sorted(problem.place_ids[j] for u, j in zip(problem.pair_unit, problem.pair_place) if u == g)
    assert g_places == ["01002", "01003"]
    result = solve(problem, EXACT)
    table = household_assignment(problem, result, hh, scored)
    placed = dict(zip(table.get_column("household_pseudonym").to_list(), table.get_column("municipality_id").to_list()))
    assert placed["a1"] == placed["a2"] == "01002"
    assert placed["b"] in ("01001", "01003")
    assert table.get_column("score").null_count() == 0
    assert check_assignment(problem, result) == []


def test_linked_group_unplaced_together_when_no_common_place() -> None:
    hh = households_df(household("a1", link_group="g", pets=True), household("a2", link_group="g", persons=9))
    mu = municipalities_df(municipality("01001", pets_allowed=False, largest_unit_persons=9), municipality("01002"))
    problem = build_problem(hh, mu, score_pairs(candidate_pairs(hh, mu), hh, mu))
    assert problem.pair_unit.size == 0
    result = solve(problem, EXACT)
    assert result.place_of_unit.tolist() == [-1]


def test_build_problem_locks_by_household() -> None:
    hh, mu = linked_round()
    scored = score_pairs(candidate_pairs(hh, mu), hh, mu)
    problem = build_problem(hh, mu, scored, locked=[("a1", "01003")])
    assert problem.locked == [(problem.unit_ids.index("g"), problem.place_ids.index("01003"))]
    result = solve(problem, EXACT)
    assert result.status == "infeasible"  # 4 persons do not fit 3: the lock is honoured, not dropped
    with pytest.raises(ValueError, match="not candidate"):
        build_problem(hh, mu, scored, locked=[("a1", "01001")])


def test_check_assignment_lists_every_violation() -> None:
    problem = persons_problem([3, 3, 1], [4, 4], [(0, 0, 1.0), (1, 0, 1.0), (2, 1, 1.0)], min_intake=[0, 2], locked=[(2, 1)])
    issues = check_assignment(problem, np.array([0, 0, -1]))
    assert any("persons used 6 > capacity 4" in m for m in issues)
    assert any("locked" in m for m in issues)
    issues = check_assignment(problem, np.array([1, -1, 1]))
    assert any("not a candidate" in m for m in issues)
    issues = check_assignment(problem, np.array([-1, -1, 1]))
    assert any("below minimum 2" in m for m in issues)
    assert check_assignment(problem, np.array([0, -1, -1])) != []  # lock broken
    assert check_assignment(problem, np.array([-1, -1, 5])) != []  # out of range


def test_problem_validation() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        persons_problem([1], [1], [(0, 0, 1.0), (0, 0, 2.0)])
    with pytest.raises(ValueError, match="out of range"):
        persons_problem([1], [1], [(0, 3, 1.0)])
    with pytest.raises(ValueError):
        SolverParams(backend="gurobi")  # type: ignore[arg-type]


def test_empty_problem() -> None:
    result = solve(persons_problem([], [5], []), EXACT)
    assert result.place_of_unit.size == 0
    assert result.persons_placed == 0


def test_empty_round_end_to_end() -> None:
    hh = households_df(household("a", pets=True))
    mu = municipalities_df(municipality("01001", pets_allowed=False))
    pairs = candidate_pairs(hh, mu)
    scored = score_pairs(pairs, hh, mu)
    assert scored.height == 0 and "score" in scored.columns
    problem = build_problem(hh, mu, scored)
    result = solve(problem, EXACT)
    assert result.place_of_unit.tolist() == [-1]
    assert household_assignment(problem, result, hh, scored).get_column("municipality_id").to_list() == [None]
    none = households_df()
    assert candidate_pairs(none, mu).height == 0
    assert solve(build_problem(none, mu, score_pairs(candidate_pairs(none, mu), none, mu)), EXACT).place_of_unit.size == 0


def test_large_round_method_against_exact() -> None:
    mu = random_municipalities(21, total_capacity=300, n_places=15)
    hh = random_households(150, 21, places=mu)
    problem = build_problem(hh, mu, score_pairs(candidate_pairs(hh, mu), hh, mu))
    exact = solve(problem, SolverParams(time_limit_seconds=20))
    large = solve(problem, SolverParams(time_limit_seconds=20, max_model_pairs=100))
    assert large.solver.endswith("+lagrangian") and large.bound_scope == "all_pairs"
    assert check_assignment(problem, large) == []
    # Bounds over all pairs bound what the exact model achieves, and vice versa.
    assert large.persons_bound >= exact.persons_placed
    assert large.persons_placed <= exact.persons_bound
    # The heuristics land close on an instance of this size.
    assert large.persons_placed >= 0.9 * exact.persons_placed
    if large.persons_placed == exact.persons_placed:
        assert large.best_bound >= exact.total_score - 1e-6


def gap_round(units: int = 600, places: int = 40, seed: int = 7) -> AssignmentProblem:
    """Persons only, 12 random candidate places per unit, 2 % spare capacity: placing everyone
    is quick, the best total score is not (CBC does not prove it within seconds)."""
    rng = np.random.default_rng(seed)
    persons = rng.integers(1, 5, units)
    pair_unit = np.repeat(np.arange(units), 12)
    pair_place = np.concatenate([np.sort(rng.choice(places, 12, replace=False)) for _ in range(units)])
    return AssignmentProblem(
        unit_ids=[f"u{u:04d}" for u in range(units)],
        place_ids=[f"{j + 1:05d}" for j in range(places)],
        resources=["persons"],
        usage=persons[:, None],
        capacity=np.full((places, 1), int(np.ceil(persons.sum() * 1.02 / places))),
        min_intake=np.zeros(places, dtype=np.int64),
        pair_unit=pair_unit,
        pair_place=pair_place,
        pair_score=np.round(rng.uniform(20, 100, pair_unit.size) * persons[pair_unit], 4),
    )


@pytest.fixture()
def half_a_core() -> Iterator[None]:
    """This thread shares one core with a busy loop, as on a loaded machine: CBC, which reads
    its limit on CPU seconds, gets about half a second of them per wall-clock second."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs Linux CPU affinity")
    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {core})
        yield
    finally:
        busy.kill()
        busy.wait()
        os.sched_setaffinity(0, before)


@pytest.mark.parametrize("objective", ["lexicographic", "maximin"])
def test_exact_solve_keeps_its_time_limit_on_a_loaded_machine(half_a_core: None, objective: str) -> None:
    # Before: every stage's limit went to CBC as CPU seconds: 19.7 s wall for an 8 s limit.
    problem = gap_round()
    start = time.perf_counter()
    result = solve(problem, SolverParams(time_limit_seconds=8, objective=objective))
    assert time.perf_counter() - start <= 8 + TIME_LIMIT_TOLERANCE
    assert result.wall_seconds <= 8 + TIME_LIMIT_TOLERANCE
    assert result.persons_placed == int(problem.usage.sum()) and check_assignment(problem, result) == []


def test_stage_without_time_left_is_skipped_not_overrun() -> None:
    # Before, a stage begun after the deadline still got 0.05 s, and CBC spent its fixed
    # ~0.3 s root LP on top: three stages overran three times.
    params = SolverParams(time_limit_seconds=5)
    late = _Budget(time.perf_counter() - 10, params)
    assert late.seconds(0.5) is None and late.seconds(1.0, last=True) is None
    assert late.seconds(0.4, first=True) == pytest.approx(0.05)  # stage 1 always runs: without it no answer
    status, values, _, _, seconds = late.solve(_build_model(gap_round()), 1.0, None)
    assert (status, values, seconds) == ("not_solved", None, 0.0)
    fresh = _Budget(time.perf_counter(), params)
    assert 0 < fresh.seconds(1.0, last=True) <= 5 - min(STAGE_RESERVE_SECONDS, STAGE_RESERVE_SHARE * 5)


def test_time_limit_cut_is_never_reported_infeasible() -> None:
    # A feasible stage (every person placed is possible) under limits that stop CBC in its
    # preprocessing, which then may say "infeasible" (seen once at 1.4 s on 600 households).
    problem = gap_round()
    model = _build_model(problem)
    model.proto.constraint[model.persons_row].lower_bound = float(problem.usage[:, problem.persons_index].sum())
    _set_objective(model, model.score)
    for limit in (0.001, 0.1, 0.3, 0.6, 1.0, 1.4):
        status, values, *_ = _solve_stage(model, SolverParams(), limit, None)
        assert status != "infeasible", limit
        assert (values is None) == (status == "not_solved")
    # The whole solve too: a cut first stage is "not_solved", never "infeasible".
    assert solve(problem, SolverParams(time_limit_seconds=0.001)).status in ("not_solved", "feasible", "optimal")


def test_proven_infeasible_stays_infeasible() -> None:
    problem = persons_problem([3, 3], [3], [(0, 0, 1.0), (1, 0, 1.0)], exactly_one=True)
    result = solve(problem, SolverParams(time_limit_seconds=20, backend="cbc"))
    assert result.status == "infeasible"


def test_check_names_a_choice_that_is_no_candidate_pair() -> None:
    """check_assignment looks pairs up in a table over the key range (a Python set of a national round's 15 M
    pairs took about 1 GiB at the end of its solve); a non-candidate choice is still named by unit and place."""
    problem = three_units()  # unit 0 may go to P or Q; drop its pair with Q
    keep = ~((problem.pair_unit == 0) & (problem.pair_place == 1))
    problem = persons_problem(
        [3, 2, 2], [4, 3], list(zip(problem.pair_unit[keep].tolist(), problem.pair_place[keep].tolist(), problem.pair_score[keep].tolist()))
    )
    assert check_assignment(problem, np.array([1, 0, -1])) == ["unit u0: 00002 is not a candidate pair"]
    assert check_assignment(problem, np.array([0, -1, -1])) == []


def brute_force_maximin(problem: AssignmentProblem) -> tuple[int, float, float]:
    """(persons, lowest per-household score, total score) of the maximin optimum, by trying
    every assignment of a tiny problem."""
    options = [[-1] + sorted(problem.pair_place[problem.pair_unit == u].tolist()) for u in range(problem.n_units)]
    score = {(int(u), int(j)): float(s) for u, j, s in zip(problem.pair_unit, problem.pair_place, problem.pair_score, strict=True)}
    best: tuple[int, float, float] = (0, 0.0, 0.0)
    for choice in itertools.product(*options):
        place_of = np.array(choice, dtype=np.int64)
        if check_assignment(problem, place_of):
            continue
        placed = [(u, j) for u, j in enumerate(choice) if j >= 0]
        persons = int(sum(problem.usage[u, problem.persons_index] for u, _ in placed))
        lowest = min((score[u, j] / problem.unit_households[u] for u, j in placed), default=100.0)
        total = sum(score[u, j] for u, j in placed)
        best = max(best, (persons, round(lowest, 6), round(total, 6)))
    return best


def small_maximin_round(seed: int) -> AssignmentProblem:
    """7 units (linked groups of 1-2 households) x 3 places, two resources, a minimum intake:
    small enough for brute force."""
    rng = np.random.default_rng(seed)
    units, places = 7, 3
    pairs = [(u, j) for u in range(units) for j in range(places) if rng.random() < 0.7]
    problem = AssignmentProblem(
        unit_ids=[f"u{u}" for u in range(units)],
        place_ids=[f"{j + 1:05d}" for j in range(places)],
        resources=["persons", "rooms"],
        usage=np.stack([rng.integers(1, 5, units), rng.integers(0, 3, units)], axis=1),
        capacity=np.stack([rng.integers(3, 8, places), rng.integers(2, 5, places)], axis=1),
        min_intake=np.array([0, 3, 0]),
        pair_unit=np.array([u for u, _ in pairs]),
        pair_place=np.array([j for _, j in pairs]),
        pair_score=np.round(rng.uniform(10, 100, len(pairs)), 4),
        unit_households=rng.integers(1, 3, units),
    )
    problem.pair_score = problem.pair_score * problem.unit_households[problem.pair_unit]
    return problem


@pytest.mark.parametrize("seed", range(6))
def test_maximin_reaches_the_brute_force_optimum(seed: int) -> None:
    # Persons first, then the lowest per-household score (linked groups: their mean), then the
    # total, with minimum intakes and a second resource in the way.
    problem = small_maximin_round(seed)
    result = solve(problem, SolverParams(time_limit_seconds=20, relative_gap=0.0, objective="maximin"))
    persons, lowest, total = brute_force_maximin(problem)
    assert check_assignment(problem, result) == []
    assert result.persons_placed == persons
    assert result.min_unit_score == pytest.approx(lowest)
    assert result.total_score == pytest.approx(total)
    stage = {s.name: s for s in result.stages}["min_score"]
    assert stage.status == "optimal" and stage.best_bound == pytest.approx(lowest)


@pytest.mark.parametrize("seed", range(3))
def test_maximin_weighs_the_scores_where_cbc_finds_no_score_answer(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 1,000 households x 40 CBC's score stage found nothing in 60 s: the proposals were the lowest-score
    stage's, their total unbounded (gap inf). Above max_model_units the score stage is the large path's, on
    the pairs at or above the lowest score: the same persons and lowest score, the total weighed and bounded."""
    plain = assignment._Budget.solve

    def score_stage_finds_nothing(self, model, share, hint, **kwargs):  # noqa: ANN001, ANN202
        if kwargs.get("last"):
            return "not_solved", None, float("nan"), float("nan"), 0.0
        return plain(self, model, share, hint, **kwargs)

    monkeypatch.setattr(assignment._Budget, "solve", score_stage_finds_nothing)
    problem = small_maximin_round(seed)
    result = solve(problem, SolverParams(time_limit_seconds=20, relative_gap=0.0, objective="maximin", max_model_units=1))
    persons, lowest, total = brute_force_maximin(problem)
    assert check_assignment(problem, result) == []
    assert result.persons_placed == persons and result.min_unit_score == pytest.approx(lowest)
    stage = result.stages[-1]
    assert stage.name == "score" and math.isfinite(stage.best_bound) and stage.best_bound >= total - 1e-6
    assert result.total_score == pytest.approx(total), "the large path proves these tiny rounds"


def test_a_wall_clock_cut_of_maximins_large_score_stage_names_the_time_limit(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Maximin's large-path score stage gets the wall clock the round's time limit left, so when that clock cuts
    it the advice is a longer time_limit_seconds (a longer wall_limit_seconds changes nothing there)."""
    from rematch_pipeline.engine import large_scale
    from rematch_pipeline.engine.large_scale import pricing, search

    insert = search._insert_unplaced

    def slow_insert(lag: pricing._Lagrangian, *args: Any, **kwargs: Any) -> np.ndarray:
        # A slow machine in the answer step: past the wall-clock limit before the search ends.
        time.sleep(lag.clock.wall_left() + 0.1)
        return insert(lag, *args, **kwargs)

    monkeypatch.setattr(search, "_insert_unplaced", slow_insert)
    mu = random_municipalities(13, total_capacity=1_400, n_places=20)
    hh = random_households(700, 13, places=mu)
    problem = build_problem(hh, mu, score_pairs(candidate_pairs(hh, mu), hh, mu))
    with caplog.at_level("WARNING", logger=large_scale.__name__):
        result = solve(problem, SolverParams(time_limit_seconds=10, objective="maximin", max_model_units=1))
    assert check_assignment(problem, result) == [] and not result.reproducible
    assert not caplog.records, "said through the result, in the round's log, not as a bare log line"
    cut = [m for m in result.notes if "wall-clock limit stopped this solve" in m]
    assert cut and all("time_limit_seconds" in m and "wall_limit_seconds" not in m for m in cut)


def test_maximin_proves_its_lowest_score_on_600_units() -> None:
    # Before: a threshold variable with big-M rows, on which CBC ended the lowest-score stage
    # with a 93 % gap; thresholds on the persons model prove it (LP: thresholds above it
    # cannot place every person) and the whole solve keeps its limit.
    problem = gap_round()
    start = time.perf_counter()
    result = solve(problem, SolverParams(time_limit_seconds=20, objective="maximin"))
    assert time.perf_counter() - start <= 20 + TIME_LIMIT_TOLERANCE
    stage = {s.name: s for s in result.stages}["min_score"]
    assert result.persons_placed == int(problem.usage.sum()) and check_assignment(problem, result) == []
    assert stage.status == "optimal" and stage.best_bound == pytest.approx(stage.objective_value)
    assert result.min_unit_score == pytest.approx(stage.objective_value)
    # No assignment placing everyone keeps every unit above it: the LP of the pairs at or above
    # the next higher score already places fewer persons.
    above = problem.pair_score > stage.objective_value + 1e-6
    higher = float(problem.pair_score[above].min())
    model = _build_model(problem)
    _drop_below(model, higher)
    _set_objective(model, model.persons)
    lp = solve_lp(model.proto, 20.0)
    assert lp is not None and lp.value < problem.usage.sum() - 1e-6


def test_maximin_confirms_the_lp_threshold_with_one_mip(monkeypatch: pytest.MonkeyPatch) -> None:
    """The LP alone finds the highest threshold it cannot rule out, and one persons MIP there
    reaches it. Before, the search alternated LP and MIP probes from the middle: three MIPs
    on this round, each about a persons stage's time (the 600 × 40 rounds at 60 s ran out of
    time on probes that would have reached)."""
    solves: list[float] = []

    def counted(*args: Any, **kwargs: Any) -> tuple[str, np.ndarray | None, float, float, float, int]:
        out = _solve_stage(*args, **kwargs)
        solves.append(out[4])
        return out

    monkeypatch.setattr("rematch_pipeline.engine.assignment._solve_stage", counted)
    result = solve(gap_round(), SolverParams(time_limit_seconds=20, objective="maximin"))
    stage = {s.name: s for s in result.stages}["min_score"]
    assert stage.status == "optimal" and result.min_unit_score == pytest.approx(stage.objective_value)
    assert len(solves) == 3  # persons, one threshold probe, score


def test_maximin_proves_its_lowest_score_on_a_loaded_machine(half_a_core: None) -> None:
    """Half a core and a 10 s limit: the lowest-score stage gets about 4.5 s of wall clock. Its
    LPs (GLOP from the last basis) and the one MIP at the LP's threshold took 1.1 s; before,
    HiGHS' LPs and the MIPs of a bisection did not fit (4.4 s, lowest score 54.18 of 68.58)."""
    problem = gap_round()
    result = solve(problem, SolverParams(time_limit_seconds=10, objective="maximin"))
    stage = {s.name: s for s in result.stages}["min_score"]
    assert result.persons_placed == int(problem.usage.sum()) and check_assignment(problem, result) == []
    assert stage.status == "optimal", stage


def test_maximin_keeps_a_lock_that_scores_below_the_others() -> None:
    """A locked pair scoring below every other: the threshold search must not fix it to 0 (its probes' LP
    was refused as invalid: lower bound 1 above upper bound 0), and no lowest score above it is claimed."""
    problem = persons_problem([1, 1, 1], [2, 2], [(0, 0, 5.0), (0, 1, 80.0), (1, 0, 70.0), (1, 1, 60.0), (2, 1, 90.0)], locked=[(0, 0)])
    result = solve(problem, SolverParams(time_limit_seconds=10, objective="maximin", relative_gap=0.0))
    assert check_assignment(problem, result) == [] and result.place_of_unit[0] == 0
    assert result.min_unit_score == 5.0 and result.persons_placed == 3
    min_stage = next(s for s in result.stages if s.name == "min_score")
    assert min_stage.best_bound <= 5.0 + 1e-9


def test_the_time_limit_by_size_grows_with_the_pairs_between_its_floor_and_its_cap() -> None:
    from rematch_pipeline.engine.problem import time_limit_for

    assert time_limit_for(0) == time_limit_for(3_000_000) == 60.0  # up to a 10,000 x 401 round
    assert time_limit_for(14_790_251) == 296.0  # the national 50,000 x 401 round
    assert time_limit_for(10**9) == 600.0
    assert time_limit_for(3_000_001) == 61.0  # whole seconds, rounded up


def test_an_unproven_answer_gets_the_exchanges_and_a_dropped_pair_stays_out() -> None:
    from rematch_pipeline.engine.assignment import _exchange_passes

    # Units 0 and 1 use the same (2 persons) and sit crossed: each scores 10 where the other is.
    problem = persons_problem(
        [2, 2, 2], [2, 2, 2],
        [(0, 0, 10.0), (0, 1, 90.0), (1, 0, 90.0), (1, 1, 10.0), (2, 2, 50.0), (2, 0, 95.0)],
    )
    model = _build_model(problem)
    crossed = (model.unit == 0) & (model.place == 0) | (model.unit == 1) & (model.place == 1) | (model.unit == 2) & (model.place == 2)
    x = _exchange_passes(problem, model, crossed, time.perf_counter() + 5)
    chosen = sorted(zip(model.unit[x].tolist(), model.place[x].tolist(), strict=True))
    assert chosen == [(0, 1), (1, 0), (2, 2)]  # 0 and 1 swap; 2 cannot take place 0, which unit 1 now holds
    assert model.score[x].sum() == 230.0 > model.score[crossed].sum() == 70.0

    # A pair the model no longer allows (maximin's dropped pairs: upper bound 0) is never taken.
    model.proto.variable[int(np.flatnonzero((model.unit == 1) & (model.place == 0))[0])].upper_bound = 0.0
    x = _exchange_passes(problem, model, crossed, time.perf_counter() + 5)
    assert sorted(zip(model.unit[x].tolist(), model.place[x].tolist(), strict=True)) == [(0, 0), (1, 1), (2, 2)]


def test_a_lexicographic_round_of_many_units_to_place_takes_the_large_path() -> None:
    problem = three_units()
    assert solve(problem, EXACT).solver == "ortools-cbc"
    assert solve(problem, dataclasses.replace(EXACT, max_model_units=2)).solver == "ortools-scip+lagrangian"
    assert solve(problem, dataclasses.replace(EXACT, max_model_units=2, objective="maximin")).solver == "ortools-cbc"
    # Units that cannot all be placed together do not count: with room for 2 of the 3, the exact path stays.
    tight = persons_problem([3, 2, 2], [2, 2], [(0, 0, 100.0), (0, 1, 50.0), (1, 0, 40.0), (1, 1, 100.0), (2, 0, 30.0), (2, 1, 30.0)])
    assert most_units_placed(problem) == 3 and most_units_placed(tight) == 2
    assert solve(tight, dataclasses.replace(EXACT, max_model_units=2)).solver == "ortools-cbc"


def test_a_state_round_over_many_districts_takes_the_large_path_by_its_pairs() -> None:
    """400 households over 100 districts (~25,000 candidate pairs, under 150,000 and 800 units) went to the exact
    path, where CBC's score stage found no answer in 60 s on such rounds (400 x 100: 23,629 points, the scores
    unweighed, no bound, not reproducible; the large path 27,219, gap 1.5 %; twenty-seventh session). The demo's
    shape (400 x 40, ~12,000 pairs) stays exact, and so does a round where few of the units can be placed."""
    def synthetic(places: int, capacity: float) -> AssignmentProblem:
        hh = random_households(400, 1)
        mu = random_municipalities(1, total_capacity=int(capacity * hh.get_column("persons").sum()), n_places=places)
        hh = random_households(400, 1, places=mu)
        return build_problem(hh, mu, score_pairs(candidate_pairs(hh, mu), hh, mu))

    state, demo_like, tight = synthetic(100, 2.0), synthetic(40, 2.0), synthetic(100, 0.3)
    defaults = SolverParams()
    assert state.pair_unit.size < defaults.max_model_pairs and most_units_placed(state) < defaults.max_model_units
    assert uses_large_method(state, defaults)
    assert not uses_large_method(demo_like, defaults)
    # Units that cannot all be placed do not count: 160 of 397 fit, with their share of the pairs.
    lower = dataclasses.replace(defaults, max_exact_pairs=10_000)
    assert tight.pair_unit.size > lower.max_exact_pairs and not uses_large_method(tight, lower)
    assert not uses_large_method(state, dataclasses.replace(defaults, objective="maximin"))


def tied_round(names: list[str]) -> AssignmentProblem:
    """30 units of 1-3 persons, 6 places with room for two thirds of them, scores 10 or 20: many
    answers tie, so the tie-break (pair order) decides among them. Unit u is named names[u]."""
    rng = np.random.default_rng(3)
    persons = rng.integers(1, 4, 30)
    pair_unit = np.repeat(np.arange(30), 4)
    pair_place = np.concatenate([np.sort(rng.choice(6, 4, replace=False)) for _ in range(30)])
    return AssignmentProblem(
        unit_ids=names,
        place_ids=[f"{j + 1:05d}" for j in range(6)],
        resources=["persons"],
        usage=persons[:, None],
        capacity=np.full((6, 1), int(persons.sum() * 2 // 3 // 6)),
        min_intake=np.zeros(6, dtype=np.int64),
        pair_unit=pair_unit,
        pair_place=pair_place,
        pair_score=rng.choice([10.0, 20.0], pair_unit.size),
    )


@pytest.mark.parametrize("params", [EXACT, SolverParams(time_limit_seconds=5, max_model_pairs=0)], ids=["exact", "large"])
def test_two_data_homes_with_the_same_questionnaires_get_the_same_proposals(params: SolverParams) -> None:
    # Another data home's secret gives the same units other pseudonyms, in another order.
    names = [f"p{u:02d}" for u in range(30)]
    other = [f"q{(u * 7) % 30:02d}" for u in range(30)]  # sorted, a shuffled order of the units
    places = []
    for ids in (names, other):
        problem = tied_round(ids)
        order = np.argsort(ids)  # build_problem's order: by id
        shuffled = dataclasses.replace(
            problem,
            unit_ids=[ids[u] for u in order],
            usage=problem.usage[order],
            pair_unit=np.argsort(order)[problem.pair_unit],
        )
        result = solve(shuffled, params)
        assert result.status == "optimal" or params.max_model_pairs == 0
        place_of = np.empty(30, dtype=np.int64)
        place_of[order] = result.place_of_unit
        places.append(place_of.tolist())
    assert places[0] == places[1]


def test_a_large_relative_gap_never_lets_the_persons_stage_stop_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """relative_gap 0.3 stops the score stage early, but the persons stage only at a proven gap
    below one person: persons rank first and come whole (a 0.3 % gap let the demo round's
    persons stage stop at 935 of 937)."""
    gaps: list[float] = []
    solve_stage = assignment._solve_stage

    def recorded(model, params, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - passes through
        gaps.append(params.relative_gap)
        return solve_stage(model, params, *args, **kwargs)

    monkeypatch.setattr(assignment, "_solve_stage", recorded)
    problem = tied_round([f"p{u:02d}" for u in range(30)])
    result = solve(problem, dataclasses.replace(EXACT, relative_gap=0.3))
    every_person = int(problem.usage[:, 0].sum())
    assert gaps[0] < 1.0 / every_person
    assert gaps[-1] == 0.3
    assert result.persons_placed == result.persons_bound
