"""The exact exchange within usage classes: cycles no pairwise swap finds, room at other places,
minimum intakes and locks kept, and on one class the best re-seating brute force finds."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rematch_pipeline.engine import exchange
from rematch_pipeline.engine.exchange import exchange_within_classes, usage_classes
from rematch_pipeline.engine.problem import AssignmentProblem, check_assignment

PERSON_WEIGHT = 1000.0


def _problem(usage: list[list[int]], capacity: list[list[int]], min_intake: list[int], scores: dict[tuple[int, int], float]) -> AssignmentProblem:
    pairs = sorted(scores)
    return AssignmentProblem(
        unit_ids=[f"u{u}" for u in range(len(usage))],
        place_ids=[f"{j + 1:05d}" for j in range(len(capacity))],
        resources=["persons", "kita_places"][: len(usage[0])],
        usage=np.array(usage, dtype=np.int64),
        capacity=np.array(capacity, dtype=np.int64),
        min_intake=np.array(min_intake, dtype=np.int64),
        pair_unit=np.array([u for u, _ in pairs], dtype=np.int64),
        pair_place=np.array([j for _, j in pairs], dtype=np.int64),
        pair_score=np.array([scores[p] for p in pairs], dtype=np.float64),
    )


def _exchange(problem: AssignmentProblem, place_of: list[int], frozen: list[int] = ()) -> exchange.ExchangeResult:
    keys = problem.pair_unit * problem.n_places + problem.pair_place
    order = np.argsort(keys)
    locked = np.zeros(problem.n_units, dtype=bool)
    locked[list(frozen)] = True
    return exchange_within_classes(
        problem.usage, problem.capacity, problem.min_intake, problem.persons_index,
        keys[order], problem.pair_score[order], np.array(place_of, dtype=np.int64), locked, PERSON_WEIGHT,
    )


def _objective(problem: AssignmentProblem, place_of: np.ndarray) -> float:
    score = {(int(u), int(j)): s for u, j, s in zip(problem.pair_unit, problem.pair_place, problem.pair_score, strict=True)}
    return sum(PERSON_WEIGHT * problem.usage[u, problem.persons_index] + score[(u, int(j))] for u, j in enumerate(place_of) if j >= 0)


def test_a_three_way_cycle_that_no_swap_of_two_improves_is_found() -> None:
    # Each household sits at its second choice; its first choice is held by the next one.
    scores = {(0, 0): 50.0, (0, 1): 90.0, (1, 1): 50.0, (1, 2): 90.0, (2, 2): 50.0, (2, 0): 90.0}
    problem = _problem([[2], [2], [2]], [[2], [2], [2]], [0, 0, 0], scores)
    done = _exchange(problem, [0, 1, 2])
    assert done.place_of.tolist() == [1, 2, 0]
    assert done.moved == 3 and done.gain == 120.0
    assert check_assignment(problem, done.place_of) == []


def test_room_left_at_another_place_seats_an_unplaced_household_of_the_class() -> None:
    # u1 is out; place 1 still has room for one more household of two persons.
    scores = {(0, 0): 80.0, (0, 1): 10.0, (1, 0): 70.0}
    problem = _problem([[2], [2]], [[2], [4]], [0, 0], scores)
    done = _exchange(problem, [0, -1])
    # Persons first: u0 makes way at place 0 for u1, who can only go there.
    assert done.place_of.tolist() == [1, 0]
    assert done.gain == PERSON_WEIGHT * 2 + 70.0 + 10.0 - 80.0


def test_a_place_is_never_left_below_its_minimum_intake_and_locked_units_stay() -> None:
    scores = {(0, 0): 10.0, (0, 1): 90.0, (1, 1): 20.0, (1, 0): 95.0}
    # Place 0 needs at least 4 persons: u0 alone there (2 persons) must not be swapped out for nothing.
    problem = _problem([[2], [2]], [[4], [4]], [2, 0], scores)
    assert _exchange(problem, [0, 1]).place_of.tolist() == [1, 0]  # the swap keeps 2 persons at place 0
    assert _exchange(problem, [0, 1], frozen=[1]).place_of.tolist() == [0, 1]
    # Place 0 needs 4 persons and has u0 and u2; u0 would rather be at place 1, which has room,
    # but leaving would drop place 0 to 2 persons.
    scores = {(0, 0): 10.0, (0, 1): 90.0, (1, 1): 20.0, (2, 0): 30.0}
    problem = _problem([[2], [2], [2]], [[4], [6]], [4, 0], scores)
    done = _exchange(problem, [0, 1, 0])
    assert done.place_of.tolist() == [0, 1, 0] and done.gain == 0.0


@st.composite
def one_class(draw: st.DrawFn) -> tuple[AssignmentProblem, np.ndarray, list[int]]:
    n_units = draw(st.integers(2, 5))
    n_places = draw(st.integers(1, 3))
    need = [draw(st.integers(1, 3)), draw(st.integers(0, 2))]
    capacity = [[draw(st.integers(0, 9)), draw(st.integers(0, 4))] for _ in range(n_places)]
    min_intake = [draw(st.sampled_from([0, 0, 2, 4])) for _ in range(n_places)]
    scores = {(u, j): draw(st.integers(0, 100)) / 4 for u in range(n_units) for j in range(n_places) if draw(st.booleans())}
    problem = _problem([need] * n_units, capacity, min_intake, scores or {(0, 0): 1.0})
    options = [[-1, *[j for (uu, j) in sorted(scores) if uu == u]] for u in range(n_units)]
    feasible = [np.array(c) for c in itertools.product(*options) if not check_assignment(problem, np.array(c))]
    start = feasible[draw(st.integers(0, len(feasible) - 1))]
    frozen = [u for u in range(n_units) if start[u] >= 0 and draw(st.integers(0, 4)) == 0]
    return problem, start, frozen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(one_class())
def test_on_one_class_the_exchange_is_the_best_reseating_and_breaks_no_rule(case: tuple[AssignmentProblem, np.ndarray, list[int]]) -> None:
    problem, start, frozen = case
    done = _exchange(problem, start.tolist(), frozen)
    after = done.place_of
    assert check_assignment(problem, after) == []
    assert all(after[u] == start[u] for u in frozen)
    assert ((start < 0) | (after >= 0)).all()  # placed units stay placed
    before = _objective(problem, start)
    assert abs(_objective(problem, after) - before - done.gain) < 1e-6 and done.gain >= 0
    # Brute force over the same neighbourhood: placed units stay placed, frozen ones stay, each place
    # takes at most the units it held plus ROOM_SLOTS more, and a place with a minimum intake keeps
    # what it held (emptying it is the MIPs' move) and is not opened by this class.
    held = np.bincount(start[start >= 0], minlength=problem.n_places)
    persons = problem.usage[0, problem.persons_index]
    guarded = problem.min_intake > 0
    closed = guarded & (held == 0) & (problem.min_intake > persons)
    options = []
    for u in range(problem.n_units):
        mine = [int(j) for uu, j in zip(problem.pair_unit, problem.pair_place, strict=True) if uu == u]
        options.append([int(start[u])] if u in frozen else (mine if start[u] >= 0 else [-1, *mine]))
    best = before
    for combo in itertools.product(*options):
        c = np.array(combo, dtype=np.int64)
        count = np.bincount(c[c >= 0], minlength=problem.n_places)
        out_of_reach = (count > held + exchange.ROOM_SLOTS) | (guarded & (count < held)) | (closed & (count > 0))
        if out_of_reach.any() or check_assignment(problem, c):
            continue
        best = max(best, _objective(problem, c))
    assert abs(_objective(problem, after) - best) < 1e-6


def test_classes_are_numbered_by_usage_rows_in_ascending_order() -> None:
    usage = np.array([[3, 1], [2, 0], [3, 1], [2, 1]])
    assert usage_classes(usage).tolist() == [2, 0, 2, 1]


def test_a_budget_leaves_out_the_parts_it_cannot_pay_for_smallest_first() -> None:
    # Two classes, each one swap away from its best: the class of one person (2 units) is the
    # cheaper part and comes first; a budget that pays for it alone leaves the other as it was.
    scores = {(0, 0): 10.0, (0, 1): 50.0, (1, 1): 10.0, (1, 0): 50.0}
    scores |= {(2, 0): 10.0, (2, 1): 60.0, (3, 1): 10.0, (3, 0): 60.0, (4, 0): 30.0}
    problem = _problem([[1], [1], [2], [2], [2]], [[9], [9]], [0, 0], scores)
    start = [0, 1, 0, 1, 0]
    keys = problem.pair_unit * problem.n_places + problem.pair_place

    def run(budget: float) -> exchange.ExchangeResult:
        return exchange_within_classes(
            problem.usage, problem.capacity, problem.min_intake, problem.persons_index, keys, problem.pair_score,
            np.array(start), np.zeros(5, dtype=bool), PERSON_WEIGHT, lambda entries, solved: solved, budget,
        )

    assert run(0.0).place_of.tolist() == start
    assert run(2.0**3).place_of.tolist() == [1, 0, 0, 1, 0]
    everything = run(np.inf)
    assert everything.place_of.tolist() == [1, 0, 1, 0, 0] and everything.gain == 80.0 + 100.0


def test_units_without_any_usable_pair_are_left_as_they_are() -> None:
    problem = _problem([[1], [1]], [[3]], [0], {(0, 0): 5.0})
    empty = np.zeros(0, dtype=np.int64)
    done = exchange_within_classes(
        problem.usage, problem.capacity, problem.min_intake, problem.persons_index, empty, np.zeros(0), np.array([-1, -1]),
        np.zeros(2, dtype=bool), PERSON_WEIGHT,
    )
    assert done.place_of.tolist() == [-1, -1] and done.gain == 0.0
