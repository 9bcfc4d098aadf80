"""The assignment model: which unit (link group of households) goes to which place.

Binary x_p per candidate pair p = (unit u, place j), binary y_j per place with a
minimum intake. Constraints: at most (or exactly) one place per unit; per place and
resource sum of usage <= capacity; per place with a minimum: persons 0 or >= min
(min*y_j <= persons_j <= cap_j*y_j); locked pairs fixed to 1.
Objectives are solved lexicographically with OR-Tools pywraplp (SCIP by default):
1) max persons placed, 2) max total score with persons >= stage-1 value (plus a tiny
deterministic tie-break), or for "maximin" 2) max the minimum per-household score of
placed units (bisection over score thresholds on the persons model, _maximin_stage),
3) max total score keeping both. Rounds with more than
SolverParams.max_model_pairs pairs (lexicographic: or max_model_units units, or max_exact_pairs pairs of the units that
can be placed; uses_large_method) go to the large_scale package (Lagrangian prices and
bound over all pairs, greedy and local moves, exact MIP on close calls). See docs/scoring.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from ortools.linear_solver import linear_solver_pb2, pywraplp

from rematch_pipeline.engine._common import (
    RESOURCE_COLUMNS,
    RESOURCES,
    int_column,
    key_positions,
    require_columns,
    require_unique,
)
from rematch_pipeline.engine.exchange import exchange_within_classes, reference_seconds
from rematch_pipeline.engine.lp import LpRelaxation

Backend = Literal["scip", "cbc", "highs", "cp_sat"]
Objective = Literal["lexicographic", "maximin"]

BACKENDS: dict[str, str] = {"scip": "SCIP", "cbc": "CBC", "highs": "HIGHS", "cp_sat": "CP_SAT"}
# The tie-break terms of all units together stay below half the score resolution
# (scores carry 4 decimals), so they can never outweigh a real score difference.
TIE_BREAK_TOTAL: float = 0.5e-4
# Maximin: per-household scores are 0..100, so 100 is a valid big-M and T's ceiling.
SCORE_CEILING: float = 100.0
# Slack when a later stage keeps an earlier stage's (floating point) optimum.
KEEP_TOLERANCE: float = 1e-6
# The exact path's stages share time_limit_seconds (model building included) on the wall
# clock. CBC reads its limit on the CPU seconds of its thread, not the wall clock: on a
# loaded machine its stop lags (measured: a 57.8 s limit stopped after 61.2 s wall, 58.0 s
# CPU), so a CBC stage's limit is scaled by the share of a core the earlier stages got.
# A stage begun with less than MIN_STAGE_SECONDS left is skipped (status not_solved):
# CBC spends ~0.3 s on a 600-household round's root LP whatever its limit. The last stage
# stops STAGE_RESERVE_SHARE of the limit early (at most STAGE_RESERVE_SECONDS), for the
# solver's own overshoot; a solve then ends within TIME_LIMIT_TOLERANCE of the limit
# (docs/decisions.md, "Exact rounds keep their time limit").
MIN_STAGE_SECONDS: float = 0.25
STAGE_RESERVE_SHARE: float = 0.02
STAGE_RESERVE_SECONDS: float = 1.0
TIME_LIMIT_TOLERANCE: float = 1.0
MIN_CPU_SHARE: float = 0.2
NO_BOUND: float = 1e19
# Maximin: a threshold probe's MIP gets at least this multiple of the persons stage's seconds
# (measured: a probe that reached its target took 0.4-3x that stage's time).
PROBE_PERSONS_FACTOR: float = 2.0
# Maximin: below the LP's highest open threshold, MIP probes go down by score gaps doubling
# from this many points (0.5, 1.5, 3.5, ... below it) until one reaches its threshold (that
# highest open threshold was the optimum itself on every measured round).
GALLOP_POINTS: float = 0.5
# Reproducible large rounds stop on the wall clock at this multiple of their limit: the
# counted budgets then hold on a machine up to about this much slower than the reference
# one (measured: one day's machine ran 1.6x behind it and cut 10 s and 25 s test solves).
WALL_LIMIT_FACTOR: float = 2.0
# An answer this far from its bounds gets a warning (AssignmentResult.far_from_bound): the
# benchmark rounds at their documented limits stay within 1 % of the persons and 2.5 % gap.
FAR_PERSONS_SHARE: float = 0.02
FAR_SCORE_GAP: float = 0.05
# A round's time limit by its size (time_limit_for): the benchmark rounds reach their targets
# at 60 s for 10,000 households x 401 districts (3.0 M pairs) and 300 s for 50,000 (14.8 M);
# with 60 s the 50,000 round left 10,000 persons out (20 % gap, docs/decisions.md).
SECONDS_PER_MILLION_PAIRS: float = 20.0
MIN_TIME_LIMIT_SECONDS: float = 60.0
MAX_TIME_LIMIT_SECONDS: float = 600.0
# Exchanges within usage classes after an unproven last stage (_exchange_passes): a pass
# re-seats each class given the others, so it can open moves for the next pass; one more
# person placed outweighs any score (lexicographic).
MOST_EXCHANGE_PASSES: int = 20
EXCHANGE_PERSON_WEIGHT: float = 1000.0

# Row kinds of the model, recorded so that duals can be mapped back (large_scale).
ROW_UNIT, ROW_CAPACITY, ROW_MIN_HIGH, ROW_MIN_LOW, ROW_PERSONS = range(5)

_STATUS: dict[int, str] = {
    pywraplp.Solver.OPTIMAL: "optimal",
    pywraplp.Solver.FEASIBLE: "feasible",
    pywraplp.Solver.INFEASIBLE: "infeasible",
    pywraplp.Solver.UNBOUNDED: "unbounded",
    pywraplp.Solver.ABNORMAL: "abnormal",
    pywraplp.Solver.MODEL_INVALID: "model_invalid",
    pywraplp.Solver.NOT_SOLVED: "not_solved",
}


@dataclass
class AssignmentProblem:
    """Solver input as plain arrays; units are link groups, places are municipalities.

    usage[u, r] is summed over the unit's households, capacity[j, r] is the place's
    offer, min_intake[j] is on persons (a place receives 0 or >= min_intake[j]).
    A candidate pair k is (pair_unit[k], pair_place[k]) with pair_score[k] = summed
    household scores. locked pairs must be kept. exactly_one demands every unit be
    placed (default: at most one place per unit). unit_households counts households
    per unit (for per-household scores in the maximin objective). pair_usage, when
    given ([pairs, resources]), is the usage of each candidate pair and replaces
    usage[pair_unit] in the capacity and minimum-intake rows, the persons objective
    and check_assignment (generalized assignment: usage depends on the place).
    """

    unit_ids: list[str]
    place_ids: list[str]
    resources: list[str]
    usage: np.ndarray
    capacity: np.ndarray
    min_intake: np.ndarray
    pair_unit: np.ndarray
    pair_place: np.ndarray
    pair_score: np.ndarray
    locked: list[tuple[int, int]] = field(default_factory=list)
    exactly_one: bool = False
    unit_households: np.ndarray | None = None
    pair_usage: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.usage = np.asarray(self.usage, dtype=np.int64)
        self.capacity = np.asarray(self.capacity, dtype=np.int64)
        self.min_intake = np.asarray(self.min_intake, dtype=np.int64)
        self.pair_unit = np.asarray(self.pair_unit, dtype=np.int64)
        self.pair_place = np.asarray(self.pair_place, dtype=np.int64)
        self.pair_score = np.asarray(self.pair_score, dtype=np.float64)
        if self.unit_households is None:
            self.unit_households = np.ones(len(self.unit_ids), dtype=np.int64)
        self.unit_households = np.asarray(self.unit_households, dtype=np.int64)
        self.locked = [(int(u), int(j)) for u, j in self.locked]
        if self.pair_usage is not None:
            self.pair_usage = np.asarray(self.pair_usage, dtype=np.int64)
        self.validate()

    @property
    def n_units(self) -> int:
        """Number of units (link groups)."""
        return len(self.unit_ids)

    @property
    def n_places(self) -> int:
        """Number of places (municipalities)."""
        return len(self.place_ids)

    @property
    def persons_index(self) -> int:
        """Column of the persons resource."""
        return self.resources.index("persons")

    def validate(self) -> None:
        """Raise ValueError on inconsistent shapes or indices (messages carry counts only)."""
        n_u, n_j, n_r = self.n_units, self.n_places, len(self.resources)
        if "persons" not in self.resources:
            raise ValueError("resources must include 'persons'")
        if self.usage.shape != (n_u, n_r):
            raise ValueError(f"usage shape {self.usage.shape} != ({n_u}, {n_r})")
        if self.capacity.shape != (n_j, n_r):
            raise ValueError(f"capacity shape {self.capacity.shape} != ({n_j}, {n_r})")
        if self.min_intake.shape != (n_j,):
            raise ValueError("min_intake must have one entry per place")
        if self.unit_households is None or self.unit_households.shape != (n_u,):
            raise ValueError("unit_households must have one entry per unit")
        n_p = self.pair_unit.shape[0]
        if self.pair_place.shape != (n_p,) or self.pair_score.shape != (n_p,):
            raise ValueError("pair_unit, pair_place and pair_score must have equal length")
        if n_p and (self.pair_unit.min() < 0 or self.pair_unit.max() >= n_u):
            raise ValueError("pair_unit out of range")
        if n_p and (self.pair_place.min() < 0 or self.pair_place.max() >= n_j):
            raise ValueError("pair_place out of range")
        if not np.all(np.isfinite(self.pair_score)):
            raise ValueError("pair_score must be finite")
        if (self.usage < 0).any() or (self.capacity < 0).any() or (self.min_intake < 0).any():
            raise ValueError("usage, capacity and min_intake must be >= 0")
        if self.pair_usage is not None:
            if self.pair_usage.shape != (n_p, n_r):
                raise ValueError(f"pair_usage shape {self.pair_usage.shape} != ({n_p}, {n_r})")
            if (self.pair_usage < 0).any():
                raise ValueError("pair_usage must be >= 0")
        keys = self.pair_keys()
        keys.sort()  # sort-based: far faster than hashing here; in place, keys is a fresh array
        dupes = int(np.count_nonzero(keys[1:] == keys[:-1]))
        if dupes:
            raise ValueError(f"{dupes} duplicate candidate pairs")
        units_locked = [u for u, _ in self.locked]
        if len(set(units_locked)) != len(units_locked):
            raise ValueError("a unit is locked to more than one place")
        if self.locked:
            locked_keys = self.locked_keys()
            pos = np.minimum(np.searchsorted(keys, locked_keys), max(keys.size - 1, 0))
            bad = int((keys.size == 0) * len(locked_keys)) or int((keys[pos] != locked_keys).sum())
            if bad:
                raise ValueError(f"{bad} locked pairs are not candidate pairs")

    def usage_of_pairs(self, idx: np.ndarray | None = None, resource: int | None = None) -> np.ndarray:
        """Usage of candidate pairs idx (all by default): pair_usage rows when given,
        else the unit's usage. [len(idx), resources], or [len(idx)] for one resource."""
        cols = slice(None) if resource is None else resource
        if self.pair_usage is not None:
            return self.pair_usage[:, cols] if idx is None else self.pair_usage[idx, cols]
        return self.usage[self.pair_unit if idx is None else self.pair_unit[idx], cols]

    def pair_keys(self) -> np.ndarray:
        """One int64 key per pair: unit * n_places + place."""
        return self.pair_unit * max(self.n_places, 1) + self.pair_place

    def locked_keys(self) -> np.ndarray:
        """The locked pairs' keys, as pair_keys makes them."""
        return np.array([u * max(self.n_places, 1) + j for u, j in self.locked], dtype=np.int64)

    def with_pairs(self, keep: np.ndarray) -> AssignmentProblem:
        """The same problem on the candidate pairs keep (a mask, or positions in the order
        wanted) and its locked pairs, which always stay (then in position order)."""
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        if self.locked:
            keep = np.union1d(keep, np.flatnonzero(np.isin(self.pair_keys(), self.locked_keys())))
        return dataclasses.replace(
            self,
            pair_unit=self.pair_unit[keep],
            pair_place=self.pair_place[keep],
            pair_score=self.pair_score[keep],
            pair_usage=None if self.pair_usage is None else self.pair_usage[keep],
        )


@dataclass(frozen=True)
class PairLookup:
    """Finds candidate pairs by (unit, place): the sorted pair keys and the order that sorts them
    (None when the pairs already come sorted, as build_problem makes them)."""

    sorted_keys: np.ndarray
    order: np.ndarray | None

    @classmethod
    def of(cls, problem: AssignmentProblem) -> PairLookup:
        """Sort the pair keys once (a linear check when they are sorted already)."""
        keys = problem.pair_keys()
        if keys.size < 2 or bool((keys[1:] > keys[:-1]).all()):
            return cls(keys, None)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], order)

    def index(self, wanted: np.ndarray) -> np.ndarray:
        """Pair index of each wanted key (unit * n_places + place), -1 where it is not a candidate pair."""
        out = np.full(wanted.size, -1, dtype=np.int64)
        if self.sorted_keys.size == 0 or wanted.size == 0:
            return out
        at = np.minimum(np.searchsorted(self.sorted_keys, wanted), self.sorted_keys.size - 1)
        hit = self.sorted_keys[at] == wanted
        out[hit] = at[hit] if self.order is None else self.order[at[hit]]
        return out

    def positions(self, problem: AssignmentProblem, place_of: np.ndarray) -> np.ndarray:
        """Pair index of each unit's place (-1 where unplaced or not a candidate pair)."""
        out = np.full(problem.n_units, -1, dtype=np.int64)
        placed = np.flatnonzero(place_of >= 0)
        out[placed] = self.index(placed.astype(np.int64) * max(problem.n_places, 1) + place_of[placed])
        return out


@dataclass(frozen=True)
class SolverParams:
    """How to solve: backend, objective, limits. Deterministic for fixed values.

    time_limit_seconds is the total over all stages; relative_gap applies per stage, except
    that the persons stage stops only at a proven gap below one person.
    """

    time_limit_seconds: float = 60.0
    backend: Backend = "cbc"  # the round config's default too: best on the exact path (docs/decisions.md)
    objective: Objective = "lexicographic"
    relative_gap: float = 1e-4
    seed: int = 0
    threads: int = 1
    tie_break: bool = True
    # Above this many candidate pairs the lexicographic objective switches to the
    # Lagrangian method of large_scale (maximin: to a reduced pair set).
    max_model_pairs: int = 150_000
    # Lexicographic rounds where more units than this can be placed together (most_units_placed)
    # go to large_scale too: CBC's score stage finds no answer in 60 s at 1,000 units x 40
    # places (29,000 pairs; the proposals then ignored the scores, 50,626 points against the
    # large path's 70,354), while at 800 x 40 it is 0.04 % ahead of the large path. Units that
    # cannot all be placed do not count: a tight 960-unit round (room for 265 households) CBC
    # proves in 6.5 s, where the large path ends 5.5 % below (docs/decisions.md). 300 was tried
    # (twenty-fourth session): the demo round then gets 1.02 % every run, against CBC's
    # 0.19-0.27 % or, in some unit orders and loads, no score answer.
    max_model_units: int = 800
    # Lexicographic rounds whose units that can be placed together, times their mean count of candidate pairs,
    # exceed this go to large_scale too: above it CBC's score stage found no answer in 60 s on every
    # round measured with more than 100 districts or more than 380 units (400 x 100, 23,077 pairs: 23,629
    # points, the scores unweighed, against the large path's 27,219; 400 x 401, 500 x 200, 600 x 100, 800 x 100,
    # 700 x 200: 10-43 % below it, no bound, not reproducible), while the large path is within 0.2 % of CBC
    # where CBC still answers (300 x 401, 800 x 40; docs/decisions.md, twenty-seventh session).
    max_exact_pairs: int = 20_000
    # Large rounds: budget counted work instead of wall-clock seconds, so the same input
    # and parameters give the same assignment on any machine and load (large_scale.clock._Clock).
    reproducible: bool = True
    # Reproducible large rounds: the wall-clock stop (None: WALL_LIMIT_FACTOR x the time
    # limit). The counted work is the same on any machine, its wall-clock time is not: a
    # machine slower than the reference needs more seconds for it, and a run stopped here
    # is flagged not reproducible.
    wall_limit_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}")
        if self.objective not in ("lexicographic", "maximin"):
            raise ValueError("objective must be 'lexicographic' or 'maximin'")
        if not self.time_limit_seconds > 0:
            raise ValueError("time_limit_seconds must be > 0")
        if self.wall_limit_seconds is not None and not self.wall_limit_seconds > 0:
            raise ValueError("wall_limit_seconds must be > 0")
        if not 0 <= self.relative_gap < 1:
            raise ValueError("relative_gap must be in [0, 1)")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")

    def wall_limit(self) -> float:
        """Seconds of wall clock after which a large solve stops whatever its budgets (the
        exact path stops at the time limit itself)."""
        if self.wall_limit_seconds is not None:
            return self.wall_limit_seconds
        return WALL_LIMIT_FACTOR * self.time_limit_seconds if self.reproducible else self.time_limit_seconds

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for run metadata."""
        return asdict(self)


def time_limit_for(n_pairs: int) -> float:
    """The time limit a round of n_pairs candidate pairs gets when none is given: 20 s per million
    pairs, at least 60 s and at most 600 s (whole seconds)."""
    seconds = math.ceil(SECONDS_PER_MILLION_PAIRS * n_pairs / 1e6)
    return float(min(MAX_TIME_LIMIT_SECONDS, max(MIN_TIME_LIMIT_SECONDS, seconds)))


@dataclass(frozen=True)
class StageReport:
    """Outcome of one lexicographic stage."""

    name: str
    status: str
    objective_value: float
    best_bound: float
    gap: float
    wall_seconds: float


@dataclass(frozen=True)
class AssignmentResult:
    """Solver output. place_of_unit[u] is a place index or -1 (unplaced).

    objective_value / best_bound / gap refer to the last stage (total score, or for
    maximin also total score after the minimum is kept); persons_bound is stage 1's
    proven upper bound on persons placed. Bounds of later stages hold given the
    earlier stages' kept values.
    """

    place_of_unit: np.ndarray
    status: str
    persons_placed: int
    total_score: float
    objective_value: float
    best_bound: float
    gap: float
    persons_bound: float
    min_unit_score: float | None
    wall_seconds: float
    solver: str
    params: dict[str, Any]
    stages: tuple[StageReport, ...]
    # "all_pairs": bounds hold for the whole problem; "reduced_pairs": only for the
    # reduced candidate set a large maximin round is solved on.
    bound_scope: str = "all_pairs"
    # False when the run's budgets were wall-clock seconds that ran out (a repeat may
    # differ): a large round solved with reproducible=False, or one whose counted work
    # the wall-clock limit cut short before its assignment was settled (a cut in the
    # bound's refinement after it leaves the assignment, not the bound, reproducible).
    reproducible: bool = True
    # False when the wall clock also (or only) stopped the bound's refinement: a repeat
    # may report another bound and gap (for the same assignment, if reproducible).
    bound_reproducible: bool = True
    # What the person running the round needs told about this solve (a wall-clock cut and what to change), in
    # their words: the caller shows them where its user reads (the round's run log). The engine does not log
    # them itself, which reached the terminal as bare lines and not the run view.
    notes: tuple[str, ...] = ()

    def placed_pairs(self) -> list[tuple[int, int]]:
        """(unit, place) index pairs of placed units, ascending by unit."""
        return [(u, int(j)) for u, j in enumerate(self.place_of_unit.tolist()) if j >= 0]

    def far_from_bound(self) -> bool:
        """True when the answer is far from its proven bounds: more than FAR_PERSONS_SHARE
        of the persons bound left unplaced, or a score gap above FAR_SCORE_GAP. On a large
        round that means the time limit was too short for its size (50,000 households x
        401 districts at 60 s: 81 % of the persons, 42 % score gap; at 300 s: 99.99 %, 0.1 %).
        Bounds that were not proven (infinite) say nothing."""
        persons_short = bool(np.isfinite(self.persons_bound)) and self.persons_placed < (1 - FAR_PERSONS_SHARE) * self.persons_bound
        return persons_short or bool(np.isfinite(self.gap) and self.gap > FAR_SCORE_GAP)


# --------------------------------------------------------------------------- build


def build_problem(
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    scored_pairs: pl.DataFrame,
    *,
    locked: Sequence[tuple[str, str]] = (),
    exactly_one: bool = False,
) -> AssignmentProblem:
    """Form units from link_group and the arrays of the model.

    A unit's usage is the sum over its households; its pair with a place exists only
    when every household of the group is a candidate there, with the summed score.
    locked holds (household_pseudonym or link_group, municipality_id) pairs to keep.
    Units and places are sorted by id so the problem never depends on row order.
    """
    hh_cols = ("household_pseudonym", "link_group", *RESOURCES)
    mu_cols = ("municipality_id", "min_persons", *(cap for _, cap in RESOURCE_COLUMNS))
    require_columns(households, hh_cols, "household_features")
    require_columns(municipalities, mu_cols, "municipality_features")
    require_columns(scored_pairs, ("household_pseudonym", "municipality_id", "score"), "pairs")
    require_unique(households, "household_pseudonym", "household_features")
    require_unique(municipalities, "municipality_id", "municipality_features")
    if households.get_column("link_group").null_count():
        raise ValueError("household_features: link_group has nulls")

    units = (
        households.group_by("link_group")
        .agg(
            *(pl.col(r).fill_null(0).cast(pl.Int64).sum() for r in RESOURCES),
            pl.len().cast(pl.Int64).alias("_households"),
        )
        .sort("link_group")
    )
    unit_ids = units.get_column("link_group").to_list()
    mu = municipalities.sort("municipality_id")
    place_ids = mu.get_column("municipality_id").to_list()

    # Integer indices first, then group in numpy: string group_by over millions of
    # pairs is the slow part otherwise. int32 positions, and each temporary freed once
    # used: a national round has ~15 M pairs, so every pair-long array is ~100 MB.
    unit_of_row = key_positions(households, "link_group", unit_ids)
    row = key_positions(scored_pairs, "household_pseudonym", households.get_column("household_pseudonym").to_list())
    place = key_positions(scored_pairs, "municipality_id", place_ids)
    unknown = int(np.count_nonzero(row < 0)) + int(np.count_nonzero(place < 0))
    if unknown:
        raise ValueError(f"pairs: {unknown} references to unknown households or municipalities")
    n_j = max(len(place_ids), 1)
    keys = unit_of_row[row].astype(np.int64) * n_j + place
    del row, place
    scores = scored_pairs.get_column("score").fill_null(0.0).to_numpy().astype(np.float64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    scores = scores[order]
    del order
    first = np.ones(keys.size, dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    del first
    # Summation in sorted key order (then pair row order within a key): deterministic.
    sums = np.add.reduceat(scores, starts) if keys.size else np.zeros(0)
    del scores
    uniq = keys[starts]
    counts = np.diff(np.r_[starts, keys.size])
    del keys, starts
    sizes = units.get_column("_households").to_numpy().astype(np.int64)
    pair_unit = uniq // n_j
    keep = counts == sizes[pair_unit]  # every household of the group is compatible
    del counts
    pair_unit, pair_place, pair_score = pair_unit[keep], (uniq % n_j)[keep], np.round(sums[keep], 6)
    del uniq, sums, keep

    unit_of = dict(
        zip(
            households.get_column("household_pseudonym").to_list(),
            households.get_column("link_group").to_list(),
            strict=True,
        )
    )
    u_pos = {uid: i for i, uid in enumerate(unit_ids)}
    j_pos = {pid: j for j, pid in enumerate(place_ids)}
    locked_idx: list[tuple[int, int]] = []
    unknown_locks = 0
    for who, place in locked:
        group = unit_of.get(who, who)
        if group not in u_pos or place not in j_pos:
            unknown_locks += 1
            continue
        locked_idx.append((u_pos[group], j_pos[place]))
    if unknown_locks:
        raise ValueError(f"{unknown_locks} locked pairs name unknown units or municipalities")
    locked_idx = sorted(set(locked_idx))

    return AssignmentProblem(
        unit_ids=unit_ids,
        place_ids=place_ids,
        resources=list(RESOURCES),
        usage=units.select(RESOURCES).to_numpy().astype(np.int64),
        capacity=np.stack([int_column(mu, cap) for _, cap in RESOURCE_COLUMNS], axis=1),
        min_intake=int_column(mu, "min_persons"),
        pair_unit=pair_unit,
        pair_place=pair_place,
        pair_score=pair_score,
        locked=locked_idx,
        exactly_one=exactly_one,
        unit_households=sizes.astype(np.int64),
    )


# --------------------------------------------------------------------------- check


def check_assignment(problem: AssignmentProblem, assignment: np.ndarray | AssignmentResult) -> list[str]:
    """Every violated constraint of an assignment, as messages with ids and counts.

    Independent of the solver: recomputes loads from the arrays. An empty list
    means the assignment is feasible.
    """
    place_of = assignment.place_of_unit if isinstance(assignment, AssignmentResult) else assignment
    place_of = np.asarray(place_of, dtype=np.int64)
    problems: list[str] = []
    if place_of.shape != (problem.n_units,):
        return [f"assignment has {place_of.shape} entries, expected ({problem.n_units},)"]
    out_of_range = (place_of < -1) | (place_of >= problem.n_places)
    for u in np.flatnonzero(out_of_range).tolist():
        problems.append(f"unit {problem.unit_ids[u]}: place index {int(place_of[u])} out of range")
    ok = ~out_of_range
    placed = np.flatnonzero(ok & (place_of >= 0))
    # A lookup table over the key range (units x places bytes), not a set of every pair: a national
    # round's 15 M pairs as a Python set took about 1 GiB, the peak of its solve.
    chosen = placed * max(problem.n_places, 1) + place_of[placed]
    keys = problem.pair_keys()
    is_candidate = np.isin(chosen, keys, kind="table") if keys.size else np.zeros(chosen.size, dtype=bool)
    del keys
    for u in placed[~is_candidate].tolist():
        problems.append(f"unit {problem.unit_ids[u]}: {problem.place_ids[int(place_of[u])]} is not a candidate pair")
    load = np.zeros_like(problem.capacity)
    if problem.pair_usage is None:
        np.add.at(load, place_of[placed], problem.usage[placed])
    else:  # per-pair usage: the chosen pair's row (non-candidate choices reported above)
        at = PairLookup.of(problem).positions(problem, place_of)[placed]
        found = at >= 0
        np.add.at(load, place_of[placed][found], problem.pair_usage[at[found]])
    over = load > problem.capacity
    for j, r in zip(*np.nonzero(over), strict=True):
        problems.append(
            f"place {problem.place_ids[j]}: {problem.resources[r]} used {int(load[j, r])}"
            f" > capacity {int(problem.capacity[j, r])}"
        )
    persons = load[:, problem.persons_index]
    short = (persons > 0) & (persons < problem.min_intake)
    for j in np.flatnonzero(short).tolist():
        problems.append(
            f"place {problem.place_ids[j]}: intake {int(persons[j])} persons below minimum"
            f" {int(problem.min_intake[j])}"
        )
    for u, j in problem.locked:
        if int(place_of[u]) != j:
            problems.append(f"unit {problem.unit_ids[u]}: locked to {problem.place_ids[j]} but not kept")
    if problem.exactly_one:
        for u in np.flatnonzero(place_of == -1).tolist():
            problems.append(f"unit {problem.unit_ids[u]}: unplaced but exactly_one is required")
    return problems


# --------------------------------------------------------------------------- model


@dataclass
class _Model:
    """Reduced model arrays: pairs that can be used at all, rows that can bind."""

    pair_idx: np.ndarray  # indices into the problem's pairs
    unit: np.ndarray
    place: np.ndarray
    persons: np.ndarray  # persons of each kept pair's unit
    score: np.ndarray
    household_score: np.ndarray  # per-household mean score of the pair
    locked_vars: np.ndarray  # variable indices fixed to 1
    min_places: np.ndarray  # places with a minimum intake (each gets a y variable)
    proto: linear_solver_pb2.MPModelProto
    n_x: int
    persons_row: int  # row: sum persons * x >= (stage-1 value)
    # Per constraint row: kind (ROW_*), place, resource, unit (-1 where not applicable).
    row_kind: np.ndarray
    row_place: np.ndarray
    row_resource: np.ndarray
    row_unit: np.ndarray
    y_place: np.ndarray  # place of each y variable (variable index n_x + k)


def _reduce(problem: AssignmentProblem) -> np.ndarray:
    """Indices of pairs worth a variable: the unit fits the place's capacity on its own
    and the place can reach its minimum intake at all. Locked pairs always stay."""
    fits = np.ones(problem.pair_unit.size, dtype=bool)
    for r in range(len(problem.resources)):  # per resource: no [pairs x resources] temporaries
        fits &= problem.usage_of_pairs(resource=r) <= problem.capacity[problem.pair_place, r]
    cap_persons = problem.capacity[:, problem.persons_index]
    reachable = problem.min_intake <= cap_persons
    keep = fits & reachable[problem.pair_place]
    if problem.locked:
        keep |= np.isin(problem.pair_keys(), problem.locked_keys())
    return np.flatnonzero(keep)


def _build_model(problem: AssignmentProblem) -> _Model:
    """Encode the model once as an MPModelProto (fast bulk construction from numpy).

    Objective coefficients are set per stage; stage-keeping rows start unbounded.
    """
    idx = _reduce(problem)
    unit = problem.pair_unit[idx]
    place = problem.pair_place[idx]
    order = np.lexsort((place, unit))  # pairs sorted by unit then place (tie-break order)
    idx, unit, place = idx[order], unit[order], place[order]
    n_x = idx.size
    pi = problem.persons_index
    persons = problem.usage_of_pairs(idx, pi).astype(np.float64)
    score = problem.pair_score[idx]
    hh = np.maximum(problem.unit_households, 1)[unit].astype(np.float64)
    locked_set = {u * problem.n_places + j for u, j in problem.locked}
    keys = unit * problem.n_places + place
    locked_vars = np.flatnonzero(np.isin(keys, np.array(sorted(locked_set), dtype=np.int64)))

    m = linear_solver_pb2.MPModelProto()
    m.maximize = True
    lb = np.zeros(n_x)
    lb[locked_vars] = 1.0
    add_var = m.variable.add
    for low in lb.tolist():
        add_var(lower_bound=low, upper_bound=1.0, is_integer=True)

    # One y per place with a minimum intake that some pair could use.
    used_places = np.unique(place)
    min_places = used_places[problem.min_intake[used_places] > 0]
    y_of = {int(j): n_x + k for k, j in enumerate(min_places.tolist())}
    for _ in range(min_places.size):
        add_var(lower_bound=0.0, upper_bound=1.0, is_integer=True)

    rows: list[tuple[int, int, int, int]] = []
    # Unit rows: at most / exactly one place.
    u_order = np.argsort(unit, kind="stable")
    u_starts = np.searchsorted(unit[u_order], np.arange(problem.n_units + 1))
    for u in range(problem.n_units):
        members = u_order[u_starts[u] : u_starts[u + 1]]
        if members.size == 0 and not problem.exactly_one:
            continue
        rows.append((ROW_UNIT, -1, -1, u))
        ct = m.constraint.add(lower_bound=1.0 if problem.exactly_one else 0.0, upper_bound=1.0)
        ct.var_index.extend(members.tolist())
        ct.coefficient.extend([1.0] * members.size)

    # Place rows: capacity per resource; rows that cannot bind are left out.
    p_order = np.argsort(place, kind="stable")
    p_starts = np.searchsorted(place[p_order], np.arange(problem.n_places + 1))
    for j in range(problem.n_places):
        members = p_order[p_starts[j] : p_starts[j + 1]]
        if members.size == 0:
            continue
        use = problem.usage_of_pairs(idx[members])  # [members, resources]
        cap = problem.capacity[j]
        for r in range(len(problem.resources)):
            coef = use[:, r]
            nz = coef > 0
            if r == pi and j in y_of:
                # min*y <= persons <= cap*y : zero or at least the minimum.
                rows.append((ROW_MIN_HIGH, j, r, -1))
                ct = m.constraint.add(lower_bound=-np.inf, upper_bound=0.0)
                ct.var_index.extend([*members[nz].tolist(), y_of[j]])
                ct.coefficient.extend([*coef[nz].astype(float).tolist(), -float(cap[r])])
                rows.append((ROW_MIN_LOW, j, r, -1))
                ct = m.constraint.add(lower_bound=0.0, upper_bound=np.inf)
                ct.var_index.extend([*members[nz].tolist(), y_of[j]])
                ct.coefficient.extend([*coef[nz].astype(float).tolist(), -float(problem.min_intake[j])])
                continue
            if coef.sum() <= cap[r]:
                continue  # every candidate together fits: row never binds
            rows.append((ROW_CAPACITY, j, r, -1))
            ct = m.constraint.add(lower_bound=-np.inf, upper_bound=float(cap[r]))
            ct.var_index.extend(members[nz].tolist())
            ct.coefficient.extend(coef[nz].astype(float).tolist())

    persons_row = len(m.constraint)
    rows.append((ROW_PERSONS, -1, pi, -1))
    ct = m.constraint.add(lower_bound=-np.inf, upper_bound=np.inf)
    ct.var_index.extend(range(n_x))
    ct.coefficient.extend(persons.tolist())
    return _Model(
        pair_idx=idx,
        unit=unit,
        place=place,
        persons=persons,
        score=score,
        household_score=score / hh,
        locked_vars=locked_vars,
        min_places=min_places,
        proto=m,
        n_x=n_x,
        persons_row=persons_row,
        row_kind=np.array([r[0] for r in rows], dtype=np.int64),
        row_place=np.array([r[1] for r in rows], dtype=np.int64),
        row_resource=np.array([r[2] for r in rows], dtype=np.int64),
        row_unit=np.array([r[3] for r in rows], dtype=np.int64),
        y_place=min_places.astype(np.int64),
    )


def _set_objective(model: _Model, coefs: dict[int, float] | np.ndarray) -> None:
    """Replace the objective: dense array over x variables, or sparse {var: coef}."""
    variables = model.proto.variable
    for v in variables:
        v.objective_coefficient = 0.0
    if isinstance(coefs, np.ndarray):
        for v, c in zip(variables, coefs.tolist(), strict=False):
            v.objective_coefficient = c
    else:
        for k, c in coefs.items():
            variables[k].objective_coefficient = c


def _tie_break(model: _Model) -> np.ndarray:
    """Tiny weights strictly decreasing in sorted (unit, place) pair order (the exact path's
    units are in data_order, so the weights do not hang on the pseudonyms).

    A unit takes at most one pair, so the chosen weights sum to at most
    TIE_BREAK_TOTAL, below any real score difference (multiples of 1e-4).
    """
    n_x = model.n_x
    if n_x == 0:
        return np.zeros(0)
    n_units = max(1, np.unique(model.unit).size)
    return TIE_BREAK_TOTAL / n_units * (n_x - np.arange(n_x, dtype=np.float64)) / n_x


def _gap(obj: float, bound: float) -> float:
    """Relative gap (bound - objective) / |objective|; inf without a finite bound."""
    if not np.isfinite(bound) or not np.isfinite(obj):
        return float("inf")
    diff = max(0.0, bound - obj)
    if diff <= 1e-9:
        return 0.0
    return diff / max(abs(obj), 1e-9)


def _solve_stage(
    model: _Model,
    params: SolverParams,
    time_limit: float,
    hint: np.ndarray | None,
    node_limit: int | None = None,
    witness: np.ndarray | None = None,
) -> tuple[str, np.ndarray | None, float, float, float, int]:
    """One MIP solve, stopped at time_limit seconds or (SCIP only) after node_limit
    branch-and-bound nodes. Returns (status, values or None, objective, bound, seconds,
    simplex iterations).

    "infeasible" only when proven: a solver claim that a known feasible point (witness,
    else hint) contradicts, or that came when its time limit ran out, is "not_solved" (CBC
    stopped by its limit in preprocessing reports the model infeasible: measured on a
    600-household maximin stage, 1.4 s limit)."""
    start = time.perf_counter()
    solver = pywraplp.Solver.CreateSolver(BACKENDS[params.backend])
    if solver is None:
        raise RuntimeError(f"OR-Tools backend {params.backend} is not available")
    proto = model.proto
    del proto.solution_hint.var_index[:]
    del proto.solution_hint.var_value[:]
    # HiGHS through pywraplp 9.15 crashes on solution hints: never pass one to it.
    if hint is not None and params.backend != "highs":
        proto.solution_hint.var_index.extend(range(hint.size))
        proto.solution_hint.var_value.extend(hint.tolist())
    error = solver.LoadModelFromProto(proto)
    if error:
        raise RuntimeError(f"model rejected by OR-Tools: {error}")
    solver.SuppressOutput()
    solver.SetNumThreads(params.threads)
    if params.backend == "scip":
        nodes = f"limits/nodes = {node_limit}\n" if node_limit is not None else ""
        solver.SetSolverSpecificParametersAsString(f"randomization/randomseedshift = {params.seed}\n{nodes}")
    elif params.backend == "cp_sat":
        solver.SetSolverSpecificParametersAsString(f"random_seed:{params.seed}")
    # cbc and highs take no seed through pywraplp; their defaults are fixed seeds.
    solver.SetTimeLimit(max(1, int(time_limit * 1000)))
    mp = pywraplp.MPSolverParameters()
    mp.SetDoubleParam(mp.RELATIVE_MIP_GAP, params.relative_gap)
    code = solver.Solve(mp)
    status = _STATUS.get(code, "unknown")
    if status == "infeasible":
        witness = hint if witness is None else witness
        cut = time.perf_counter() - start >= time_limit
        if cut or (witness is not None and _satisfies(proto, witness)):
            status = "not_solved"
    values: np.ndarray | None = None
    obj = float("nan")
    bound = float("nan")
    if status in ("optimal", "feasible"):
        response = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(response)
        values = np.asarray(response.variable_value, dtype=np.float64)
        obj = float(solver.Objective().Value())
        bound = float(solver.Objective().BestBound())
        # Backends report +-1e20..1e30 for "no bound yet": say so honestly.
        if not np.isfinite(bound) or abs(bound) >= NO_BOUND:
            bound = float("inf")
    return status, values, obj, bound, time.perf_counter() - start, int(solver.iterations())


def _satisfies(proto: linear_solver_pb2.MPModelProto, values: np.ndarray) -> bool:
    """True when values (one per variable) keep every bound, integrality and row of proto,
    up to a relative 1e-6."""
    if values.size != len(proto.variable):
        return False
    for v, val in zip(proto.variable, values.tolist(), strict=True):
        if not v.lower_bound - 1e-6 <= val <= v.upper_bound + 1e-6:
            return False
        if v.is_integer and abs(val - round(val)) > 1e-6:
            return False
    for ct in proto.constraint:
        activity = float(values[np.asarray(ct.var_index, dtype=np.int64)] @ np.asarray(ct.coefficient))
        slack = 1e-6 * max(1.0, abs(activity))
        if not ct.lower_bound - slack <= activity <= ct.upper_bound + slack:
            return False
    return True


def _overall(statuses: list[str]) -> str:
    """optimal if every stage is, else feasible (callers handle no-solution cases)."""
    if all(s == "optimal" for s in statuses):
        return "optimal"
    return "feasible"


def most_units_placed(problem: AssignmentProblem) -> int:
    """A bound on the units placed together, from the capacities summed over all places: per
    resource, the units not asking for it plus as many of those asking as fit, smallest first;
    the least over the resources."""
    most = problem.n_units
    for r in range(problem.capacity.shape[1]):
        use = problem.usage[:, r]
        asking = np.sort(use[use > 0])
        fitting = int(np.searchsorted(np.cumsum(asking), problem.capacity[:, r].sum(), side="right"))
        most = min(most, int((use <= 0).sum()) + fitting)
    return most


def uses_large_method(problem: AssignmentProblem, params: SolverParams) -> bool:
    """Whether solve() takes the large-round method (large_scale.solve_large, which ignores the backend and
    budgets counted work) rather than one exact MIP per stage with params.backend: lexicographic rounds above
    max_model_pairs candidate pairs, max_model_units units placed together, or max_exact_pairs pairs of those
    units (their mean count of pairs each)."""
    if params.objective != "lexicographic":
        return False
    # Candidate pairs (before dropping unusable ones) decide the method: cheap to count.
    if problem.pair_unit.size > params.max_model_pairs:
        return True
    placeable = most_units_placed(problem)
    # Units that cannot all be placed do not count (a tight round CBC proves quickly, see max_model_units).
    exact_pairs = placeable * problem.pair_unit.size / max(problem.n_units, 1)
    return placeable > params.max_model_units or exact_pairs > params.max_exact_pairs


def solve(problem: AssignmentProblem, params: SolverParams | None = None) -> AssignmentResult:
    """Solve the assignment lexicographically (see module docstring).

    Up to params.max_model_pairs usable pairs (lexicographic: and params.max_model_units
    units placed at most, most_units_placed, with params.max_exact_pairs pairs between them; uses_large_method):
    one exact MIP per stage, units in data_order. Above it: large_scale.solve_large (lexicographic;
    bounds over all pairs) or, for maximin, the exact MIP on a reduced pair set
    (result.bound_scope == "reduced_pairs").
    Always returns a result: on infeasibility or when no solution was found in time,
    place_of_unit is all -1 and status says why.
    """
    params = params or SolverParams()
    too_large = problem.pair_unit.size > params.max_model_pairs
    if uses_large_method(problem, params):
        from rematch_pipeline.engine.large_scale import solve_large  # avoids an import cycle

        return _in_data_order(solve_large, problem, params)
    if too_large:
        from rematch_pipeline.engine.large_scale import reduced_problem

        result = _in_data_order(_solve_direct, reduced_problem(problem, params.max_model_pairs), params)
        return dataclasses.replace(result, bound_scope="reduced_pairs")
    return _in_data_order(_solve_direct, problem, params)


def data_order(problem: AssignmentProblem) -> np.ndarray:
    """The units (indices) in the order of a digest of each unit's own data: its usage, its
    households and its candidate pairs (place id, score, usage at the place), with the unit
    id only as the last tie-break (units with identical data). Unit ids are pseudonyms,
    ordered differently by every data home's secret, and the solvers follow the order of
    the units (CBC's search, tie-breaks, the large path's passes): in this order two
    installs with the same questionnaires build the same model (docs/decisions.md, "Exact
    rounds in the data's order"). Vectorised: 0.1 s per million pairs."""
    place_code = np.array(
        [int.from_bytes(hashlib.blake2b(p.encode(), digest_size=8).digest(), "little") for p in problem.place_ids], dtype=np.uint64
    )
    pair = _mix(place_code[problem.pair_place] ^ _mix(np.round(problem.pair_score * 1e6).astype(np.int64).view(np.uint64)))
    if problem.pair_usage is not None:
        for r in range(problem.pair_usage.shape[1]):
            pair = _mix(pair ^ _mix(problem.pair_usage[:, r].astype(np.uint64) + np.uint64(r + 1)))
    # A unit's pairs are a set: their codes are summed (mod 2**64, in exact 32-bit halves).
    low = np.bincount(problem.pair_unit, weights=(pair & np.uint64(0xFFFFFFFF)).astype(np.float64), minlength=problem.n_units)
    high = np.bincount(problem.pair_unit, weights=(pair >> np.uint64(32)).astype(np.float64), minlength=problem.n_units)
    unit = _mix(low.astype(np.uint64) + (high.astype(np.uint64) << np.uint64(32)))
    for r in range(problem.usage.shape[1]):
        unit = _mix(unit ^ _mix(problem.usage[:, r].astype(np.uint64) + np.uint64(r + 1)))
    unit = _mix(unit ^ problem.unit_households.astype(np.uint64))
    ids = np.argsort(np.argsort(np.array(problem.unit_ids, dtype=object), kind="stable"), kind="stable")
    return np.lexsort((ids, unit)).astype(np.int64)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on an array of uint64 (wrapping arithmetic): a 64-bit hash."""
    z = np.asarray(z, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _reordered(problem: AssignmentProblem, order: np.ndarray) -> AssignmentProblem:
    """The same problem with its units in order (unit k of the result is unit order[k])."""
    rank = np.empty(problem.n_units, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    return dataclasses.replace(
        problem,
        unit_ids=[problem.unit_ids[u] for u in order.tolist()],
        usage=problem.usage[order],
        pair_unit=rank[problem.pair_unit],
        locked=[(int(rank[u]), j) for u, j in problem.locked],
        unit_households=None if problem.unit_households is None else problem.unit_households[order],
    )


def _in_data_order(
    solver: Callable[[AssignmentProblem, SolverParams], AssignmentResult], problem: AssignmentProblem, params: SolverParams
) -> AssignmentResult:
    """solver on the problem's units in data_order, the answer given back per unit of problem."""
    order = data_order(problem)
    result = solver(_reordered(problem, order), params)
    place_of = np.empty_like(result.place_of_unit)
    place_of[order] = result.place_of_unit
    return dataclasses.replace(result, place_of_unit=place_of)


class _Budget:
    """The wall-clock seconds of the exact path's stages: all of them, model building
    included, within params.time_limit_seconds (see MIN_STAGE_SECONDS)."""

    def __init__(self, start: float, params: SolverParams) -> None:
        self.params = params
        self.deadline = start + params.time_limit_seconds
        self.reserve = min(STAGE_RESERVE_SECONDS, STAGE_RESERVE_SHARE * params.time_limit_seconds)
        # CBC's clock is the CPU time of its thread (one thread: the caller's).
        self.cpu_clock = params.backend == "cbc" and params.threads == 1
        self.cpu_share = 1.0
        self._wall = 0.0
        self._cpu = 0.0

    def seconds(
        self, share: float, *, first: bool = False, last: bool = False, until: float | None = None
    ) -> float | None:
        """The solver's limit for the next stage: share of the wall-clock time left (the
        last stage: less the reserve; until: before that perf_counter time, if earlier), in
        the solver's own clock; None when too little is left to begin a stage (the first
        stage always runs: without it there is no answer)."""
        end = self.deadline if until is None else min(self.deadline, until)
        left = end - time.perf_counter() - (self.reserve if last else 0.0)
        if left < MIN_STAGE_SECONDS and not first:
            return None
        seconds = max(0.05, left * share)
        return seconds * self.cpu_share if self.cpu_clock else seconds

    def solve(
        self,
        model: _Model,
        share: float,
        hint: np.ndarray | None,
        *,
        first: bool = False,
        last: bool = False,
        witness: np.ndarray | None = None,
        until: float | None = None,
        params: SolverParams | None = None,
    ) -> tuple[str, np.ndarray | None, float, float, float]:
        """One stage within the budget (params: the budget's, unless given, for a stage's
        own gap): (status, values or None, objective, bound, wall seconds); a stage without
        time to begin is "not_solved" after 0 s."""
        limit = self.seconds(share, first=first, last=last, until=until)
        if limit is None:
            return "not_solved", None, float("nan"), float("nan"), 0.0
        wall, cpu = time.perf_counter(), time.thread_time()
        status, values, obj, bound, secs, _ = _solve_stage(model, params or self.params, limit, hint, witness=witness)
        self._wall += time.perf_counter() - wall
        self._cpu += time.thread_time() - cpu
        if self._wall > 0.5:  # shorter stages say little about the machine's load
            self.cpu_share = min(1.0, max(MIN_CPU_SHARE, self._cpu / self._wall))
        return status, values, obj, bound, secs


def _solve_direct(
    problem: AssignmentProblem, params: SolverParams, start_from: np.ndarray | None = None
) -> AssignmentResult:
    """One MIP over all usable pairs, stage by stage, all stages within the time limit
    (_Budget). start_from (a place per unit, -1 unplaced) is a feasible assignment handed
    to the solver as its first solution."""
    start = time.perf_counter()
    maximin = params.objective == "maximin"
    # Maximin too is solved on the persons model: its lowest score by thresholds on the pairs
    # (_maximin_stage), not by a variable T and big-M rows, which CBC could not solve at 600
    # households (docs/decisions.md, "Maximin by thresholds").
    model = _build_model(problem)
    n_vars = len(model.proto.variable)
    budget = _Budget(start, params)
    stages: list[StageReport] = []

    # Stage 1: persons placed. Hint: the given assignment, else locked pairs only
    # (feasible whenever the locks are).
    hint = np.zeros(n_vars)
    hint[model.locked_vars] = 1.0
    if start_from is not None:
        hint = _hint(model, problem, start_from)
    use_hint = start_from is not None or not model.locked_vars.size
    # Locked pairs only, minimum-intake indicators set: disproves a solver's "infeasible"
    # whenever the locks alone are feasible.
    locks_only = np.full(problem.n_units, -1, dtype=np.int64)
    for u, j in problem.locked:
        locks_only[u] = j
    witness = _hint(model, problem, locks_only) if start_from is None else hint
    _set_objective(model, model.persons)
    # Persons placed never exceed the persons of units with a usable pair.
    trivial = float(_max_persons_per_unit(model).sum())
    # Persons rank first and come whole: the persons stage stops only at a proven gap below
    # one person, whatever relative_gap allows the score stage (a 0.3 % gap let the demo
    # round's persons stage stop at 935 of 937 persons).
    persons_params = dataclasses.replace(params, relative_gap=min(params.relative_gap, 0.99 / max(trivial, 1.0)))
    status, values, obj, bound, secs = budget.solve(
        model, 0.4 if not maximin else 0.3, hint if use_hint else None, first=True, witness=witness, params=persons_params
    )
    stages.append(StageReport("persons", status, obj, bound, _gap(obj, bound), secs))
    if values is None:
        return _empty_result(problem, params, status, stages, start)
    persons_best = round(obj)
    persons_bound = float(np.floor(min(bound, trivial) + 1e-6))
    stages[-1] = StageReport(
        "persons", status, obj, persons_bound, _gap(obj, persons_bound), secs
    )
    # Keep stage 1: persons >= its value (integer, so no tolerance needed).
    model.proto.constraint[model.persons_row].lower_bound = float(persons_best)
    current = values

    if maximin:
        report, current = _maximin_stage(model, problem, budget, current, persons_best, 0.5, stages[0].wall_seconds)
        stages.append(report)
        # Keep the lowest score reached: pairs of households below it are dropped.
        lowest = _min_score(model, current)
        _drop_below(model, lowest)
        if most_units_placed(problem) > params.max_model_units:
            # CBC's score stage finds no answer at this many units (1,000 x 40: none in 34 s); the large
            # path's score stage on the pairs the lowest score leaves does (docs/decisions.md, "Maximin's score stage").
            return _maximin_score_on_large_path(problem, params, model, budget, current, lowest, stages, persons_bound, start)

    coefs = model.score + (_tie_break(model) if params.tie_break else 0.0)
    _set_objective(model, coefs)
    status, values, obj, bound, secs = budget.solve(model, 1.0, current, last=True)
    # The gap is the solver's own (tie-break included); the reported objective is the
    # pure total score, which the bound (on score + tie-break) also bounds from above.
    gap = _gap(obj, bound)
    if values is not None:
        current = values
    else:
        bound, gap = float("nan"), float("inf")
    x = np.round(current[: model.n_x]) > 0.5
    if status != "optimal":
        x = _exchange_passes(problem, model, x, budget.deadline)
        if math.isfinite(bound):
            gap = _gap(float(coefs[x].sum()), bound)
    obj = float(model.score[x].sum())
    stages.append(StageReport("score", status, obj, bound, gap, secs))

    finished = _finished(stages)  # the exact path's answer and bound repeat when every stage finished
    return _result_of(problem, params, _place_of(model, problem.n_units, x), stages, persons_bound, start, f"ortools-{params.backend}", finished)


def _maximin_score_on_large_path(
    problem: AssignmentProblem,
    params: SolverParams,
    model: _Model,
    budget: _Budget,
    current: np.ndarray,
    lowest: float,
    stages: list[StageReport],
    persons_bound: float,
    start: float,
) -> AssignmentResult:
    """Maximin's score stage of a round above params.max_model_units, where CBC's finds no answer: the large
    path's lexicographic solve (large_scale.solve_large) on the pairs whose per-household score is at least
    the lowest score reached (locked pairs kept), in the time left. Its answer is kept when it places more
    persons than the maximin stage's answer after exchanges, or as many with a higher score (it cannot fall
    below the lowest score: the pairs below are gone); else that answer is, with the large path's bound.
    Either bound holds for those pairs and that many persons, as the exact path's score stage's does."""
    from rematch_pipeline.engine.large_scale import SOLVER_LABEL, solve_large  # avoids an import cycle

    fallback = _exchange_passes(problem, model, np.round(current[: model.n_x]) > 0.5, budget.deadline)
    fallback_score = float(model.score[fallback].sum())
    persons_kept = float(model.persons[fallback].sum())
    households = np.maximum(problem.unit_households, 1)[problem.pair_unit] if problem.unit_households is not None else 1
    sub = problem.with_pairs(problem.pair_score / households >= lowest - KEEP_TOLERANCE)
    left = budget.deadline - time.perf_counter() - budget.reserve
    large = None
    if left >= MIN_STAGE_SECONDS:
        # The round's limit holds on the wall clock: the wall clock stops the large path at what is left
        # (flagged not reproducible when it does), its counted budgets get a share of that as large rounds do.
        sub_params = dataclasses.replace(
            params, time_limit_seconds=left / WALL_LIMIT_FACTOR, wall_limit_seconds=left, objective="lexicographic"
        )
        large = solve_large(sub, sub_params, wall_setting="time_limit_seconds")  # its wall limit is what the round's limit left
    if large is not None and (large.persons_placed, large.total_score) > (persons_kept, fallback_score + KEEP_TOLERANCE):
        place_of, score_stage = large.place_of_unit, large.stages[-1]
        score_stage = StageReport("score", score_stage.status, large.total_score, score_stage.best_bound, score_stage.gap, score_stage.wall_seconds)
        solver, reproducible = f"ortools-{params.backend}+{SOLVER_LABEL.removeprefix('ortools-')}", large.reproducible and _finished(stages)
    else:
        place_of = _place_of(model, problem.n_units, fallback)
        seconds = time.perf_counter() - start - sum(s.wall_seconds for s in stages)
        if large is None:  # no time left for it: the exchanges alone weighed the scores, with no bound
            score_stage = StageReport("score", "not_solved", fallback_score, float("nan"), float("inf"), seconds)
        else:
            # The large path's bound is for at least its own persons on the same pairs: no fewer than the
            # answer kept places, so it bounds that answer's score too.
            bound = large.stages[-1].best_bound
            score_stage = StageReport("score", "feasible", fallback_score, bound, _gap(fallback_score, bound), seconds)
        solver, reproducible = f"ortools-{params.backend}", False
    # The large path's note (a wall-clock cut, naming time_limit_seconds) holds for this answer when both agree on
    # whether a repeat gives it: not so for a cut only of its bound's refinement once this answer is unreproducible.
    notes = large.notes if large is not None and large.reproducible == reproducible else ()
    result = _result_of(problem, params, place_of, [*stages, score_stage], persons_bound, start, solver, reproducible)
    return dataclasses.replace(result, notes=notes)


def _result_of(
    problem: AssignmentProblem,
    params: SolverParams,
    place_of: np.ndarray,
    stages: list[StageReport],
    persons_bound: float,
    start: float,
    solver: str,
    reproducible: bool,
) -> AssignmentResult:
    """The answer place_of with its stages: persons, total score and (maximin) the lowest per-household
    score are read from its pairs; status, objective, bound and gap are the last stage's."""
    at = PairLookup.of(problem).positions(problem, place_of)
    at = at[at >= 0]
    scores = problem.pair_score[at]
    min_score = None
    if params.objective == "maximin" and at.size:
        households = np.maximum(problem.unit_households, 1)[problem.pair_unit[at]] if problem.unit_households is not None else 1
        min_score = float((scores / households).min())
    final = stages[-1]
    return AssignmentResult(
        place_of_unit=place_of,
        status=_overall([s.status for s in stages]),
        persons_placed=int(problem.usage_of_pairs(at, problem.persons_index).sum()),
        total_score=float(np.round(scores.sum(), 6)),
        objective_value=final.objective_value,
        best_bound=final.best_bound,
        gap=final.gap,
        persons_bound=persons_bound,
        min_unit_score=min_score,
        wall_seconds=time.perf_counter() - start,
        solver=solver,
        params=params.as_dict(),
        stages=tuple(stages),
        reproducible=reproducible,
        bound_reproducible=reproducible,
    )


def _exchange_passes(problem: AssignmentProblem, model: _Model, x: np.ndarray, deadline: float) -> np.ndarray:
    """The answer x (chosen model pairs) improved by exchanges within usage classes
    (exchange.py) on the pairs the model still allows, pass after pass until one moves
    nobody, MOST_EXCHANGE_PASSES, or the time left (in counted work, so a repeat of the
    same answer gets the same exchanges). Persons never fall; capacities, minimum intakes
    and locks hold; the score only rises."""
    allowed = np.array([v.upper_bound > 0.5 for v in model.proto.variable[: model.n_x]], dtype=bool)
    keys = model.unit * max(problem.n_places, 1) + model.place
    positions = np.flatnonzero(allowed)
    positions = positions[np.argsort(keys[positions], kind="stable")]
    place_of = _place_of(model, problem.n_units, x)
    locked = np.zeros(problem.n_units, dtype=bool)
    locked[[u for u, _ in problem.locked]] = True
    budget = max(0.0, deadline - time.perf_counter())
    for _ in range(MOST_EXCHANGE_PASSES):
        done = exchange_within_classes(
            problem.usage, problem.capacity, problem.min_intake, problem.persons_index, keys[positions],
            model.score[positions], place_of, locked, EXCHANGE_PERSON_WEIGHT, reference_seconds, budget,
        )
        budget -= reference_seconds(done.entries, done.solved)
        if done.moved == 0 or done.gain <= 0:
            break
        place_of = done.place_of
    return place_of[model.unit] == model.place


def _drop_below(model: _Model, threshold: float) -> np.ndarray:
    """Fix to 0 the pairs whose per-household score is below threshold (all others free;
    locked pairs keep their lower bound 1). Returns the upper bounds of all variables."""
    below = model.household_score < threshold - KEEP_TOLERANCE
    below[model.locked_vars] = False  # fixed to 1: an upper bound of 0 would make the model invalid
    upper = np.ones(len(model.proto.variable))
    upper[: model.n_x][below] = 0.0
    for v, u in zip(model.proto.variable, upper.tolist(), strict=True):
        v.upper_bound = u
    return upper


def _maximin_stage(
    model: _Model,
    problem: AssignmentProblem,
    budget: _Budget,
    current: np.ndarray,
    persons_best: int,
    share: float,
    persons_seconds: float,
) -> tuple[StageReport, np.ndarray]:
    """The highest threshold t such that persons_best persons can be placed with every
    placed unit's per-household score >= t, over the distinct scores on the persons stage's
    own model (CBC could not solve one with a threshold variable and big-M rows at 600
    households) with the pairs below t fixed to 0.

    First the LP relaxation alone, by bisection: a t whose LP (GLOP, solved again from its
    last basis, a fraction of a MIP's time) places fewer persons is proven out of reach, and
    so is every higher one. Then MIPs maximising the persons placed (gap 0; hinted with the
    last answer less its units below t), which reach t when they place persons_best and prove
    it out of reach when their bound is below: the first at the highest t the LP left open
    (on all four measured rounds the optimum itself), then down by doubling score gaps
    (GALLOP_POINTS) until one reaches, then bisection. A probe the time limit cuts counts as
    out of reach for the answer, not for the bound. share of the time left goes to the stage;
    persons_seconds (what the persons stage took) sets a probe's least time. Returns the stage
    report (value: lowest score reached; bound: highest score not proven out of reach) and the
    assignment."""
    start = time.perf_counter()
    stage_end = start + max(0.0, budget.deadline - start) * share
    reached = _min_score(model, current)
    if persons_best <= 0:  # nothing placed: no household below any threshold
        return StageReport("min_score", "optimal", reached, reached, 0.0, 0.0), current
    levels = np.unique(model.household_score)
    levels = levels[levels > reached + KEEP_TOLERANCE]
    if model.locked_vars.size:  # a locked unit is placed at its pair's score: no threshold above it is reachable
        levels = levels[levels <= model.household_score[model.locked_vars].min() + KEEP_TOLERANCE]
    lo, hi, proven = -1, levels.size, levels.size  # levels[proven] and above: proven out of reach
    persons_row = model.proto.constraint[model.persons_row]
    persons_row.lower_bound = -np.inf  # the probes' persons, proven short or not, decide
    _set_objective(model, model.persons)

    # The LP's open range: lo < k < hi. The persons LP falls with t, so one bisection finds
    # where it drops below persons_best.
    lp_lo = lo
    relaxation = LpRelaxation(model.proto) if hi - lp_lo > 1 else None
    while relaxation is not None and hi - lp_lo > 1:
        mid = (lp_lo + hi) // 2
        upper = _drop_below(model, float(levels[mid]))
        left = stage_end - time.perf_counter()
        value = relaxation.value(upper, left / 4) if left >= MIN_STAGE_SECONDS else None
        if value is None:
            break  # cut: the MIPs decide the rest
        if np.floor(value + KEEP_TOLERANCE) < persons_best:
            hi = proven = mid
        else:
            lp_lo = mid

    exact = dataclasses.replace(budget.params, relative_gap=0.0)  # a bound just above the target decides nothing
    # Down from the top, by score gaps doubling from GALLOP_POINTS, until a probe reaches its
    # threshold; bisection after that.
    top = float(levels[hi - 1]) if hi > 0 else reached
    below_top, descending = 0.0, True
    while hi - lo > 1:
        if descending:
            mid = int(np.searchsorted(levels, top - below_top + KEEP_TOLERANCE, side="right")) - 1
            mid = min(hi - 1, max(lo + 1, mid))
            below_top = 2 * below_top + GALLOP_POINTS
        else:
            mid = (lo + hi) // 2
        # A MIP gets 1/steps of what is left, steps being the bisection steps to go but at
        # most 3, and never less than PROBE_PERSONS_FACTOR times what the persons stage
        # took: a probe is that stage's MIP on fewer pairs, and one cut before it can find
        # persons_best decides nothing.
        steps = min(3, max(1, int(np.ceil(np.log2(hi - lo)))))
        left = stage_end - time.perf_counter()
        probe_share = min(1.0, max(1.0 / steps, PROBE_PERSONS_FACTOR * persons_seconds / max(left, 1e-9)))
        threshold = float(levels[mid])
        _drop_below(model, threshold)
        keep = (np.round(current[: model.n_x]) > 0.5) & (model.household_score >= threshold - KEEP_TOLERANCE)
        place_of = _place_of(model, problem.n_units, keep)
        status, values, obj, bound, secs = budget.solve(
            model, probe_share, _hint(model, problem, place_of), until=stage_end, params=exact
        )
        if values is not None and obj >= persons_best - KEEP_TOLERANCE:
            current, descending = values, False
            lo = int(np.searchsorted(levels, _min_score(model, current) + KEEP_TOLERANCE)) - 1
        elif status == "infeasible" or (values is not None and np.floor(bound + KEEP_TOLERANCE) < persons_best):
            hi = proven = mid
        elif secs == 0.0:
            break  # no time left to begin a probe
        else:
            hi = mid  # undecided: not reached, not proven out of reach either
    _drop_below(model, -np.inf)
    persons_row.lower_bound = float(persons_best)
    reached = _min_score(model, current)
    bound = max(float(levels[proven - 1]) if proven > 0 else reached, reached)
    status = "optimal" if bound <= reached + KEEP_TOLERANCE else "feasible"
    secs = time.perf_counter() - start
    return StageReport("min_score", status, reached, bound, _gap(reached, bound), secs), current


def _finished(stages: list[StageReport]) -> bool:
    """Every stage proved its answer within the gap: a stage stopped by the wall clock
    returns what the solver had at that moment, which a repeat may not."""
    return all(s.status == "optimal" for s in stages)


def _place_of(model: _Model, n_units: int, chosen: np.ndarray) -> np.ndarray:
    """The assignment (a place per unit, -1 unplaced) of the model's chosen pair variables
    (a mask over its first n_x); _hint is the way back."""
    place_of = np.full(n_units, -1, dtype=np.int64)
    place_of[model.unit[chosen]] = model.place[chosen]
    return place_of


def _hint(model: _Model, problem: AssignmentProblem, place_of_unit: np.ndarray) -> np.ndarray:
    """Variable values of an assignment (a place per unit, -1 unplaced) as a solver hint."""
    hint = np.zeros(len(model.proto.variable))
    hint[: model.n_x] = place_of_unit[model.unit] == model.place
    persons = np.zeros(problem.n_places)
    np.add.at(persons, model.place, model.persons * hint[: model.n_x])
    hint[model.n_x : model.n_x + model.min_places.size] = persons[model.min_places] > 0
    return hint


def _max_persons_per_unit(model: _Model) -> np.ndarray:
    """Most persons each unit with a usable pair can bring (its usage, or the largest
    per-pair usage)."""
    if model.unit.size == 0:
        return np.zeros(0)
    best = np.zeros(int(model.unit.max()) + 1)
    np.maximum.at(best, model.unit, model.persons)
    return best


def _min_score(model: _Model, values: np.ndarray) -> float:
    x = np.round(values[: model.n_x]) > 0.5
    return float(model.household_score[x].min()) if x.any() else SCORE_CEILING


def _empty_result(
    problem: AssignmentProblem,
    params: SolverParams,
    status: str,
    stages: list[StageReport],
    start: float,
    reproducible: bool | None = None,
    solver: str | None = None,
) -> AssignmentResult:
    """No assignment. reproducible (of the bound too) defaults to the exact path's rule:
    every stage finished; solver to the exact path's label."""
    if reproducible is None:
        reproducible = _finished(stages)
    return AssignmentResult(
        place_of_unit=np.full(problem.n_units, -1, dtype=np.int64),
        status=status,
        persons_placed=0,
        total_score=0.0,
        objective_value=float("nan"),
        best_bound=float("nan"),
        gap=float("inf"),
        persons_bound=float("nan"),
        min_unit_score=None,
        wall_seconds=time.perf_counter() - start,
        solver=solver or f"ortools-{params.backend}",
        params=params.as_dict(),
        stages=tuple(stages),
        reproducible=reproducible,
        bound_reproducible=reproducible,
    )


# --------------------------------------------------------------------------- output


def household_assignment(
    problem: AssignmentProblem,
    result: AssignmentResult,
    households: pl.DataFrame,
    scored_pairs: pl.DataFrame,
) -> pl.DataFrame:
    """One row per household: household_pseudonym, link_group, municipality_id (null if
    unplaced) and, for placed households, the score columns of its pair."""
    units = pl.DataFrame(
        {
            "link_group": pl.Series(problem.unit_ids, dtype=pl.String),
            "municipality_id": pl.Series(
                [problem.place_ids[j] if j >= 0 else None for j in result.place_of_unit.tolist()],
                dtype=pl.String,
            ),
        }
    )
    out = (
        households.select("household_pseudonym", "link_group")
        .join(units, on="link_group", how="left")
        .sort("household_pseudonym")
    )
    score_cols = [c for c in scored_pairs.columns if c == "score" or c.startswith("score_")]
    return out.join(
        scored_pairs.select("household_pseudonym", "municipality_id", *score_cols),
        on=["household_pseudonym", "municipality_id"],
        how="left",
        maintain_order="left",
    )
