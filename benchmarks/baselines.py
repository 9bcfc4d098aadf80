"""Plain reference models the engine is measured against: one decision variable per pair, no tricks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from rematch_pipeline.engine.problem import AssignmentProblem


@dataclass(frozen=True)
class Outcome:
    """What a solver run gave (None = no solution) with wall seconds including model building."""

    persons: int | None
    score: float | None
    seconds: float
    status: str


def _outcome(problem: AssignmentProblem, chosen: np.ndarray, seconds: float, status: str) -> Outcome:
    persons = int(problem.usage[problem.pair_unit[chosen], problem.persons_index].sum())
    return Outcome(persons, float(problem.pair_score[chosen].sum()), seconds, status)


def _pairs_by(problem: AssignmentProblem) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Candidate pair indices grouped by unit and by place."""
    by_unit: dict[int, list[int]] = {}
    by_place: dict[int, list[int]] = {}
    for k, (u, j) in enumerate(zip(problem.pair_unit.tolist(), problem.pair_place.tolist())):
        by_unit.setdefault(u, []).append(k)
        by_place.setdefault(j, []).append(k)
    return by_unit, by_place


def _lexicographic_weights(problem: AssignmentProblem) -> np.ndarray:
    """Single-objective weights that put persons strictly before score (all scores < 1 person's weight)."""
    persons = problem.usage[problem.pair_unit, problem.persons_index].astype(np.float64)
    return persons * (float(problem.pair_score.sum()) + 1.0) + problem.pair_score


def plain_cp_sat(problem: AssignmentProblem, time_limit: float, workers: int = 2) -> Outcome:
    """One boolean per candidate pair, capacities, min intakes, persons-then-score as one weighted objective."""
    start = time.perf_counter()
    model = cp_model.CpModel()
    x = [model.new_bool_var("") for _ in range(problem.pair_unit.size)]
    by_unit, by_place = _pairs_by(problem)
    for ks in by_unit.values():
        model.add_at_most_one(x[k] for k in ks)
    for j, ks in by_place.items():
        for r in range(len(problem.resources)):
            use = problem.usage[problem.pair_unit[ks], r]
            if use.sum() > problem.capacity[j, r]:
                model.add(sum(int(a) * x[k] for a, k in zip(use.tolist(), ks) if a) <= int(problem.capacity[j, r]))
        if problem.min_intake[j] > 0:
            y = model.new_bool_var("")
            persons = problem.usage[problem.pair_unit[ks], problem.persons_index]
            total = sum(int(a) * x[k] for a, k in zip(persons.tolist(), ks))
            model.add(total >= int(problem.min_intake[j]) * y)
            model.add(total <= int(persons.sum()) * y)
    # CP-SAT wants integers: scores to 1/100 points, persons weighted above all scores.
    score = np.rint(problem.pair_score * 100).astype(np.int64)
    big = int(score.sum()) + 1
    persons = problem.usage[problem.pair_unit, problem.persons_index]
    model.maximize(sum(int(p * big + s) * v for p, s, v in zip(persons.tolist(), score.tolist(), x)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit - (time.perf_counter() - start), 1.0)
    solver.parameters.num_workers = workers
    status = solver.solve(model)
    seconds = time.perf_counter() - start
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return Outcome(None, None, seconds, solver.status_name(status).lower())
    chosen = np.array([solver.boolean_value(v) for v in x], dtype=bool)
    return _outcome(problem, chosen, seconds, solver.status_name(status).lower())


def plain_mip(problem: AssignmentProblem, backend: str, time_limit: float) -> Outcome:
    """The same model as a MIP through pywraplp (SCIP, CBC or HiGHS), one variable per pair."""
    start = time.perf_counter()
    solver = pywraplp.Solver.CreateSolver(backend.upper())
    x = [solver.BoolVar("") for _ in range(problem.pair_unit.size)]
    by_unit, by_place = _pairs_by(problem)
    for ks in by_unit.values():
        solver.Add(solver.Sum([x[k] for k in ks]) <= 1)
    for j, ks in by_place.items():
        for r in range(len(problem.resources)):
            use = problem.usage[problem.pair_unit[ks], r]
            if use.sum() > problem.capacity[j, r]:
                solver.Add(solver.Sum([float(a) * x[k] for a, k in zip(use.tolist(), ks) if a]) <= float(problem.capacity[j, r]))
        if problem.min_intake[j] > 0:
            y = solver.BoolVar("")
            persons = problem.usage[problem.pair_unit[ks], problem.persons_index]
            total = solver.Sum([float(a) * x[k] for a, k in zip(persons.tolist(), ks)])
            solver.Add(total >= float(problem.min_intake[j]) * y)
            solver.Add(total <= float(persons.sum()) * y)
    weights = _lexicographic_weights(problem)
    objective = solver.Objective()
    for w, v in zip(weights.tolist(), x):
        objective.SetCoefficient(v, w)
    objective.SetMaximization()
    solver.SetTimeLimit(int(max(time_limit - (time.perf_counter() - start), 1.0) * 1000))
    status = solver.Solve()
    seconds = time.perf_counter() - start
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return Outcome(None, None, seconds, "no solution")
    chosen = np.array([v.solution_value() > 0.5 for v in x], dtype=bool)
    return _outcome(problem, chosen, seconds, "optimal" if status == pywraplp.Solver.OPTIMAL else "feasible")
