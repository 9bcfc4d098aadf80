"""Deferred acceptance and stability diagnostics (rematch_pipeline.engine.mechanisms).

Golden instances from the `matching` package's tests and docs (tests/engine/data,
see PROVENANCE.md), agreement with `matching` 1.4.3 on random hospital/resident
instances, a naive reference implementation of multi-resource DA, and properties.
"""

from __future__ import annotations

import csv
import json
import random
import re
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rematch_pipeline.engine.mechanisms import (
    assignment_summary,
    blocking_pairs,
    compare_with_deferred_acceptance,
    deferred_acceptance,
    hospital_resident,
    justified_envy,
    stability_report,
    student_allocation,
)
from rematch_pipeline.engine.problem import AssignmentProblem, check_assignment

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- helpers


def make_problem(
    usage: list[list[int]],
    capacity: list[list[int]],
    pairs: list[tuple[int, int, float]],
    *,
    resources: list[str] | None = None,
    locked: list[tuple[int, int]] | None = None,
) -> AssignmentProblem:
    """Small AssignmentProblem from lists; pairs are (unit, place, score)."""
    n_res = len(capacity[0]) if capacity else 1
    resources = resources or ["persons", "housing_units", "kita_places", "accessible_units"][:n_res]
    return AssignmentProblem(
        unit_ids=[f"u{u}" for u in range(len(usage))],
        place_ids=[f"{j + 1:05d}" for j in range(len(capacity))],
        resources=resources,
        usage=np.asarray(usage, dtype=np.int64).reshape(len(usage), n_res),
        capacity=np.asarray(capacity, dtype=np.int64).reshape(len(capacity), n_res),
        min_intake=np.zeros(len(capacity), dtype=np.int64),
        pair_unit=np.asarray([p[0] for p in pairs], dtype=np.int64),
        pair_place=np.asarray([p[1] for p in pairs], dtype=np.int64),
        pair_score=np.asarray([p[2] for p in pairs], dtype=np.float64),
        locked=locked or [],
    )


def random_problem(
    rng: np.random.Generator,
    n_units: int,
    n_places: int,
    n_res: int,
    *,
    k: int = 4,
    unit_usage: bool = False,
    lock_share: float = 0.0,
) -> AssignmentProblem:
    """Random multi-resource problem; scores have 1 decimal so ties occur."""
    usage = rng.integers(0, 4, (n_units, n_res))
    usage[:, 0] = 1 if unit_usage else rng.integers(1, 6, n_units)
    capacity = rng.integers(0, 3 * max(1, n_units // max(n_places, 1)) + 4, (n_places, n_res))
    pairs: list[tuple[int, int, float]] = []
    for u in range(n_units):
        places = rng.choice(n_places, size=min(k, n_places), replace=False)
        for j in sorted(places.tolist()):
            if rng.random() < 0.85:
                pairs.append((u, j, float(rng.integers(0, 50)) / 10))
    locked: list[tuple[int, int]] = []
    if lock_share:
        load = np.zeros_like(capacity)
        for u, j, _ in pairs:
            if rng.random() < lock_share and u not in {x for x, _ in locked}:
                if (load[j] + usage[u] <= capacity[j]).all():
                    load[j] += usage[u]
                    locked.append((u, j))
    return make_problem(usage.tolist(), capacity.tolist(), pairs, locked=locked)


def naive_da(problem: AssignmentProblem) -> np.ndarray:
    """Reference multi-resource DA written for clarity, not speed (default priorities).

    FIFO queue of free units in index order; a place recomputes its greedy choice over
    holders + proposer on every proposal; rejected holders join the queue in priority
    order. Must agree exactly with deferred_acceptance.
    """
    n_u = problem.n_units
    pu, pj, ps = problem.pair_unit.tolist(), problem.pair_place.tolist(), problem.pair_score.tolist()
    triples = zip(pu, pj, ps, strict=True)
    score = {(u, j): s for u, j, s in triples}
    cap = problem.capacity.copy()
    place_of = np.full(n_u, -1, dtype=np.int64)
    locked = dict(problem.locked)
    for u, j in locked.items():
        place_of[u] = j
        cap[j] -= problem.usage[u]
    lists = {
        u: sorted((j for (v, j) in score if v == u), key=lambda j, u=u: (-score[(u, j)], j))
        for u in range(n_u)
        if u not in locked
    }
    nxt = dict.fromkeys(lists, 0)
    held: dict[int, list[int]] = {j: [] for j in range(problem.n_places)}
    queue = deque(u for u in range(n_u) if u not in locked)
    while queue:
        u = queue.popleft()
        while nxt[u] < len(lists[u]):
            j = lists[u][nxt[u]]
            nxt[u] += 1
            group = sorted([*held[j], u], key=lambda v, j=j: (-score[(v, j)], v))
            left = cap[j].copy()
            keep, out = [], []
            for v in group:
                if (problem.usage[v] <= left).all():
                    left -= problem.usage[v]
                    keep.append(v)
                else:
                    out.append(v)
            held[j] = keep
            for v in out:
                if v != u:
                    place_of[v] = -1
                    queue.append(v)
            if u in keep:
                place_of[u] = j
                break
    return place_of


def matching_hr(resident_prefs, hospital_prefs, capacities, optimal: str) -> dict[str, list[str]]:
    """Solve with the `matching` package (reference implementation)."""
    from matching.games import HospitalResident

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        game = HospitalResident.create_from_dictionaries(
            resident_prefs, hospital_prefs, capacities, clean=True
        )
        solution = game.solve(optimal=optimal)
    return {str(h): [str(r) for r in rs] for h, rs in solution.items()}


def nonempty(matching: dict[str, list[str]]) -> dict[str, list[str]]:
    return {h: rs for h, rs in matching.items() if rs}


# --------------------------------------------------------------------------- HR golden


HR_EXAMPLES = json.loads((DATA / "hr_examples_from_tests.json").read_text())
HR_NAMES = sorted(k for k in HR_EXAMPLES if not k.startswith("_"))


@pytest.mark.parametrize("name", HR_NAMES)
def test_hr_examples_resident_optimal(name: str) -> None:
    inst = HR_EXAMPLES[name]
    expected = inst.get("expected_resident_optimal") or inst["computed_by_matching_1.4.3_resident_optimal"]
    got = hospital_resident(inst["resident_prefs"], inst["hospital_prefs"], inst["capacities"])
    assert got == expected  # hospital lists in the hospital's preference order, as asserted


@pytest.mark.parametrize("name", HR_NAMES)
def test_hr_examples_hospital_optimal_agrees_with_matching(name: str) -> None:
    inst = HR_EXAMPLES[name]
    args = (inst["resident_prefs"], inst["hospital_prefs"], inst["capacities"])
    got = hospital_resident(*args, optimal="hospital")
    assert nonempty(got) == nonempty(matching_hr(*args, optimal="hospital"))


def test_hr_check_stability_example_unstable_matching_has_blocking_pair() -> None:
    """The test's {X: [C], Y: [A, B]} is unstable: A prefers X, and X has room."""
    inst = HR_EXAMPLES["check_stability_example"]
    residents, hospitals = list(inst["resident_prefs"]), list(inst["hospital_prefs"])
    r_lists = [[hospitals.index(h) for h in inst["resident_prefs"][r]] for r in residents]
    h_lists = [[residents.index(r) for r in inst["hospital_prefs"][h]] for h in hospitals]
    pairs = [(u, j, 0.0) for u, lst in enumerate(r_lists) for j in lst]
    problem = make_problem(
        [[1]] * len(residents), [[inst["capacities"][h]] for h in hospitals], pairs, resources=["persons"]
    )
    x, y = hospitals.index("X"), hospitals.index("Y")
    a, b, c = (residents.index(n) for n in "ABC")
    unstable = np.full(len(residents), -1)
    unstable[[c, a, b]] = [x, y, y]
    assert blocking_pairs(problem, unstable, r_lists, h_lists) == [(a, x)]
    stable = deferred_acceptance(problem, r_lists, h_lists)
    assert blocking_pairs(problem, stable, r_lists, h_lists) == []


def test_hr_issue_159_dirty_preferences_agree_with_matching() -> None:
    """Unreciprocated and empty preference lists: only mutual pairs are used."""
    raw = json.loads((DATA / "issue_159.json").read_text())
    residents = {str(k): [str(x) for x in v] for k, v in raw["residents"].items()}
    hospitals = {str(k): [str(x) for x in v] for k, v in raw["hospitals"].items()}
    capacities = dict.fromkeys(hospitals, 1)
    for optimal in ("resident", "hospital"):
        got = hospital_resident(residents, hospitals, capacities, optimal=optimal)
        assert nonempty(got) == nonempty(matching_hr(residents, hospitals, capacities, optimal))
        assert sum(map(len, got.values())) > 0


# --------------------------------------------------------------------------- SPA golden


def _tutorial_spa_inputs() -> tuple[dict, dict, dict, dict, dict]:
    """The student-allocation tutorial's data after its cleaning steps (PROVENANCE.md)."""
    with (DATA / "students.csv").open(newline="") as f:
        students = list(csv.DictReader(f))
    with (DATA / "projects.csv").open(newline="") as f:
        projects = list(csv.DictReader(f))
    with (DATA / "supervisors.csv").open(newline="") as f:
        supervisors = list(csv.DictReader(f))
    codes = {p["code"] for p in projects}
    project_supervisor = {p["code"]: p["supervisor"] for p in projects}
    project_capacity = {p["code"]: int(p["capacity"]) for p in projects}
    supervisor_capacity = {s["name"]: int(s["capacity"]) for s in supervisors}
    choice_cols = [str(i) for i in range(25)]
    student_prefs: dict[str, list[str]] = {}
    for row in students:
        picks = list(dict.fromkeys(row[c] for c in choice_cols if row[c] in codes))
        if picks:  # students without choices are dropped
            student_prefs[row["name"]] = picks
    ranked_rows = sorted(students, key=lambda r: int(r["rank"]))
    by_rank = [r["name"] for r in ranked_rows if r["name"] in student_prefs]
    supervisor_prefs: dict[str, list[str]] = {}
    for sup in supervisor_capacity:
        own = {p for p, s in project_supervisor.items() if s == sup}
        ranked = [t for t in by_rank if own & set(student_prefs[t])]
        if ranked:
            supervisor_prefs[sup] = ranked
    chosen = {p for picks in student_prefs.values() for p in picks}
    unranked = codes - chosen
    assert unranked == {"L1"} and set(supervisor_prefs) == set(supervisor_capacity)
    for p in unranked:
        del project_capacity[p], project_supervisor[p]
    for p, sup in project_supervisor.items():
        project_capacity[p] = min(project_capacity[p], supervisor_capacity[sup])
    for sup in supervisor_capacity:
        total = sum(c for p, c in project_capacity.items() if project_supervisor[p] == sup)
        supervisor_capacity[sup] = min(supervisor_capacity[sup], total)
    return student_prefs, supervisor_prefs, project_supervisor, project_capacity, supervisor_capacity


def test_student_allocation_reproduces_tutorial_matching() -> None:
    text = (DATA / "student_allocation_expected_matching.txt").read_text()
    expected = {
        m.group(1): [s.strip() for s in m.group(2).split(",") if s.strip()]
        for m in re.finditer(r"(\w+): \[([^\]]*)\]", text)
    }
    assert len(expected) == 69
    got = student_allocation(*_tutorial_spa_inputs())
    assert got == expected  # same projects, same students, same (supervisor) order


def test_student_allocation_respects_both_capacity_levels() -> None:
    inputs = _tutorial_spa_inputs()
    student_prefs, _, project_supervisor, project_capacity, supervisor_capacity = inputs
    got = student_allocation(*inputs)
    per_supervisor: dict[str, int] = {}
    for p, names in got.items():
        assert len(names) <= project_capacity[p]
        per_supervisor[project_supervisor[p]] = per_supervisor.get(project_supervisor[p], 0) + len(names)
        assert all(p in student_prefs[n] for n in names)
    assert all(n <= supervisor_capacity[s] for s, n in per_supervisor.items())
    placed = [n for names in got.values() for n in names]
    assert len(placed) == len(set(placed))


# --------------------------------------------------------------------------- vs matching


def _random_hr(seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, int]]:
    """Random HR instance with incomplete lists and capacities 1-4 (reciprocated, as
    `matching` expects; a few unreciprocated entries are cleaned by both sides)."""
    rnd = random.Random(seed)
    n_r, n_h = rnd.randint(1, 40), rnd.randint(1, 12)
    residents = [f"r{i}" for i in range(n_r)]
    hospitals = [f"h{j}" for j in range(n_h)]
    r_prefs = {r: rnd.sample(hospitals, rnd.randint(0, n_h)) for r in residents}
    h_prefs = {}
    for h in hospitals:
        applicants = [r for r in residents if h in r_prefs[r]]
        rnd.shuffle(applicants)
        h_prefs[h] = applicants
    if seed % 5 == 0:  # some one-sided entries
        for h in hospitals:
            h_prefs[h] = h_prefs[h][: max(0, len(h_prefs[h]) - 1)]
    capacities = {h: rnd.randint(1, 4) for h in hospitals}
    return r_prefs, h_prefs, capacities


@pytest.mark.parametrize("seed", range(50))
def test_agrees_with_matching_package_on_random_instances(seed: int) -> None:
    r_prefs, h_prefs, capacities = _random_hr(seed)
    for optimal in ("resident", "hospital"):
        got = hospital_resident(r_prefs, h_prefs, capacities, optimal=optimal)
        assert nonempty(got) == nonempty(matching_hr(r_prefs, h_prefs, capacities, optimal)), optimal


# --------------------------------------------------------------------------- multi-resource DA


@pytest.mark.parametrize("seed", range(40))
def test_multi_resource_da_equals_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    problem = random_problem(
        rng,
        int(rng.integers(1, 60)),
        int(rng.integers(1, 8)),
        int(rng.integers(1, 4)),
        lock_share=0.05 * (seed % 3),
    )
    got = deferred_acceptance(problem)
    assert np.array_equal(got, naive_da(problem))
    problem.min_intake[:] = 0
    assert check_assignment(problem, got) == []


def test_multi_resource_da_feasible_deterministic_and_locks_kept() -> None:
    rng = np.random.default_rng(7)
    problem = random_problem(rng, 400, 12, 4, k=5, lock_share=0.03)
    assert problem.locked
    first = deferred_acceptance(problem)
    assert np.array_equal(first, deferred_acceptance(problem))
    for u, j in problem.locked:
        assert first[u] == j
    problem.min_intake[:] = 0
    assert check_assignment(problem, first) == []


@pytest.mark.parametrize("seed", range(20))
def test_da_has_no_blocking_pairs_with_one_unit_resource(seed: int) -> None:
    """Classic HR inside an AssignmentProblem: DA output is stable (no blocking pair,
    no justified envy)."""
    rng = np.random.default_rng(100 + seed)
    n_units, n_places = int(rng.integers(5, 200)), int(rng.integers(1, 10))
    problem = random_problem(rng, n_units, n_places, 1, unit_usage=True, k=5)
    place_of = deferred_acceptance(problem)
    assert blocking_pairs(problem, place_of) == []
    assert justified_envy(problem, place_of) == 0
    report = stability_report(problem, place_of)
    assert report == {
        "blocking_pairs": 0,
        "units_in_blocking_pairs": 0,
        "units_with_justified_envy": 0,
        "justified_envy": 0,
    }


def test_greedy_choice_skips_a_large_unit_and_keeps_smaller_ones() -> None:
    """Place 0 (6 persons) holds B(4) and C(2); A(3) arrives with priority A > B > C.
    Greedy keeps A, rejects B, keeps C (3 + 2 <= 6): the documented choice rule, not
    'remove the worst until it fits' (which would drop C and B). B moves to place 1."""
    usage = [[4], [2], [3]]  # u0 = B, u1 = C, u2 = A (A proposes last: FIFO by index)
    pairs = [(0, 0, 8.0), (0, 1, 1.0), (1, 0, 7.0), (2, 0, 9.0)]
    problem = make_problem(usage, [[6], [10]], pairs, resources=["persons"])
    assert deferred_acceptance(problem).tolist() == [1, 0, 0]
    assert naive_da(problem).tolist() == [1, 0, 0]


def test_multi_resource_rejection_through_a_rare_resource() -> None:
    """One accessible unit at place 0: the higher-priority wheelchair user displaces the
    other one, who moves on; persons alone would have fitted both."""
    usage = [[2, 1], [2, 1], [1, 0]]
    capacity = [[10, 1], [10, 1]]
    pairs = [(0, 0, 5.0), (0, 1, 1.0), (1, 0, 9.0), (2, 0, 3.0)]
    problem = make_problem(usage, capacity, pairs, resources=["persons", "accessible_units"])
    assert deferred_acceptance(problem).tolist() == [1, 0, 0]


def test_custom_preferences_and_priorities() -> None:
    """Lists override the score; unlisted pairs are unacceptable."""
    pairs = [(0, 0, 9.0), (0, 1, 1.0), (1, 0, 1.0), (1, 1, 9.0), (2, 0, 5.0)]
    problem = make_problem([[1], [1], [1]], [[1], [1]], pairs, resources=["persons"])
    default = deferred_acceptance(problem)
    assert default.tolist() == [0, 1, -1]
    unit_prefs = [[1, 0], [0, 1], [0]]
    place_prio = [[2, 1, 0], [0, 1]]
    assert deferred_acceptance(problem, unit_prefs, place_prio).tolist() == [1, -1, 0]
    # Unit 2 is not listed by place 0 -> unacceptable there.
    assert deferred_acceptance(problem, unit_prefs, [[1, 0], [0, 1]]).tolist() == [1, 0, -1]
    # Per-pair keys (higher = better) reversing the scores.
    assert deferred_acceptance(problem, -problem.pair_score, -problem.pair_score).tolist() == [1, 0, -1]
    with pytest.raises(ValueError, match="not candidate pairs"):
        deferred_acceptance(problem, [[1, 0], [0, 1], [1]])


def test_locked_pairs_over_capacity_are_rejected() -> None:
    pairs = [(0, 0, 1.0), (1, 0, 1.0)]
    problem = make_problem([[3], [3]], [[5]], pairs, resources=["persons"], locked=[(0, 0), (1, 0)])
    with pytest.raises(ValueError, match="locked pairs exceed"):
        deferred_acceptance(problem)


# --------------------------------------------------------------------------- stability


def test_blocking_pairs_and_envy_on_hand_built_assignment() -> None:
    """Place 0 (4 persons) ranks u0 > u1 > u2 > u3 by score, place 1 (5 persons) ranks
    u3 > u1 > u0. Place 0 holds u2 + u3 with 1 person free; place 1 holds u0 + u1."""
    usage = [[2], [3], [2], [1]]
    capacity = [[4], [5]]
    pairs = [(0, 0, 9), (0, 1, 1), (1, 0, 8), (1, 1, 2), (2, 0, 7), (3, 0, 1), (3, 1, 5)]
    problem = make_problem(usage, capacity, pairs, resources=["persons"])
    assignment = np.array([1, 1, 0, 0])  # place 0 holds u2 (2) + u3 (1), 1 free
    # u0: at 1, prefers 0; lower priority at 0: u2, u3 -> frees 1 + 3 >= 2: blocking.
    # u1: at 1, prefers 0; lower: u2, u3 -> 1 + 3 >= 3: blocking.
    # u3: at 0, prefers 1 (5 > 1); place 1 ranks u3 (5) above u0 (1) and u1 (2); rem 0 + 5.
    assert blocking_pairs(problem, assignment) == [(0, 0), (1, 0), (3, 1)]
    # envy: u0 -> {u2, u3}, u1 -> {u2, u3}, u3 -> {u0, u1}
    assert justified_envy(problem, assignment) == 6
    assert stability_report(problem, assignment) == {
        "blocking_pairs": 3,
        "units_in_blocking_pairs": 3,
        "units_with_justified_envy": 3,
        "justified_envy": 6,
    }
    stable = deferred_acceptance(problem)
    assert blocking_pairs(problem, stable) == []


def test_the_report_compares_an_assignment_with_deferred_acceptance() -> None:
    """The hand-built assignment above beside DA: households, persons, score, minimum intakes, stability."""
    usage = [[2], [3], [2], [1]]
    pairs = [(0, 0, 9), (0, 1, 1), (1, 0, 8), (1, 1, 2), (2, 0, 7), (3, 0, 1), (3, 1, 5)]
    problem = make_problem(usage, [[4], [5]], pairs, resources=["persons"])
    problem.min_intake[1] = 6  # place 1 holds 5 persons in the assignment: below its minimum
    summary = assignment_summary(problem, np.array([1, 1, 0, 0]))
    assert summary == {
        "households_placed": 4, "persons_placed": 8, "total_score": 11.0, "places_below_minimum_intake": 1,
        "blocking_pairs": 3, "units_in_blocking_pairs": 3, "units_with_justified_envy": 3, "justified_envy": 6,
    }
    both = compare_with_deferred_acceptance(problem, np.array([1, 1, 0, 0]))
    assert both["optimiser"] == summary
    da = deferred_acceptance(problem)
    assert both["deferred_acceptance"] == assignment_summary(problem, da) and both["deferred_acceptance"]["blocking_pairs"] == 0
    nobody = assignment_summary(problem, np.full(4, -1))
    assert (nobody["households_placed"], nobody["persons_placed"], nobody["total_score"]) == (0, 0, 0.0)


def test_envy_without_blocking_when_capacity_would_not_suffice() -> None:
    """u0 (4 persons) outranks u1 (1 person) at place 0 (cap 2), but removing u1 frees
    only 2: justified envy, no blocking pair. Unplaced units envy too."""
    problem = make_problem([[4], [1]], [[2]], [(0, 0, 9), (1, 0, 1)], resources=["persons"])
    assignment = np.array([-1, 0])
    assert blocking_pairs(problem, assignment) == []
    assert justified_envy(problem, assignment) == 1
    # An empty place with room: the unplaced candidate blocks.
    assert blocking_pairs(problem, np.array([-1, -1])) == [(1, 0)]


def test_locked_units_neither_block_nor_can_be_displaced() -> None:
    pairs = [(0, 0, 9.0), (0, 1, 1.0), (1, 0, 1.0)]
    problem = make_problem([[1], [1]], [[1], [1]], pairs, resources=["persons"], locked=[(1, 0)])
    assignment = np.array([1, 0])
    assert blocking_pairs(problem, assignment) == []
    assert justified_envy(problem, assignment) == 0
    assert deferred_acceptance(problem).tolist() == [1, 0]


def test_blocking_pairs_multi_resource_needs_every_resource() -> None:
    """Removing the lower-priority unit frees persons but not the kita place u0 needs."""
    usage = [[1, 1], [1, 0]]
    pairs = [(0, 0, 9.0), (0, 1, 1.0), (1, 0, 1.0)]
    problem = make_problem(usage, [[1, 0], [5, 5]], pairs, resources=["persons", "kita_places"])
    assert blocking_pairs(problem, np.array([1, 0])) == []
    assert justified_envy(problem, np.array([1, 0])) == 1


# --------------------------------------------------------------------------- properties


@st.composite
def problems(draw: st.DrawFn) -> AssignmentProblem:
    n_units = draw(st.integers(0, 12))
    n_places = draw(st.integers(1, 4))
    n_res = draw(st.integers(1, 3))
    usage = [[draw(st.integers(1 if r == 0 else 0, 4)) for r in range(n_res)] for _ in range(n_units)]
    capacity = [[draw(st.integers(0, 9)) for _ in range(n_res)] for _ in range(n_places)]
    pairs = [
        (u, j, draw(st.integers(0, 30)) / 10)
        for u in range(n_units)
        for j in range(n_places)
        if draw(st.booleans())
    ]
    locked: list[tuple[int, int]] = []
    load = np.zeros((n_places, n_res), dtype=np.int64)
    for u in range(n_units):
        mine = [j for v, j, _ in pairs if v == u]
        if mine and draw(st.integers(0, 6)) == 0:
            j = draw(st.sampled_from(mine))
            if (load[j] + usage[u] <= capacity[j]).all():
                load[j] += usage[u]
                locked.append((u, j))
    return make_problem(usage, capacity, pairs, locked=locked)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_property_da_never_breaks_capacity_or_uses_non_candidates(problem: AssignmentProblem) -> None:
    place_of = deferred_acceptance(problem)
    candidates = set(zip(problem.pair_unit.tolist(), problem.pair_place.tolist(), strict=True))
    for u, j in enumerate(place_of.tolist()):
        assert j == -1 or (u, j) in candidates
    problem.min_intake[:] = 0
    assert check_assignment(problem, place_of) == []
    assert np.array_equal(place_of, naive_da(problem))


@settings(max_examples=100, deadline=None)
@given(problems())
def test_property_stability_report_is_consistent(problem: AssignmentProblem) -> None:
    rng = np.random.default_rng(problem.n_units)
    place_of = np.full(problem.n_units, -1, dtype=np.int64)
    for k in rng.permutation(problem.pair_unit.size).tolist():  # random, maybe infeasible
        place_of[problem.pair_unit[k]] = problem.pair_place[k]
    for u, j in problem.locked:
        place_of[u] = j
    report = stability_report(problem, place_of)
    assert report["blocking_pairs"] == len(blocking_pairs(problem, place_of))
    assert report["justified_envy"] == justified_envy(problem, place_of)
    assert report["units_in_blocking_pairs"] <= report["blocking_pairs"]
    assert report["units_with_justified_envy"] <= report["justified_envy"]


# --------------------------------------------------------------------------- scale


def _large_problem(n_units: int, n_places: int = 401, k: int = 20, seed: int = 0) -> AssignmentProblem:
    """National-round shape: 7 resources, ~k candidates per unit, demand > supply."""
    rng = np.random.default_rng(seed)
    persons = rng.choice(np.arange(1, 8), n_units, p=[0.25, 0.25, 0.2, 0.15, 0.08, 0.05, 0.02])
    children = persons - 1
    kita = rng.binomial(children, 0.3)
    primary = rng.binomial(children - kita, 0.5)
    usage = np.stack(
        [persons, np.ones(n_units, np.int64), (rng.random(n_units) < 0.04).astype(np.int64), kita, primary,
         children - kita - primary, rng.binomial(1, 0.6, n_units)],
        axis=1,
    )
    weight = rng.pareto(1.5, n_places) + 1
    weight /= weight.sum()
    cap_persons = np.round(persons.sum() * 0.8 * weight).astype(np.int64)
    capacity = np.stack(
        [cap_persons, np.round(cap_persons / 2.2), np.round(cap_persons / 2.2 * 0.08)]
        + [np.round(cap_persons * f * rng.uniform(0.8, 1.5, n_places)) for f in (0.15, 0.2, 0.2, 0.5)],
        axis=1,
    ).astype(np.int64)
    # k distinct places per unit, drawn by weight (Gumbel top-k, in row chunks).
    chunks = []
    for lo in range(0, n_units, 5_000):
        m = min(5_000, n_units - lo)
        gumbel = np.log(weight)[None, :] - np.log(-np.log(rng.random((m, n_places))))
        chunks.append(np.sort(np.argpartition(-gumbel, k, axis=1)[:, :k], axis=1))
    places = np.concatenate(chunks)
    return AssignmentProblem(
        unit_ids=[f"u{u:06d}" for u in range(n_units)],
        place_ids=[f"{j:05d}" for j in range(n_places)],
        resources=["persons", "housing_units", "accessible_units", "kita_places", "school_places_primary",
                   "school_places_secondary", "integration_course_places"],
        usage=usage,
        capacity=capacity,
        min_intake=np.zeros(n_places, dtype=np.int64),
        pair_unit=np.repeat(np.arange(n_units), k),
        pair_place=places.reshape(-1),
        pair_score=np.round(rng.uniform(0, 100, n_units * k), 4),
    )


@pytest.mark.slow
def test_scale_50k_units_da_and_10k_stability() -> None:
    """At national scale the mechanisms give a feasible answer and a correct report (their times are in
    `python -m benchmarks.engine_scale`, not asserted here)."""
    problem = _large_problem(50_000)
    place_of = deferred_acceptance(problem)
    assert check_assignment(problem, place_of) == []
    small = _large_problem(10_000, seed=1)
    unplaced = np.full(small.n_units, -1, dtype=np.int64)
    report = stability_report(small, unplaced)
    assert report["blocking_pairs"] > 0 and report["justified_envy"] == 0


# --------------------------------------------------------------------------- speed-up guards


def _recorded_instances() -> list[dict]:
    """Instances and results recorded before the comparison's speed-up (data/PROVENANCE.md)."""
    return json.loads((DATA / "mechanisms_before_speedup.json").read_text())["instances"]


@pytest.mark.parametrize("case", _recorded_instances(), ids=lambda c: f"seed{c['seed']}")
def test_results_identical_to_those_recorded_before_the_speedup(case: dict) -> None:
    """Same DA, blocking pairs, envy and comparison as the code before sharing its sorts, on random
    instances with ties, locks, shuffled pair order and custom preferences."""
    inst, expected = case["instance"], case["expected"]
    n_u, n_j = len(inst["usage"]), len(inst["capacity"])
    problem = AssignmentProblem(
        unit_ids=[f"u{u}" for u in range(n_u)],
        place_ids=[f"{j + 1:05d}" for j in range(n_j)],
        resources=["persons", "housing_units", "kita_places", "accessible_units"][: len(inst["capacity"][0])],
        usage=np.asarray(inst["usage"]),
        capacity=np.asarray(inst["capacity"]),
        min_intake=np.asarray(inst["min_intake"]),
        pair_unit=np.asarray(inst["pair_unit"]),
        pair_place=np.asarray(inst["pair_place"]),
        pair_score=np.asarray(inst["pair_score"]),
        locked=[tuple(x) for x in inst["locked"]],
    )
    place = np.asarray(inst["place_of_unit"], dtype=np.int64)
    key, lists = np.asarray(inst["unit_key"]), inst["place_lists"]
    assert compare_with_deferred_acceptance(problem, place) == expected["compare"]
    assert deferred_acceptance(problem, unit_preferences=key, place_priorities=lists).tolist() == expected["da_custom"]
    assert [list(x) for x in blocking_pairs(problem, place, unit_preferences=key, place_priorities=lists)] == expected["blocking_custom"]
    assert justified_envy(problem, place, unit_preferences=key, place_priorities=lists) == expected["envy_custom"]
    assert [list(x) for x in blocking_pairs(problem, place)] == expected["blocking"]


def test_results_identical_when_the_pairs_are_checked_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The capacity checks run over slices of pairs (a national round's per-pair rows would take ~1 GiB
    each at once); slices of 3 pairs give the recorded results."""
    import rematch_pipeline.engine.mechanisms as mechanisms

    monkeypatch.setattr(mechanisms, "PAIR_CHUNK_SIZE", 3)
    for case in _recorded_instances():
        test_results_identical_to_those_recorded_before_the_speedup(case)


def test_the_comparison_ranks_the_candidate_pairs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """DA and both stability reports use the same default preferences: ranking 14.5 M pairs (two sorts
    each) three times was most of the comparison's minute at 50,000 households."""
    import rematch_pipeline.engine.mechanisms as mechanisms

    calls = []
    original = mechanisms._ranks

    def counted(*args, **kwargs):  # a spy: the real function runs
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(mechanisms, "_ranks", counted)
    problem = random_problem(np.random.default_rng(3), 40, 6, 3)
    compare_with_deferred_acceptance(problem, deferred_acceptance(problem))
    calls.clear()
    compare_with_deferred_acceptance(problem, np.full(problem.n_units, -1, dtype=np.int64))
    assert len(calls) == 1
