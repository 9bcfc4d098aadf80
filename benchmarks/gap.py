"""OR-Library generalized assignment instances (minimisation, every job assigned) against published optima."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

DATA = Path(__file__).resolve().parent / "data" / "gap"


@dataclass(frozen=True)
class GapInstance:
    """cost[i, j] and use[i, j] of job j on agent i, capacity[i]; minimise cost, each job on one agent."""

    name: str
    cost: np.ndarray
    use: np.ndarray
    capacity: np.ndarray
    optimum: int | None  # proven optimum or best known value


def read_instance(path: Path, optimum: int | None = None) -> GapInstance:
    """Parse the OR-Library single-instance format (m n, costs, resource uses, capacities)."""
    numbers = np.array(path.read_text().split(), dtype=np.int64)
    m, n = int(numbers[0]), int(numbers[1])
    cost = numbers[2 : 2 + m * n].reshape(m, n)
    use = numbers[2 + m * n : 2 + 2 * m * n].reshape(m, n)
    capacity = numbers[2 + 2 * m * n : 2 + 2 * m * n + m]
    return GapInstance(path.name, cost, use, capacity, optimum)


def instances() -> list[GapInstance]:
    """Every stored instance with its best known value (proven optimum where one exists)."""
    with (DATA / "optimum_table.csv").open() as handle:
        best = {r["instance"]: int(r["min_fontanf_optimum"] or r["min_fontanf_bks"]) for r in csv.DictReader(handle)}
    return [read_instance(DATA / name, best.get(name)) for name in sorted(best)]


@dataclass(frozen=True)
class GapOutcome:
    """Objective (None = no solution), proven lower bound, wall seconds, optimality proven."""

    objective: int | None
    bound: float | None
    seconds: float
    proven: bool


def plain_cp_sat(inst: GapInstance, time_limit: float, workers: int = 2) -> GapOutcome:
    """One boolean per (agent, job)."""
    start = time.perf_counter()
    m, n = inst.cost.shape
    model = cp_model.CpModel()
    x = [[model.new_bool_var("") for _ in range(n)] for _ in range(m)]
    for j in range(n):
        model.add_exactly_one(x[i][j] for i in range(m))
    for i in range(m):
        model.add(sum(int(inst.use[i, j]) * x[i][j] for j in range(n)) <= int(inst.capacity[i]))
    model.minimize(sum(int(inst.cost[i, j]) * x[i][j] for i in range(m) for j in range(n)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    status = solver.solve(model)
    seconds = time.perf_counter() - start
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return GapOutcome(None, None, seconds, False)
    return GapOutcome(int(solver.objective_value), solver.best_objective_bound, seconds, status == cp_model.OPTIMAL)


def plain_mip(inst: GapInstance, backend: str, time_limit: float) -> GapOutcome:
    """The same model through pywraplp."""
    start = time.perf_counter()
    m, n = inst.cost.shape
    solver = pywraplp.Solver.CreateSolver(backend.upper())
    x = [[solver.BoolVar("") for _ in range(n)] for _ in range(m)]
    for j in range(n):
        solver.Add(solver.Sum([x[i][j] for i in range(m)]) == 1)
    for i in range(m):
        solver.Add(solver.Sum([float(inst.use[i, j]) * x[i][j] for j in range(n)]) <= float(inst.capacity[i]))
    solver.Minimize(solver.Sum([float(inst.cost[i, j]) * x[i][j] for i in range(m) for j in range(n)]))
    solver.SetTimeLimit(int(time_limit * 1000))
    status = solver.Solve()
    seconds = time.perf_counter() - start
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return GapOutcome(None, None, seconds, False)
    return GapOutcome(round(solver.Objective().Value()), solver.Objective().BestBound(), seconds, status == pywraplp.Solver.OPTIMAL)


def engine(inst: GapInstance, time_limit: float) -> GapOutcome | None:
    """The engine's general model on the instance, when it supports per-pair usage (else None)."""
    try:
        from rematch_pipeline.engine.gap import solve_gap
    except ImportError:
        return None
    start = time.perf_counter()
    objective, bound, proven = solve_gap(inst.cost, inst.use, inst.capacity, time_limit)
    return GapOutcome(objective, bound, time.perf_counter() - start, proven)


def _gap_to_best(objective: int | None, best: int | None) -> str:
    return "-" if objective is None or not best else f"{(objective - best) / best:.3%}"


def gap_suite(time_limit: float, baseline_time_limit: float | None = None, baselines: bool = True) -> None:
    """Print one row per instance and solver, then the targets' summary per type."""
    base_limit = baseline_time_limit or time_limit
    print(f"\n## GAP instances (minimisation; engine {time_limit:g} s, plain models {base_limit:g} s per instance)\n")
    print("| instance | best known | solver | objective | gap to best | proven optimal | seconds | seconds vs plain CP-SAT |")
    print("|---|---|---|---|---|---|---|---|")
    summary: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    for inst in instances():
        base = plain_cp_sat(inst, base_limit) if baselines else None
        runs = [("plain CP-SAT", base), ("plain SCIP", plain_mip(inst, "scip", base_limit))] if base else []
        mine = engine(inst, time_limit)
        if mine is not None:
            runs.insert(0, ("engine", mine))
        for name, out in runs:
            ratio = "-" if base is None or not base.seconds else f"{out.seconds / base.seconds:.2f}"
            print(
                f"| {inst.name} | {inst.optimum} | {name} | {out.objective if out.objective is not None else '-'} "
                f"| {_gap_to_best(out.objective, inst.optimum)} | {'yes' if out.proven else 'no'} | {out.seconds:.1f} | {ratio} |",
                flush=True,
            )
            if out.objective is not None and inst.optimum:
                summary.setdefault((inst.name[0], name), []).append(((out.objective - inst.optimum) / inst.optimum, out.proven))
    print("\n| type | solver | instances | proven optimal | mean gap to best |\n|---|---|---|---|---|")
    for (kind, name), rows in sorted(summary.items()):
        print(f"| {kind.upper()} | {name} | {len(rows)} | {sum(p for _, p in rows)} | {np.mean([g for g, _ in rows]):.3%} |")
