"""Timing of the matching engine at national scale on a random instance.

    .venv/bin/python -m benchmarks.engine_scale [--households 10000] [--time-limit 60]

Builds random household and municipality features of the real shape (401 reference
Kreise, 7 resources; engine/synthetic.py), then times candidate pairs, scoring, problem
building, the solve, deferred acceptance and the stability report, and prints persons placed,
total score, bounds and gap. Each step's time is also given as a multiple of the candidate pairs'
time in the same run (the baseline: absolute times on a shared machine are noisy). No assertions:
timings depend on the machine.
"""

from __future__ import annotations

import argparse
import logging
import time

from rematch_pipeline.engine.assignment import solve
from rematch_pipeline.engine.compatibility import candidate_pairs
from rematch_pipeline.engine.mechanisms import deferred_acceptance, stability_report
from rematch_pipeline.engine.problem import SolverParams, build_problem, check_assignment
from rematch_pipeline.engine.scoring import score_pairs
from rematch_pipeline.engine.synthetic import random_households, random_municipalities


def main() -> None:
    """Run one benchmark round and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=10_000)
    parser.add_argument("--capacity-ratio", type=float, default=0.92, help="offered persons / requested persons")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--backend", default="scip", choices=["scip", "cbc", "highs", "cp_sat"])
    parser.add_argument("--objective", default="lexicographic", choices=["lexicographic", "maximin"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log column-generation rounds")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(relativeCreated)8.0f ms %(message)s")

    households = random_households(args.households, args.seed)
    requested = int(households.get_column("persons").sum())
    municipalities = random_municipalities(args.seed, total_capacity=int(requested * args.capacity_ratio))
    print(f"{households.height} households ({requested} persons) x {municipalities.height} municipalities")

    timings: dict[str, float] = {}
    t = time.perf_counter()
    pairs = candidate_pairs(households, municipalities)
    timings["candidate_pairs"] = time.perf_counter() - t
    t = time.perf_counter()
    scored = score_pairs(pairs, households, municipalities)
    timings["score_pairs"] = time.perf_counter() - t
    t = time.perf_counter()
    problem = build_problem(households, municipalities, scored)
    timings["build_problem"] = time.perf_counter() - t
    params = SolverParams(time_limit_seconds=args.time_limit, backend=args.backend, objective=args.objective)
    t = time.perf_counter()
    result = solve(problem, params)
    timings["solve"] = time.perf_counter() - t
    violations = check_assignment(problem, result)
    t = time.perf_counter()
    place_of = deferred_acceptance(problem)
    timings["deferred_acceptance"] = time.perf_counter() - t
    t = time.perf_counter()
    stability_report(problem, place_of)
    timings["stability_report"] = time.perf_counter() - t

    baseline = max(timings["candidate_pairs"], 1e-9)
    for name, seconds in timings.items():
        print(f"{name:>19}: {seconds:7.2f} s  ({seconds / baseline:6.1f} x candidate_pairs)")
    print(f"{'pairs':>16}: {pairs.height} household pairs, {problem.pair_unit.size} unit pairs, {problem.n_units} units")
    print(f"{'status':>16}: {result.status} ({result.solver}, bounds over {result.bound_scope})")
    print(f"{'persons':>16}: {result.persons_placed} placed, bound {result.persons_bound:.0f}")
    print(f"{'score':>16}: {result.total_score:.2f}, bound {result.best_bound:.2f}, gap {result.gap:.4%}")
    for stage in result.stages:
        print(f"{'stage ' + stage.name:>16}: {stage.status}, {stage.objective_value:.2f} <= {stage.best_bound:.2f} "
              f"(gap {stage.gap:.4%}), {stage.wall_seconds:.1f} s")
    print(f"{'check':>16}: {'ok' if not violations else f'{len(violations)} violations'}")


if __name__ == "__main__":
    main()
