"""A proof for a stalled search's answer: reduced-cost fixing at the final prices, then one exact MIP
over every unit on the pairs that survive it.

Why it holds (the score stage keeps at least P0 persons: the persons the answer places). At the
multipliers of the score stage's Lagrangian dual for "persons >= P0" (capacity prices lambda >= 0,
minimum-intake prices, keeping multiplier kappa >= 0), every answer x that keeps the rules and places
at least P0 persons has

    score(x) = L - sum_u loss_u(x_u) - (priced slack of the capacity, minimum and keeping rows),

where L is the dual's exact value over all pairs (_Lagrangian.bound), loss_u(x_u) = (best reduced
profit of u, 0 counting as leaving u out) - (reduced profit of the option x gives u, 0 if unplaced),
and every term subtracted is >= 0. So an answer that uses a pair (u, p) with loss_up > L - T scores
below T, for any threshold T; with T the incumbent's score, no such answer beats it. Those pairs are
dropped; the rest (and every unit's current pair) make one MIP over all units.

Persons first. The MIP maximises PERSON_WEIGHT * persons + score keeping at least P0 persons, as the
neighbourhood MIPs do, and its answer replaces the incumbent only when lexicographically better (more
persons, or as many and a higher score). With its dual bound B (proven optimal, or where its node limit
stopped it: SCIP's dual bound bounds every answer on the surviving pairs either way), every answer on the
surviving pairs with at least P1 >= P0 persons scores at most B - PERSON_WEIGHT * P1, and every answer
with at least P1 persons using a dropped pair scores below T ({persons >= P1} lies inside
{persons >= P0}). The score bound for the persons placed (P1, the answer's persons after this step) is
therefore max(T, B - PERSON_WEIGHT * P1): valid for the whole round, like the Lagrangian bound it
tightens, and as that one it bounds the score of answers placing at least the persons placed, not of
answers placing fewer. It says nothing about more persons: an answer with more persons and a score
below T may use dropped pairs, so the persons bound is left as it is.

The cheaper tier, where that root's charge does not fit the counted time left: the MIP maximises the
score alone, still keeping at least P0 persons, without heuristics and with few cut rounds at its root
(TIER_SETTINGS). Its dual bound B bounds the score of every answer on the surviving pairs placing at least
P0 persons, so of those placing at least P1 >= P0 too ({persons >= P1} lies inside {persons >= P0}), and
the score bound is max(T, B) directly. The weighted objective's LP starts with fractional persons up to
the persons bound at PERSON_WEIGHT points each, far above the Lagrangian bound, and only presolve's
cliques and many cut rounds bring it down; the score alone starts near the Lagrangian bound, so a few
rounds keep most of the bound at a third to a half of the time (twenty-ninth and thirtieth sessions).
Its answer is taken on the same terms (lexicographically better); without heuristics it is in practice
the hint. A MIP the wall clock stopped is dropped, answer and bound (a repeat may get further).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rematch_pipeline.engine.large_scale.clock import _Clock, _Rates
from rematch_pipeline.engine.large_scale.pairs import _positions
from rematch_pipeline.engine.large_scale.pricing import PERSON_WEIGHT, _Dual, _Lagrangian
from rematch_pipeline.engine.model import _build_model, _hint, _place_of, _set_objective, _solve_stage
from rematch_pipeline.engine.problem import SolverParams

LOG = logging.getLogger(__name__)

# The MIP runs only on at most this many surviving pairs (binaries): a 10,000-household round's gap of
# ~1,000 points leaves millions; state rounds of a few hundred households over 100-401 districts, tens of
# thousands (400 x 401: 45,759, whose cheaper tier fits in a 60 s limit; thirtieth session).
PROOF_MAX_PAIRS: int = 50_000
# Branch-and-bound nodes of the MIP (reproducible runs; SCIP has no work limit, a node count is one): its
# root. Its wall time is 20-110 s on state rounds of 21,600-45,800 binaries; 300 x 401 is proven there,
# and the rounds it left unproven would need more time than the limit leaves anyway (twenty-ninth session).
PROOF_NODES: int = 1
# The MIP runs only where its root's charge, with simplex iterations of half its binaries (0.3-2x were
# measured), fits in the counted time left before the deadline.
PROOF_ITERATIONS_PER_PAIR: float = 0.5
# Its relative gap: its objective counts PERSON_WEIGHT a person (~600,000 at 600 persons), so the
# round's 1e-4 would stop it 60 score points short of a proof.
PROOF_GAP: float = 1e-9
# The cheaper tier (module docstring): cut rounds at its root (3: 400 x 200's bound 26,588 in 23 s; 5:
# 26,555 in 30-32 s, which does not fit the 31.6 s left there), and simplex iterations per binary its
# charge is estimated at before it runs (0.21-0.70 measured; the charge after it counts those it took).
TIER_CUT_ROUNDS: int = 3
TIER_ITERATIONS_PER_PAIR: float = 0.5
# SCIP 10's primal heuristics (the OR-Tools pin's), each turned off in the cheaper tier: at the root they
# take about a third of its time and found nothing better than the hint on the state rounds measured. A
# name SCIP does not know (another version) stops the solve (model._solve_stage).
_SCIP_HEURISTICS: tuple[str, ...] = (
    "actconsdiving", "adaptivediving", "alns", "bound", "clique", "coefdiving", "completesol",
    "conflictdiving", "crossover", "dins", "distributiondiving", "dps", "dualval", "farkasdiving", "feaspump",
    "fixandinfer", "fracdiving", "gins", "guideddiving", "indicator", "indicatordiving", "intdiving",
    "intshifting", "linesearchdiving", "localbranching", "locks", "lpface", "mpec", "multistart", "mutation",
    "nlpdiving", "objpscostdiving", "octane", "ofins", "oneopt", "padm", "proximity", "pscostdiving",
    "randrounding", "rens", "reoptsols", "repair", "rins", "rootsoldiving", "rounding", "scheduler",
    "shiftandpropagate", "shifting", "simplerounding", "subnlp", "trivial", "trivialnegation", "trustregion",
    "twoopt", "undercover", "vbounds", "veclendiving", "zeroobj", "zirounding", "dks",
)
TIER_SETTINGS: str = "".join(f"heuristics/{name}/freq = -1\n" for name in _SCIP_HEURISTICS) + f"separating/maxroundsroot = {TIER_CUT_ROUNDS}\n"


@dataclass(frozen=True)
class _Tier:
    """One way to run the proof MIP: its objective's weight of a person (0: the score alone), SCIP settings,
    the simplex iterations per binary its charge is estimated at before it runs, its charge on the counted
    clock, and its node limit where the wall clock decides (None: on to the deadline)."""

    label: str
    weight: float
    settings: str
    iterations_per_pair: float
    charge: Callable[[_Rates, int, int], float]
    wall_clock_nodes: int | None


# The full root first, the cheaper tier where that one's charge does not fit (module docstring). The charges
# are looked up when called (tests set the rates).
_TIERS: tuple[_Tier, ...] = (
    _Tier("", PERSON_WEIGHT, "", PROOF_ITERATIONS_PER_PAIR, lambda rates, i, b: rates.proof_seconds(i, b), None),
    # It stops at its root on the wall clock too: it runs where a longer search does not fit.
    _Tier(" (cheaper tier)", 0.0, TIER_SETTINGS, TIER_ITERATIONS_PER_PAIR, lambda rates, i, b: rates.proof_tier_seconds(i, b), PROOF_NODES),
)


@dataclass
class _Proof:
    """Outcome of the step: the MIP's answer (the incumbent where it found none), the threshold T of the
    fixing, the MIP's dual bound (inf: none) and the weight of a person in its objective; bound_at turns
    them into a score bound."""

    place_of: np.ndarray
    threshold: float  # T: answers using a dropped pair score below it
    mip_bound: float  # SCIP's dual bound of weight * persons + score, proven or at its node limit (inf: none)
    pairs: int  # surviving pairs
    cut: bool = False  # the wall clock stopped the MIP or left it no time: a repeat may take its answer
    weight: float = PERSON_WEIGHT  # 0: the cheaper tier, the score alone

    def bound_at(self, persons: float) -> float:
        """The score bound for answers placing at least persons (>= the persons kept when fixing)."""
        if not math.isfinite(self.mip_bound):
            return math.inf
        return max(self.threshold, self.mip_bound - self.weight * persons)


def _surviving(lag: _Lagrangian, dual: _Dual, chosen: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """Pair positions an answer scoring at least threshold (and keeping lag's persons) may use: each
    free pair whose loss is at most L - threshold, and the current answer's pairs (chosen, positions;
    locked pairs included). Also returns L, the dual's exact value."""
    problem, pairs = lag.problem, lag.pairs
    value, rp = lag.bound(dual)
    best = np.zeros(problem.n_units)  # leaving a unit out has reduced profit 0
    free = lag.free_pair
    np.maximum.at(best, pairs.unit[free], rp[free])
    loss = best[pairs.unit] - rp
    # A hair of slack for rounding in the sums: keeping a pair too many costs binaries, not validity.
    room = value - threshold + 1e-6 * max(1.0, abs(value))
    keep = free & (loss <= room)
    return np.union1d(np.flatnonzero(keep), chosen), value


def _prove(
    lag: _Lagrangian, dual: _Dual, current: np.ndarray, params: SolverParams, deadline: float, clock: _Clock
) -> _Proof | None:
    """Reduced-cost fixing at dual (of lag, the score stage keeping the persons of current), then one
    SCIP MIP over every unit on the surviving pairs, hinted with current (module docstring): its root as
    SCIP's defaults make it where that root's charge fits in the counted time left, else the cheaper tier
    where its charge fits. None where the pairs are too many or the counted time too short for either;
    the incumbent where the wall clock stopped the MIP or left it no time (its answer could differ
    between runs: dropped, and the outcome says cut)."""
    problem, pairs = lag.problem, lag.pairs
    # Whether it runs hangs on the counted work only (reproducible): a wall clock run out must not decide it.
    if clock.counted() >= deadline:
        return None
    chosen = _positions(problem, pairs, current)
    threshold = float(pairs.score[chosen].sum())
    clock.spend(clock.rates.pair_pass * 4 * pairs.size)  # the losses and the selection
    keep, value = _surviving(lag, dual, chosen, threshold)
    LOG.debug("reduced-cost fixing at %.4f for %.4f: %d of %d pairs survive", value, threshold, keep.size, pairs.size)
    if keep.size > PROOF_MAX_PAIRS:
        return None
    fits = (t for t in _TIERS if clock.counted() + t.charge(clock.rates, int(t.iterations_per_pair * keep.size), keep.size) <= deadline)
    tier = next(fits, None)
    if tier is None:
        return None
    if not math.isfinite(clock.now()):  # the wall clock has run out where a repeat with the time runs the MIP
        return _Proof(current, threshold, math.inf, int(keep.size), cut=True, weight=tier.weight)
    sub = problem.with_pairs(pairs.idx[keep])
    model = _build_model(sub)
    hint = _hint(model, sub, current)
    persons = float(model.persons @ hint[: model.n_x])
    model.proto.constraint[model.persons_row].lower_bound = persons
    _set_objective(model, tier.weight * model.persons + model.score)
    scip = dataclasses.replace(params, backend="scip", relative_gap=PROOF_GAP)
    start = time.perf_counter()
    if clock.reproducible:
        limit = clock.wall_left()
        status, values, _, bound, wall, iterations = _solve_stage(model, scip, limit, hint, node_limit=PROOF_NODES, settings=tier.settings)
        charge = tier.charge(clock.rates, iterations, model.n_x)
        clock.spend(charge)
        LOG.debug("proof MIP%s: %d binaries, %d iterations, %.1f s wall, %.1f s counted", tier.label, model.n_x, iterations, wall, charge)
        if wall >= limit - 0.05:  # stopped by the wall clock, not by its nodes: not reproducible
            clock.overrun = clock.cut = True
            return _Proof(current, threshold, math.inf, int(keep.size), cut=True, weight=tier.weight)
    else:
        seconds = max(0.0, deadline - clock.now())
        status, values, _, bound, wall, _ = _solve_stage(model, scip, seconds, hint, node_limit=tier.wall_clock_nodes, settings=tier.settings)
    LOG.debug("proof MIP (%s) in %.1f s: bound %.4f", status, time.perf_counter() - start, bound)
    place_of = current if values is None else _place_of(model, problem.n_units, np.round(values[: model.n_x]) > 0.5)
    # Optimal or stopped by its nodes, SCIP's dual bound holds for every answer on these pairs.
    return _Proof(place_of, threshold, bound if status in ("optimal", "feasible") else math.inf, int(keep.size), weight=tier.weight)

