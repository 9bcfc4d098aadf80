"""The assignment problem as plain arrays (units, places, resources, candidate pairs), the solver's
parameters and results, and the check of an answer against every hard rule. No solver here: see
model.py (the MIP), assignment.py (solve) and the large_scale package."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from rematch_pipeline.engine._common import (
    RESOURCE_COLUMNS,
    RESOURCES,
    int_column,
    key_positions,
    require_columns,
    require_unique,
)

Backend = Literal["scip", "cbc", "highs", "cp_sat"]
Objective = Literal["lexicographic", "maximin"]

BACKENDS: dict[str, str] = {"scip": "SCIP", "cbc": "CBC", "highs": "HIGHS", "cp_sat": "CP_SAT"}
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


class SolveProgress:
    """How far a running large-round solve is, for the caller's lines while it waits (read from another thread).

    A reproducible large solve budgets counted work, not wall-clock seconds: on a loaded machine its wall clock
    passes the time limit long before its work does, and a line saying only the wall clock (`5 min 30 s so far
    (time limit 176 s of counted work …)`) cannot tell a person how much is left. solve_large lets this object
    read its clock; reading it changes nothing in the solve. None until such a solve has started (and for the
    exact path and wall-clock budgets, where the wall clock is the limit's own measure)."""

    def __init__(self) -> None:
        self._counted: Callable[[], float] | None = None

    def follow(self, counted: Callable[[], float]) -> None:
        """Called by the solve: where its counted work can be read."""
        self._counted = counted

    def counted_seconds(self) -> float | None:
        """Seconds of counted work the solve has done so far, or None (see the class)."""
        return self._counted() if self._counted is not None else None


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
