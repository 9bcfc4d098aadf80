"""The large path end to end: the persons stage (where needed), the score stage's pricing, the answer and its bound."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rematch_pipeline.engine.assignment import _empty_result
from rematch_pipeline.engine.large_scale.clock import RATES, _Clock
from rematch_pipeline.engine.large_scale.pairs import (
    _Pairs,
    _load,
    _locked_places,
    _most_persons,
    _persons,
    _positions,
    _room_in_total,
    _top_per_unit,
    _usable_pairs,
)
from rematch_pipeline.engine.large_scale.pricing import (
    FINAL_LBFGS_ITERATIONS,
    FINAL_PRICING_ROUNDS,
    FINAL_PRICING_SHARE,
    INITIAL_BY_SCORE,
    INITIAL_BY_SLACK,
    PERSON_WEIGHT,
    PERSONS_PRICING_SHARE,
    PERSONS_TEMPERATURES,
    SCORE_PRICING_SHARE,
    SCORE_TEMPERATURES,
    TARGET_PRICING_SHARE,
    _Dual,
    _Lagrangian,
    _persons_bound_at,
    _price,
    _summed_capacity_bound,
    _summed_start,
    _value,
)
from rematch_pipeline.engine.large_scale.proof import _prove
from rematch_pipeline.engine.large_scale.search import _better, _insert_unplaced, _place, _price_beside
from rematch_pipeline.engine.model import _gap
from rematch_pipeline.engine.problem import (
    AssignmentProblem,
    AssignmentResult,
    SolveProgress,
    SolverParams,
    StageReport,
    check_assignment,
)

LOG = logging.getLogger(__name__)

# The answer step ends at this share of the limit: the last steps (bounds, result arrays) run after it.
FINISH_SHARE: float = 0.97
# Reproducible runs (SolverParams.reproducible): the search stops at this share of the
# limit in counted work, leaving the wall clock room for load and uncounted steps.
REPRODUCIBLE_SHARE: float = 0.88
# The large path's solver label: its MIPs run on SCIP whatever the round's backend (_reoptimise).
SOLVER_LABEL: str = "ortools-scip+lagrangian"


def solve_large(
    problem: AssignmentProblem, params: SolverParams, wall_setting: str = "wall_limit_seconds", progress: SolveProgress | None = None
) -> AssignmentResult:
    """Lexicographic solve of a large round (see module docstring). Bounds hold for all pairs.
    With params.reproducible the budgets count work (_Clock), so repeated runs give the
    same assignment and bound. wall_setting is the round setting the result's note names when the
    wall clock cuts the search (a caller that derives the wall limit from another names that).
    progress, if given, reads the counted work done so far (reproducible budgets only)."""
    # Our own threads use both cores; idle OpenBLAS threads would spin on them (measured at
    # 1,000 households: a neighbourhood MIP beside the pricing took 6.8 s instead of 4.6 s).
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve_large(problem, params, wall_setting, progress)


def _solve_large(problem: AssignmentProblem, params: SolverParams, wall_setting: str, progress: SolveProgress | None) -> AssignmentResult:
    # The last steps (bounds, result arrays) run after the deadline: leave them room.
    limit = params.time_limit_seconds
    clock = _Clock(params.reproducible, FINISH_SHARE * params.wall_limit())
    if progress is not None and params.reproducible:  # only read by the caller's lines: the budgets stay as they are
        progress.follow(clock.counted)
    start = clock.start
    deadline = (REPRODUCIBLE_SHARE if params.reproducible else FINISH_SHARE) * limit
    pairs = _usable_pairs(problem)
    clock.rates = RATES.for_round(pairs.size)
    clock.spend(clock.rates.pair_pass * 10 * problem.pair_unit.size)  # the usable pairs and the first working set
    if (_load(problem, pairs, _locked_places(problem)) > problem.capacity).any():  # the locks alone break a capacity
        return _empty_result(problem, params, "infeasible", [], start, solver=SOLVER_LABEL)
    # Exactly one place per unit is the persons stage reaching every unit's persons (each unit has some).
    every_person = int(problem.usage[:, problem.persons_index].sum())
    if problem.exactly_one and _most_persons(problem, pairs) < every_person:  # a unit without a usable pair
        return _empty_result(problem, params, "infeasible", [], start, solver=SOLVER_LABEL)
    all_pos = np.arange(pairs.size)
    LOG.debug("%d usable pairs of %d units", pairs.size, problem.n_units)
    by_score = _top_per_unit(pairs.unit, pairs.score, INITIAL_BY_SCORE, all_pos)
    slack = (problem.capacity[:, problem.persons_index] - problem.min_intake).astype(np.float64)
    by_slack = _top_per_unit(pairs.unit, slack[pairs.place], INITIAL_BY_SLACK, all_pos)
    working = np.union1d(by_score, by_slack)

    persons_only = _Lagrangian(problem, pairs, pairs.persons, None, clock)
    room = _room_in_total(problem)
    while True:  # twice at most: again with the persons stage when every unit's persons prove out of reach
        if room:
            # Stage 1 is skipped: every unit with a usable pair bounds the persons, and stage
            # 2b aims at that bound (its keeping multiplier prices a person). Its pricing and
            # greedy pass took an eighth of the counted time at 10,000 households and only set
            # a persons floor that stage 2b's keeping row then made slack; the score search
            # gets that time (docs/decisions.md, twenty-third session).
            first = _locked_places(problem)
            persons, persons_bound = _persons(problem, pairs, first), float(_most_persons(problem, pairs))
            stage1_working, stage2_start = working, None
            LOG.debug("room in total for every resource: no persons stage, bound %d (every unit's persons)", persons_bound)
        else:
            # Stage 1: persons. Priced and placed on PERSON_WEIGHT * persons + score; the bound
            # on persons alone comes from the same prices scaled down (valid for any prices).
            lag = _Lagrangian(problem, pairs, PERSON_WEIGHT * pairs.persons + pairs.score, None, clock)
            # Its prices start from the summed capacities' (one price per resource, the same at every
            # place): from zero, 8 % of the limit left the 10,000-household round at 60 % capacity
            # with a persons bound of 19,158 where those prices alone prove 14,134.
            summed_bound, summed_prices = _summed_capacity_bound(problem, pairs, clock)
            # (named apart from `start`, the clock's start that the result's wall_seconds is measured from)
            prices_start = np.zeros(lag.n_vars)
            prices_start[: lag.n_j * lag.n_r] = np.tile(PERSON_WEIGHT * summed_prices, lag.n_j)
            priced = _price(lag, working, PERSONS_PRICING_SHARE * limit, PERSONS_TEMPERATURES, prices_start)
            # Stage 1's answer is the greedy pass (it sets the persons to keep); the local moves
            # and the exact MIPs run in stage 2, on prices that also value the score.
            first, _ = _place(lag, priced, params, deadline, room=False, exact=False)
            priced.release()
            persons = _persons(problem, pairs, first)
            d = priced.dual
            persons_bound, _ = persons_only.bound(_Dual(d.capacity / PERSON_WEIGHT, d.minimum / PERSON_WEIGHT, 0.0))
            persons_bound = min(persons_bound, summed_bound)
            # Stage 1's prices with the persons-keeping multiplier at PERSON_WEIGHT are a feasible start of stage 2.
            stage1_working, stage2_start = priced.working, np.r_[priced.v, PERSON_WEIGHT]
        persons_seconds = clock.wall()

        # Stage 2: score, keeping at least those persons.
        wall2 = clock.wall()
        lag2 = _Lagrangian(problem, pairs, pairs.score, persons, clock)
        priced2 = _price(lag2, stage1_working, clock.until(SCORE_PRICING_SHARE, deadline), SCORE_TEMPERATURES, stage2_start)
        if priced2.dual.keep > 0:  # the stage-2 prices bound persons too, scaled by the keeping multiplier
            persons_bound = min(persons_bound, _persons_bound_at(persons_only, priced2.dual))
        persons_bound = min(float(np.floor(persons_bound + 1e-6)), float(_most_persons(problem, pairs)))
        if problem.exactly_one and persons_bound < every_person:  # the prices prove the capacities too small
            stages = [StageReport("persons", "infeasible", persons, persons_bound, _gap(persons, persons_bound), persons_seconds)]
            return _empty_result(problem, params, "infeasible", stages, start, params.reproducible and not clock.cut, SOLVER_LABEL)
        # Stage 2b: the same score prices, now keeping the persons bound. Its keeping
        # multiplier is what a person is worth in score points when every person counts,
        # so the placement below takes the persons it can reach.
        target = persons_bound
        lag3 = lag2.keeping(target)
        priced3 = _price(lag3, priced2.working, clock.until(TARGET_PRICING_SHARE, deadline), SCORE_TEMPERATURES[-1:], np.r_[priced2.v[:-1], 0.0])
        LOG.debug("pricing for %d persons: keeping multiplier %.4f, bound %.4f", target, priced3.dual.keep, priced3.bound)
        if room and not priced3.dual.keep <= PERSON_WEIGHT:
            # Room in total is no room for every unit: where its places are few and taken, the persons
            # of every unit are out of reach even in the LP, its keeping multiplier diverges (1e32 on
            # 400 households x 401 districts) and prices nothing. The persons stage runs as on a tight
            # round (there: 783 persons and a 0.87 % gap instead of 783 and 5.47 %; twenty-seventh session).
            LOG.debug("every unit's persons are out of reach (keeping multiplier %.3g): the persons stage runs", priced3.dual.keep)
            priced2.release()
            priced3.release()
            room = False
            continue
        if priced3.dual.keep > 0:  # these prices bound persons too (a skipped stage 1 gave only the count of units' persons)
            persons_bound = min(persons_bound, float(np.floor(_persons_bound_at(persons_only, priced3.dual) + 1e-6)))
        break
    # The bound is refined beside the neighbourhood search (same persons), and at the end
    # for the persons actually placed, in time kept back from the answer step.
    answer_deadline = deadline - FINAL_PRICING_SHARE * limit
    priced2.release()
    # Beside the search the bound is priced for the persons bound where every unit fits in total
    # (the search reaches it); on a tight round, for the persons the local moves reached: the persons
    # bound is out of reach there, its keeping multiplier climbs, and the score bound it gave for the
    # persons placed was loose (3,000 households at 60 % capacity: 149,371 for 4,173 persons, where
    # 146,625 held for 4,138 before; twenty-fifth session).
    # There it starts from the summed-capacity LP's prices for those persons: from stage 2b's, which
    # price a person at ~600-950 score points near the persons bound, it did not converge (3,000
    # households at 60 % capacity, 4,118 persons: 147,017 for the 4,173 placed, against 141,108;
    # twenty-sixth session).
    beside = functools.partial(_price_beside, lag2, priced3, answer_deadline, target if room else None, toward=None if room else target)
    second, priced_beside = _place(lag3, priced3, params, answer_deadline, room=room, beside=beside, exchange_deadline=deadline)
    answer_cut = clock.cut
    if answer_cut:
        second = _insert_unplaced(lag3, second, _locked_places(problem) >= 0, math.inf, after_cut=True)
    priced3.release()
    if _persons(problem, pairs, second) < persons:  # could not keep stage 1's persons
        LOG.debug("the score stage placed fewer persons; keeping the persons stage's answer")
        second = first
    # The lexicographic optimum places at least the persons found; at fixed multipliers
    # the bound for that requirement moves by keep * (persons found - persons kept).
    placed = _persons(problem, pairs, second)
    kept = [(persons, priced2), (target, priced3), *priced_beside]

    def bounds_at(placed: float) -> list[float]:
        """Each kept dual's bound moved to the persons placed (valid at fixed multipliers, either side)."""
        return [q.bound - q.dual.keep * (placed - p) for p, q in kept]

    at_placed = bounds_at(placed)
    # A search that stalled leaves counted time before the time kept back for the bound: reduced-cost
    # fixing at the prices of the lowest bound for the persons placed, then one exact MIP over the pairs
    # that survive (proof.py; where they are few and its charge fits), whose answer is taken when better.
    proof = None if answer_cut else _prove(lag2.keeping(placed), kept[int(np.argmin(at_placed))][1].dual, second, params, answer_deadline, clock)
    proof_bound = math.inf
    if proof is not None and proof.cut:  # the wall clock stopped the proof MIP: a repeat may take its answer
        answer_cut = True
    elif proof is not None:
        second, _ = _better(lag2, second, (placed, _value(lag2, second)), proof.place_of)
        placed = _persons(problem, pairs, second)
        at_placed = bounds_at(placed)
        proof_bound = proof.bound_at(placed)
        LOG.debug("after the proof MIP: %d persons, bound %.4f", placed, proof_bound)
    # The assignment is settled here (what follows refines the bound only): whether the
    # wall clock cut it short is known now.
    score_bound = min(min(at_placed), proof_bound)
    LOG.debug("bound for %d persons from %d price vectors: %.4f", placed, len(kept), score_bound)
    if placed < persons_bound and priced_beside and priced_beside[-1][1].dual.keep > 0:
        # The pricing beside the search aims at the persons bound; where that is out of reach (a tight
        # round) its keeping multiplier climbs, and its prices scaled by it prove a lower persons bound
        # (valid for any prices; one exact pass, so the last vector only).
        persons_bound = min(persons_bound, float(np.floor(_persons_bound_at(persons_only, priced_beside[-1][1].dual) + 1e-6)))
    # The search's last MIP is charged after its root and can end past the deadline. Where it placed
    # fewer persons than the prices aimed at, the bound for those placed still gets its share: each
    # person short moves the kept bounds by the keeping multiplier (1,000 x 401: 138 points a person,
    # gap 2.35 % unpriced, 1.71 % priced; twenty-seventh session).
    pricing_deadline = deadline if placed >= target else max(deadline, clock.now() + FINAL_PRICING_SHARE * limit)
    if clock.now() < pricing_deadline:  # the kept-back time, and what the search left
        lag4 = lag2.keeping(placed)
        # From the prices that give the lowest bound for the persons placed: on a tight round the last
        # ones aimed at an unreachable persons bound and are far off for fewer persons.
        last = kept[int(np.argmin(at_placed))][1] if placed < target else kept[-1][1]
        # On a tight round, from the summed-capacity LP's prices for the persons placed (its working set
        # stays): started from the lowest vector above, 2.4 s took the 3,000-household round at 60 %
        # capacity from 147,017 to 146,869 only; from these, to 140,610 (twenty-sixth session).
        fresh = None if room else _summed_start(lag4, clock, placed)
        rounds = SCORE_TEMPERATURES[-1:] * FINAL_PRICING_ROUNDS
        priced4 = _price(lag4, last.working, pricing_deadline, rounds, last.v if fresh is None else fresh, FINAL_LBFGS_ITERATIONS, False)
        LOG.debug("pricing for the %d persons placed: bound %.4f", placed, priced4.bound)
        score_bound = min(score_bound, priced4.bound)
    persons = placed
    LOG.debug("stage persons: %d placed, bound %d", persons, persons_bound)
    status = "optimal" if persons >= persons_bound else "feasible"
    stages = [StageReport("persons", status, persons, persons_bound, _gap(persons, persons_bound), persons_seconds)]
    score = float(pairs.score[_positions(problem, pairs, second)].sum())
    gap = _gap(score, score_bound)
    LOG.debug("stage score: %.4f, bound %.4f", score, score_bound)
    status = "optimal" if gap <= params.relative_gap else "feasible"
    stages.append(StageReport("score", status, score, score_bound, gap, clock.wall() - wall2))
    reproducible = params.reproducible and not answer_cut
    # Said by the caller in the round's log (AssignmentResult.notes), not logged here.
    notes: tuple[str, ...] = ()
    if answer_cut:
        notes = (
            "the wall-clock limit stopped this solve before its counted work: a repeat may give another assignment"
            f" (a faster or less loaded machine, or a longer {wall_setting}, makes it reproducible)",
        )
    elif params.reproducible and clock.overrun:
        notes = (
            "the wall-clock limit stopped the bound's refinement after the assignment was settled: a repeat"
            " gives the same assignment, but its bound and gap may differ",
        )
    LOG.debug("counted work %.1f s, wall clock %.1f s", clock.work, clock.wall())
    # Only when locks leave a minimum intake unreachable, or (exactly one) the search left a unit unplaced.
    if check_assignment(problem, second):
        result = _empty_result(problem, params, "not_solved", stages, start, reproducible, SOLVER_LABEL)
    else:
        result = _result(problem, pairs, params, second, stages, persons_bound, start, reproducible, reproducible and not clock.overrun)
    return dataclasses.replace(result, notes=notes)


def _result(
    problem: AssignmentProblem,
    pairs: _Pairs,
    params: SolverParams,
    place_of_unit: np.ndarray,
    stages: list[StageReport],
    persons_bound: float,
    start: float,
    reproducible: bool,
    bound_reproducible: bool,
) -> AssignmentResult:
    pos = _positions(problem, pairs, place_of_unit)  # usable pairs are sorted: no second sort of all pairs
    final = stages[-1]
    return AssignmentResult(
        place_of_unit=place_of_unit,
        status="optimal" if all(s.status == "optimal" for s in stages) else "feasible",
        persons_placed=int(pairs.persons[pos].sum()),
        total_score=float(np.round(pairs.score[pos].sum(), 6)),
        objective_value=final.objective_value,
        best_bound=final.best_bound,
        gap=final.gap,
        persons_bound=persons_bound,
        min_unit_score=None,
        wall_seconds=time.perf_counter() - start,
        solver=SOLVER_LABEL,
        params=params.as_dict(),
        stages=tuple(stages),
        bound_scope="all_pairs",
        reproducible=reproducible,
        bound_reproducible=bound_reproducible,
    )


def reduced_problem(problem: AssignmentProblem, max_pairs: int) -> AssignmentProblem:
    """The problem on at most ~max_pairs pairs: each unit's best pairs by score (an
    equal share per unit, at least one) plus locked pairs. Used for maximin at scale."""
    per_unit = max(1, max_pairs // max(problem.n_units, 1))
    all_pos = np.arange(problem.pair_unit.size)
    return problem.with_pairs(_top_per_unit(problem.pair_unit, problem.pair_score, per_unit, all_pos))
