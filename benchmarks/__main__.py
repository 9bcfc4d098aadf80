"""`python -m benchmarks` (or `make benchmark`): solver figures as ratios against plain models run in the same process.

Suites: `synthetic` (sample rounds × 401 districts through the real data path), `exact`
(the large-round method against the exact MIP on a round small enough to solve exactly, at
the national round's households per district) and `gap` (OR-Library generalized
assignment instances against published optima); `ingest` (one sample round in each export format:
read_export and a whole `rematch ingest`, against the canonical CSV and openpyxl; benchmarks/ingest.py).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from benchmarks.baselines import plain_cp_sat, plain_mip
from benchmarks.rounds import synthetic_round
from rematch_pipeline.engine.assignment import solve
from rematch_pipeline.engine.problem import AssignmentResult, SolverParams


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b in (None, 0) else f"{a / b:.3f}"


def _status(result: AssignmentResult) -> str:
    return result.status if result.reproducible else f"{result.status}, not reproducible"


def synthetic(sizes: list[int], time_limit: float, baselines: bool, reproducible: bool = True) -> None:
    """Engine vs plain CP-SAT and plain SCIP on sample rounds × 401 districts."""
    print(f"\n## Synthetic rounds × 401 districts (time limit {time_limit:g} s per solver)\n")
    print("| households | pairs | solver | status | persons | score | gap | seconds | persons vs engine | seconds vs engine |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        rnd = synthetic_round(size, 401, seed=1)
        p = rnd.problem
        start = time.perf_counter()
        result = solve(p, SolverParams(time_limit_seconds=time_limit, reproducible=reproducible))
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {rnd.households:,} | {p.pair_unit.size:,} | engine ({result.solver}) | {_status(result)} | {result.persons_placed:,} "
            f"| {_fmt(result.total_score)} | {result.gap:.4%} | {seconds:.1f} | 1.000 | 1.000 |"
        )
        sys.stdout.flush()
        for name, run in [] if not baselines else (("plain CP-SAT", lambda: plain_cp_sat(p, time_limit)), ("plain SCIP", lambda: plain_mip(p, "scip", time_limit))):
            out = run()
            print(
                f"| {rnd.households:,} | {p.pair_unit.size:,} | {name} | {out.status} | {_fmt(out.persons, 0)} | {_fmt(out.score)} | - "
                f"| {out.seconds:.1f} | {_ratio(out.persons, result.persons_placed)} | {_ratio(out.seconds, seconds)} |"
            )
            sys.stdout.flush()
        print(f"| {rnd.households:,} | | engine's proven bounds | persons ≤ {result.persons_bound:,.0f}, score ≤ {result.best_bound:,.1f} | | | | | | |")
        print(f"| {rnd.households:,} | | peak memory so far | {peak:,.0f} MiB | | | | | | |")
        steps = ", ".join(f"{name} {secs:.1f} s" for name, secs in rnd.seconds.items())
        print(f"| {rnd.households:,} | | preparation (not in the solver's time) | {steps} | | | | | | |")


def exact(households: int, municipalities: int, time_limit: float, exact_time_limit: float, reproducible: bool = True) -> None:
    """Large-round method (forced) vs the exact lexicographic MIP (CBC) on one sample round."""
    rnd = synthetic_round(households, municipalities, seed=1)
    p = rnd.problem
    print(f"\n## Large-round method vs exact MIP: {rnd.households:,} households × {rnd.municipalities} districts, {p.pair_unit.size:,} pairs\n")
    print("| solver | time limit | status | persons | persons bound | score | score bound | gap | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = (
        ("large-round method", time_limit, SolverParams(time_limit_seconds=time_limit, max_model_pairs=0, reproducible=reproducible)),
        ("exact MIP (CBC)", exact_time_limit, SolverParams(time_limit_seconds=exact_time_limit, backend="cbc", max_model_pairs=10**9)),
    )
    results = []
    for name, limit, params in runs:
        start = time.perf_counter()
        result = solve(p, params)
        seconds = time.perf_counter() - start
        results.append(result)
        print(
            f"| {name} | {limit:g} s | {_status(result)} | {result.persons_placed:,} | {result.persons_bound:,.0f} | {_fmt(result.total_score)} "
            f"| {_fmt(result.best_bound)} | {result.gap:.4%} | {seconds:.1f} |"
        )
        sys.stdout.flush()
    large, mip = results
    below = (mip.total_score - large.total_score) / mip.total_score if mip.total_score else 0.0
    above = (large.best_bound - mip.best_bound) / mip.best_bound if mip.best_bound else 0.0
    print(f"\nlarge-round score {below:.4%} below the exact MIP's (same persons: {large.persons_placed == mip.persons_placed}); "
          f"large-round bound {above:.4%} above the exact MIP's proven bound")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites and print markdown tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--suite", choices=("synthetic", "exact", "gap", "ingest", "all"), default="all")
    parser.add_argument(
        "--sizes", default=None, help="households per round (synthetic: 1000,10000,50000; ingest: 10000, the national one 50000)"
    )
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument(
        "--baseline-time-limit", type=float, default=None, help="seconds per plain model (default: --time-limit)"
    )
    parser.add_argument("--no-baselines", action="store_true", help="engine only (the plain models are slow at scale)")
    parser.add_argument("--exact-round", default="1000x40", help="households x districts of the exact suite's round")
    parser.add_argument("--exact-time-limit", type=float, default=600.0, help="seconds for the exact MIP")
    parser.add_argument(
        "--wall-clock", action="store_true", help="large rounds on wall-clock budgets (SolverParams.reproducible=False)"
    )
    parser.add_argument("--municipalities", type=int, default=401, help="districts of the ingest suite's round")
    parser.add_argument(
        "--formats", default="kobo-xlsx,kobo-csv,limesurvey-csv", help="ingest suite: formats beside the canonical CSV"
    )
    args = parser.parse_args(argv)
    if args.suite in ("synthetic", "all"):
        synthetic([int(s) for s in (args.sizes or "1000,10000,50000").split(",")], args.time_limit, not args.no_baselines, not args.wall_clock)
    if args.suite in ("exact", "all"):
        households, districts = (int(n) for n in args.exact_round.split("x"))
        exact(households, districts, args.time_limit, args.exact_time_limit, not args.wall_clock)
    if args.suite in ("gap", "all"):
        from benchmarks.gap import gap_suite

        gap_suite(args.time_limit, args.baseline_time_limit or args.time_limit, not args.no_baselines)
    if args.suite == "ingest":  # not part of "all": it measures ingestion, not the solver
        from benchmarks.ingest import ingest_suite

        ingest_suite([int(s) for s in (args.sizes or "10000").split(",")], args.municipalities, tuple(args.formats.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
