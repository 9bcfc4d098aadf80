"""A matching round: pool and capacities of an intake period → candidates and scores → proposals."""


import dataclasses
import enum
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial

import dagster as dg
import duckdb
import numpy as np
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field, field_validator, model_validator

from rematch_pipeline.ags_reference import koenigstein_shares, reference_population, unknown_places
from rematch_pipeline.assets.failures import reason_first, refused
from rematch_pipeline.coordinator_pairs import FORBIDDEN, CoordinatorPairs, exclusions_with_forbidden
from rematch_pipeline.engine.assignment import solve, uses_large_method
from rematch_pipeline.engine.compatibility import candidate_pairs, exclusion_tables
from rematch_pipeline.engine.diagnosis import NO_CANDIDATE, capacity_offers, unplaced_reasons
from rematch_pipeline.engine.distribution_key import distribution_key_baseline
from rematch_pipeline.engine.mechanisms import StabilityCounter, compare_with_deferred_acceptance
from rematch_pipeline.engine.problem import (
    AssignmentProblem,
    SolveProgress,
    SolverParams,
    build_problem,
    check_assignment,
    time_limit_for,
)
from rematch_pipeline.engine.scoring import ScoreWeights, score_pairs
from rematch_pipeline.features import CAPACITY_COLUMNS, RESOURCES
from rematch_pipeline.formats.writers import write_csv
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import IdentityStore
from rematch_pipeline.resources.warehouse import table_exists, warehouse_connection
from rematch_pipeline.schemas.models import PERIOD_PATTERN, ROUND_ID_PATTERN as ROUND_ID_FORMAT
from rematch_pipeline.wording import counted, elapsed, gap_words, solved_words
from rematch_pipeline.schemas.parsing import utc_now

rounds_partitions = dg.DynamicPartitionsDefinition(name="rounds")

# Rows of a per-round table scored and copied for DuckDB at a time. A national round has 15 M candidate
# pairs: scored whole with their criteria they took 1.5 GiB, and more again while DuckDB copied them.
SLICE_ROWS = 1_000_000

OBJECTIVES = ("lexicographic", "maximin")
BACKENDS = ("scip", "cbc", "highs", "cp_sat")
# The Launchpad offers these as choices (a config Enum, as a decision's reason): Dagster refuses anything else before
# a run exists, naming the field (runs.config_error_lines), where free text was checked only once the round started.
# StrEnum: each member is its text, so the config recorded in `rounds` and solver.json's params stay as they were.
Objective = enum.StrEnum("Objective", {o: o for o in OBJECTIVES})
Backend = enum.StrEnum("Backend", {b: b for b in BACKENDS})
# A round id names a folder (rounds/<round_id>/) and a decisions file: no path separators, no
# leading dot, nothing a shell or Excel mangles. The UI accepts any partition key, so it is checked here.
# What a round's solve and report leave, per round: replaced whole when the round id runs again.
SOLVE_TABLES = ("proposals", "round_outcomes", "round_capacity_misses", "solver_runs")
ROUND_OUTPUT_FILES = ("proposals.csv", "solver.json", "report.html", "municipalities.csv", "households.csv")

ROUND_ID_PATTERN = re.compile(ROUND_ID_FORMAT)  # one rule with a decisions file's round_id (schemas.models)
ROUND_ID_RULE = "round id (the partition of `rounds`): 1-64 letters (A-Z, a-z), digits, '.', '_' or '-', starting with a letter or digit"
# Weights are relative (the score divides by their sum), so only ratios matter; the cap keeps
# the sums finite and catches a value typed with its decimal point lost.
MAX_WEIGHT = 1000.0
# A day: a round's limit by its size is at most 600 s and the largest measured round needs about 10 min; a limit
# beyond a day is a typo (milliseconds, a zero too many), and 1e12 was taken and solved "until proven best".
MAX_LIMIT_SECONDS = 86_400.0
# Unplaced reason of a household whose `must` tie no reference list or offer of the round knows.
# A household whose every compatible municipality the coordinator forbade: the forbids, not a hard rule, left it none.
ALL_FORBIDDEN_REASON = "the coordinator forbade every one the hard rules left (forbidden_by_coordinator)"
UNKNOWN_TIE_REASON = "the `must` family tie names an unknown place (an AGS neither in the 2020 reference list nor offered in this round)"


def _weight(criterion: str, measures: str) -> str:
    """The Launchpad's description of a score weight."""
    return (
        f"Weight of the score criterion {criterion}: {measures}. Relative to the other weights (2 doubles its say,"
        f" 0 switches it off); a number from 0 to {MAX_WEIGHT:g}, default 1."
    )


class CoordinatorPair(dg.Config):
    """A household and a municipality of the round, named as proposals and report.html name them."""

    household_pseudonym: str = Field(
        description="The household's pseudonym (H- and 20 hex digits) as report.html and households.csv show it; not the household reference of proposals.csv, never a name."
    )
    municipality_id: str = Field(description="AGS of a municipality with an offer in the round's period (5 or 8 digits; quote it in YAML).")


class RoundConfig(dg.Config):
    """Parameters of a matching round, shown with their defaults in the Launchpad."""

    period: str = Field(default="", description="Intake period (YYYY-MM) whose offers are matched; empty = the latest.")
    objective: Objective = Field(default=Objective.lexicographic, description="lexicographic (persons, then score) or maximin (worst-off first).")
    backend: Backend = Field(default=Backend.cbc, description="MIP solver through OR-Tools: cbc (fastest on rounds measured), scip, highs or cp_sat.")
    # 0 (the default the Launchpad scaffolds) or empty: by the round's size. Dagster leaves a field whose default is
    # null out of the scaffolded config, so the field went unseen; 0 stands for "not set" and is held as None.
    time_limit_seconds: float | None = Field(
        default=0,
        validate_default=True,
        description="Limit for the whole round's solve, all its stages together (not each); the best answer found is kept with its gap (reproducible large rounds: in counted work, see wall_limit_seconds). 0 or empty = by the round's size: 20 s per million candidate pairs, at least 60 s (a state round of 10,000 households x 401 districts), at most 600 s (a national round of 50,000: about 300 s). At most 86400 (24 hours).",
    )
    relative_gap: float = Field(default=1e-4, description="Stop when the proven relative gap is below this (0 = prove optimality).")
    reproducible: bool = Field(
        default=True,
        description="Large rounds (above 150,000 candidate pairs, 800 households placed together, linked ones counted once, or 20,000 candidate pairs of those) budget counted work, not wall-clock seconds: a repeat"
        " gives the same proposals (off: uses the whole limit). A smaller round is solved exactly and repeats itself when it finishes"
        " within time_limit_seconds; the run's metadata `reproducible` says whether this one did.",
    )
    wall_limit_seconds: float | None = Field(
        default=0,
        validate_default=True,
        description="Reproducible large rounds: hard wall-clock stop (0 or empty = twice the time limit; a slower machine needs more seconds for the same work). At most 172800 (48 hours).",
    )
    compare_mechanisms: bool = Field(
        default=True,
        description="Also run deferred acceptance on the round and apply the fixed distribution key (today's quota, keeping the locked and forbidden pairs) to the same households, and count the blocking pairs of all three, for the report (at 50,000 households about 25 s on a quiet 2-core machine, up to a minute on a busy one, and about 0.9 GiB more than the built problem after the solve; off skips it).",
    )
    locked_pairs: list[CoordinatorPair] = Field(
        default=[],
        description="Placements the coordinator fixes: the household, with its linked households, is proposed to that municipality whatever its score."
        " A list, one entry per line starting with \"- \" (household_pseudonym and municipality_id), or in one line:"
        ' [{household_pseudonym: "H-…", municipality_id: "<AGS>"}].',
    )
    forbidden_pairs: list[CoordinatorPair] = Field(
        default=[],
        description="Pairs never proposed; forbidding one linked household keeps its whole link group away from that municipality."
        " A list, written as locked_pairs is.",
    )
    place_every_household: bool = Field(
        default=False,
        description="true or false. true: exactly one municipality for every household of the pool, or the round fails saying why and stores nothing (false, the default: the most persons are placed, the rest stay in the pool with a reason).",
    )
    # Each weight multiplies what the household said the criterion matters to it (docs/scoring.md).
    weight_jobs: float = Field(default=1.0, description=_weight("jobs", "members wanting work find their sector in shortage there, times how much the household said it matters"))
    weight_schools_childcare: float = Field(
        default=1.0,
        description=_weight("schools and childcare", "free Kita, primary and secondary school places for the children, times the household's importance"),
    )
    weight_medical_care: float = Field(default=1.0, description=_weight("medical care", "how many kinds of medical care the municipality offers, times the household's importance"))
    weight_community: float = Field(default=1.0, description=_weight("community", "the size of the Ukrainian community there, times the household's importance"))
    weight_big_city: float = Field(default=1.0, description=_weight("big city", "how urban the municipality is, times the household's importance"))
    weight_quiet_rural: float = Field(default=1.0, description=_weight("quiet rural", "how rural the municipality is, times the household's importance"))
    weight_family_nearby: float = Field(
        default=1.0, description=_weight("family nearby", "the family tie's municipality, or near it (the nearer the more, none beyond 200 km), times the household's importance")
    )
    weight_wishes: float = Field(default=1.0, description=_weight("wishes", "the household wished for this municipality (1st wish counts most, then 2nd and 3rd)"))

    @model_validator(mode="before")
    @classmethod
    def _empty_takes_the_default(cls, data: object) -> object:
        """A field left empty in the Launchpad or a --config file (`period:` is null in YAML) takes its default, as the
        descriptions say ("empty = the latest"); Dagster passes the null on, and pydantic refused it with a traceback."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data

    @field_validator("time_limit_seconds", "wall_limit_seconds")
    @classmethod
    def _zero_is_not_set(cls, value: float | None) -> float | None:
        """0 means the limit is not set (by the round's size), as empty does; held as None, as recorded before."""
        return None if value == 0 else value

    def problems(self) -> list[str]:
        """What a person typed wrong, one line per field (field name and rule, never the value); [] if none.

        Checked before the round reads or writes anything, so a refused run leaves the warehouse as it was.
        The engine checks the same limits (SolverParams, ScoreWeights) as a last guard, in its own terms.
        objective and backend are choices of the config schema: Dagster refuses any other before the run exists.
        """
        problems = []
        if self.period and not re.fullmatch(PERIOD_PATTERN, self.period):
            problems.append("period: format: YYYY-MM (e.g. 2026-07), or empty for the latest period with offers")
        at_most = f"at most {MAX_LIMIT_SECONDS:g} (24 hours)"
        if self.time_limit_seconds is not None and not (0 < self.time_limit_seconds <= MAX_LIMIT_SECONDS):  # NaN fails too
            problems.append(f"time_limit_seconds: a number of seconds above 0 (e.g. 60) and {at_most}, or 0 or empty for a limit by the round's size")
        if self.wall_limit_seconds is not None and not (0 < self.wall_limit_seconds <= 2 * MAX_LIMIT_SECONDS):
            problems.append(f"wall_limit_seconds: a number of seconds above 0 and at most {2 * MAX_LIMIT_SECONDS:g} (48 hours), or 0 or empty for twice the time limit")
        if not (math.isfinite(self.relative_gap) and 0 <= self.relative_gap < 1):
            problems.append("relative_gap: a fraction from 0 up to (not including) 1, e.g. 0.0001 for 0.01 %")
        weights = {k: v for k, v in self.model_dump().items() if k.startswith("weight_")}
        for name, value in weights.items():
            if not (math.isfinite(value) and 0 <= value <= MAX_WEIGHT):
                problems.append(f"{name}: a number from 0 to {MAX_WEIGHT:g} (weights are relative: 2 doubles a criterion's say, 0 switches it off)")
        if all(v == 0 for v in weights.values()):
            # Every pair would score 50: the round would ignore what households said matters to them.
            problems.append("weight_*: every weight is 0, so every pair would score the same; set at least one above 0")
        return problems + self.coordinator_pairs().field_problems()

    def coordinator_pairs(self) -> CoordinatorPairs:
        """The locked and forbidden pairs of this round."""
        return CoordinatorPairs(
            locked=tuple((p.household_pseudonym, p.municipality_id) for p in self.locked_pairs),
            forbidden=tuple((p.household_pseudonym, p.municipality_id) for p in self.forbidden_pairs),
        )

    def recorded(self) -> dict:
        """The parameters as the rounds table records them: without the pairs, which round_coordinator_pairs
        holds by household, so that an erasure deletes them with the household's other rows."""
        return self.model_dump(exclude={"locked_pairs", "forbidden_pairs"})

    def weights(self) -> ScoreWeights:
        """The score multipliers by criterion."""
        return ScoreWeights(**{k.removeprefix("weight_"): v for k, v in self.model_dump().items() if k.startswith("weight_")})

    def time_limit(self, n_pairs: int) -> float:
        """The round's time limit: the one given, else by its candidate pairs (engine.time_limit_for)."""
        return self.time_limit_seconds if self.time_limit_seconds is not None else time_limit_for(n_pairs)

    def solver_params(self, n_pairs: int) -> SolverParams:
        """The solver settings of this round of n_pairs candidate pairs."""
        return SolverParams(
            time_limit_seconds=self.time_limit(n_pairs),
            backend=self.backend.value,  # the engine takes plain text (no Dagster or config types)
            objective=self.objective.value,
            relative_gap=self.relative_gap,
            reproducible=self.reproducible,
            wall_limit_seconds=self.wall_limit_seconds,
        )


def finite(value: float | None) -> float | None:
    """JSON has no infinity: an unproven bound or gap is written as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def keep_replaced_proposals(con: duckdb.DuckDBPyConnection, round_id: str, replaced_at: datetime) -> None:
    """Move the round's current proposals into replaced_proposals as a run again replaces them, one row per
    (round, household, municipality): the latest run that proposed the pair (proposed_at, its start) and when that
    run was replaced. A pair proposed by several runs was one row per proposal per run (a national round re-run:
    50,000 rows each time, unchanged parameters included); round_proposals then drops the pairs the new run proposes
    again. So a round id holds at most the pairs its runs ever proposed and its current run does not."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE kept_replaced AS SELECT round_id, household_pseudonym, municipality_id,"
        " arg_max(proposed_at, replaced_at) AS proposed_at, max(replaced_at) AS replaced_at FROM ("
        " SELECT * FROM replaced_proposals WHERE round_id = $round"
        " UNION ALL SELECT p.round_id, p.household_pseudonym, p.municipality_id, r.started_at, $now::TIMESTAMP"
        " FROM proposals p JOIN rounds r USING (round_id) WHERE round_id = $round"
        ") GROUP BY ALL",
        {"round": round_id, "now": replaced_at},
    )
    con.execute("DELETE FROM replaced_proposals WHERE round_id = ?", [round_id])
    con.execute("INSERT INTO replaced_proposals SELECT * FROM kept_replaced ORDER BY ALL")
    con.execute("DROP TABLE kept_replaced")


def store_round_rows(con: duckdb.DuckDBPyConnection, table: str, round_id: str, frames: pl.DataFrame | Iterable[pl.DataFrame]) -> None:
    """Replace one round's rows of a per-round table (created on first use).

    frames: the rows as one frame, or as consecutive slices of it (at least one, all with the same columns),
    stored in order. Either way at most SLICE_ROWS rows are copied for DuckDB at a time.
    """
    if isinstance(frames, pl.DataFrame):
        frames = frames.iter_slices(SLICE_ROWS) if frames.height else [frames]
    replaced = False
    for part in frames:
        for frame in part.iter_slices(SLICE_ROWS) if part.height else [part]:
            frame = frame.with_columns(pl.lit(round_id).alias("round_id")).select("round_id", pl.exclude("round_id"))
            con.register("incoming", frame.to_arrow())
            if not replaced:
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM incoming WHERE false")
                # A table made by an older release gains the columns added since (its earlier rounds hold NULL there).
                present = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
                for column, column_type, *_ in con.execute("DESCRIBE incoming").fetchall():
                    if column not in present:
                        con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {column_type}')
                con.execute(f"DELETE FROM {table} WHERE round_id = ?", [round_id])
                replaced = True
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
            con.unregister("incoming")
    if not replaced:
        raise ValueError(f"{table}: no frame to store (an empty frame says which columns)")


def scored_slices(
    pairs: pl.DataFrame, households: pl.DataFrame, municipalities: pl.DataFrame, weights: ScoreWeights, scores: list[pl.Series]
) -> Iterator[pl.DataFrame]:
    """The candidate pairs with their score, SLICE_ROWS pairs at a time, in the pairs' order (at least one
    slice). Appends each slice's scores to `scores`: the whole scored table of a national round (15 M pairs)
    never exists at once."""
    for lo in range(0, max(pairs.height, 1), SLICE_ROWS):
        part = pairs.slice(lo, SLICE_ROWS)
        # Scores are per pair: the slice's own households give the same values as all of them. Only the total
        # is kept; round_proposals scores the chosen pairs' criteria (nine columns less per pair).
        own = households.join(part.select(pl.col("household_pseudonym").unique()), on="household_pseudonym", how="semi")
        scored = score_pairs(part, own, municipalities, weights, breakdown=False)
        scores.append(scored.get_column("score"))
        yield scored


def load_round_rows(con: duckdb.DuckDBPyConnection, table: str, round_id: str, columns: Sequence[str] = ()) -> pl.DataFrame:
    """One round's rows of a per-round table: the given columns, or all but round_id."""
    select = ", ".join(f'"{c}"' for c in columns) if columns else "* EXCLUDE (round_id)"
    return con.execute(f"SELECT {select} FROM {table} WHERE round_id = ?", [round_id]).pl()


def current_intake_counts(con: duckdb.DuckDBPyConnection, period: str | None = None) -> dict[str, int]:
    """The intake as validation last counted it (intake_counts) and the household questionnaires received:
    the round report's Round details. Warehouse-wide and changing with every ingestion, so a round keeps its
    own copy (round_intake_counts, intake_counts_of_round). With `period`, the rows quarantined are those of
    that intake period and earlier (quarantined_by_period; rows of files no row of which is dated count in
    every period): a later month's broken file or a decisions file of a later round is not this intake's."""
    counts = dict(con.execute("SELECT name, value FROM intake_counts").fetchall()) if table_exists(con, "intake_counts") else {}
    if period is not None and "rows_quarantined" in counts and table_exists(con, "quarantined_by_period"):
        counts["rows_quarantined"] = int(con.execute(
            "SELECT coalesce(sum(rows), 0) FROM quarantined_by_period WHERE period IS NULL OR period <= ?", [period]
        ).fetchone()[0])
    if table_exists(con, "raw_households"):
        counts["households_received"] = con.execute("SELECT count(DISTINCT household_pseudonym) FROM raw_households").fetchone()[0]
    return counts


def households_outside_pool(con: duckdb.DuckDBPyConnection, period: str) -> dict[str, int]:
    """Households of the warehouse that a round of `period` leaves out of its pool by design: those that accepted
    a proposal (of this period or an earlier one) and those submitted in a later period. With them the report's
    intake adds up: August's report counted 518 questionnaires and 202 in the pool, and said nothing of the 311
    households placed by July's accepted proposals."""
    accepted, later = con.execute(
        "SELECT count(*) FILTER (WHERE accepted_municipality_id IS NOT NULL AND submitted_period <= ?),"
        " count(*) FILTER (WHERE submitted_period > ?) FROM household_features",
        [period, period],
    ).fetchone()
    return {"households_accepted": int(accepted), "households_submitted_later": int(later)}


def intake_counts_of_round(con: duckdb.DuckDBPyConnection, round_id: str) -> dict[str, int]:
    """The intake counts as they stood when the round read its pool. A report written again later (an erasure
    re-renders every round that showed the household) showed the counts of that day instead: a July round's
    report counted August's questionnaires, duplicates and quarantined rows. Rounds stored before the copy was
    kept get the current counts, as before."""
    if table_exists(con, "round_intake_counts"):
        kept = con.execute("SELECT name, value FROM round_intake_counts WHERE round_id = ? ORDER BY position", [round_id]).fetchall()
        if kept:
            return dict(kept)
    period = con.execute("SELECT period FROM rounds WHERE round_id = ?", [round_id]).fetchone()
    return current_intake_counts(con, period[0] if period else None)


# Per resource of round_municipalities: what accepted proposals of the period use beyond the municipality's
# latest offer (it lowered its offer after they were accepted; remaining_capacity).
BEYOND_OFFER_PREFIX = "beyond_offer_"


def remaining_capacity(municipalities: pl.DataFrame, accepted_usage: pl.DataFrame) -> pl.DataFrame:
    """Capacities minus what accepted proposals of the same period already use.

    min_persons is the smallest intake of the period, so the persons already accepted count towards
    it: what is left of it applies to this round (none once the accepted persons reach it).
    A municipality whose latest offer is below what its accepted proposals already use (an offer lowered
    mid-period) has none left, and BEYOND_OFFER_PREFIX<resource> says by how much the accepted exceed it
    (0 elsewhere): the report's ledger then shows the offer as made, and the round warns (beyond_offer_lines).
    """
    used = accepted_usage.group_by("municipality_id").agg([pl.col(r).sum().alias(f"_used_{r}") for r in RESOURCES])
    out = municipalities.join(used, on="municipality_id", how="left")
    left = {r: pl.col(CAPACITY_COLUMNS[r]) - pl.col(f"_used_{r}").fill_null(0) for r in RESOURCES}
    return out.with_columns(
        [left[r].clip(lower_bound=0).alias(CAPACITY_COLUMNS[r]) for r in RESOURCES]
        + [(-left[r]).clip(lower_bound=0).alias(BEYOND_OFFER_PREFIX + r) for r in RESOURCES]
        + [(pl.col("min_persons") - pl.col("_used_persons").fill_null(0)).clip(lower_bound=0).alias("min_persons")]
    ).drop([f"_used_{r}" for r in RESOURCES])


def beyond_offer_lines(offers: pl.DataFrame, remaining: pl.DataFrame) -> list[str]:
    """One warning per municipality whose accepted proposals of the period use more than its latest offer
    (`offers`, before remaining_capacity; `remaining`, after), naming each such resource as `<accepted use> of
    <offer>`: counts only, no household."""
    over = remaining.select("municipality_id", *(BEYOND_OFFER_PREFIX + r for r in RESOURCES)).join(
        offers.select("municipality_id", *(pl.col(CAPACITY_COLUMNS[r]).alias("_offer_" + r) for r in RESOURCES)), on="municipality_id"
    )
    lines = []
    for row in over.sort("municipality_id").iter_rows(named=True):
        beyond = [
            f"{r} {row['_offer_' + r] + row[BEYOND_OFFER_PREFIX + r]} of {row['_offer_' + r]}" for r in RESOURCES if row[BEYOND_OFFER_PREFIX + r]
        ]
        if beyond:
            lines.append(
                f"municipality {row['municipality_id']}: proposals accepted earlier in the period use more than its latest"
                f" offer ({', '.join(beyond)}); nothing more is proposed there, and the accepted proposals stand:"
                " settle the difference with the municipality"
            )
    return lines


def accepted_by_municipality(accepted_usage: pl.DataFrame) -> pl.DataFrame:
    """Households and resource usage that accepted proposals hold, per municipality."""
    return (
        accepted_usage.group_by("municipality_id")
        .agg(pl.len().cast(pl.Int64).alias("households"), *[pl.col(r).sum().cast(pl.Int64) for r in RESOURCES])
        .sort("municipality_id")
    )


def complete_link_groups(households: pl.DataFrame, group_sizes: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Only groups whose every household is in the pool: linked households go together or not at all. Returns
    the households kept and those that wait (a household of their group is not in the pool)."""
    present = households.group_by("link_group").agg(pl.len().alias("_present"))
    complete = present.join(group_sizes, on="link_group").filter(pl.col("_present") == pl.col("group_size")).select("link_group")
    return households.join(complete, on="link_group", how="semi"), households.join(complete, on="link_group", how="anti")


NO_OFFERS_YET = "no validated municipality offers yet: ingest municipality questionnaires first"


def resolve_period(con: duckdb.DuckDBPyConnection, requested: str) -> str:
    """The requested intake period, or the latest one with offers; fails with a clear reason."""
    periods = [r[0] for r in con.execute("SELECT DISTINCT intake_period FROM municipality_features ORDER BY 1").fetchall()]
    if not periods:
        raise dg.Failure(NO_OFFERS_YET)
    if not requested:
        return periods[-1]
    if requested not in periods:
        # A requested period is YYYY-MM by now (RoundConfig.problems): showing it is safe.
        raise dg.Failure(f"period: intake period {requested} has no validated municipality offers (known: {', '.join(periods)})")
    return requested


@dg.asset(
    deps=["household_features", "municipality_features"],
    partitions_def=rounds_partitions,
    group_name="matching",
    pool="duckdb",
    kinds={"duckdb", "polars"},
)
@reason_first
def round_candidates(
    context: dg.AssetExecutionContext, config: RoundConfig, warehouse: DuckDBResource, home: RematchHome
) -> dg.MaterializeResult:
    """The round's pool, remaining capacities, compatible pairs (every hard rule) and their scores."""
    if not context.has_partition_key:
        # The Launchpad starts round_job without a partition too; Dagster's own error then names its internals.
        raise dg.Failure(f"round not started: no round id; choose a partition of `rounds` (add one, e.g. r1, with Add partition): {ROUND_ID_RULE}")
    round_id = context.partition_key
    # The Launchpad takes any partition key and any number: refuse before anything is read or written.
    problems = ([] if ROUND_ID_PATTERN.fullmatch(round_id) else [ROUND_ID_RULE]) + config.problems()
    if problems:
        raise refused("round not started, fix the run config: ", problems)
    with warehouse_connection(warehouse) as con:
        if not table_exists(con, "municipality_features"):  # nothing validated yet (decisions neither)
            raise dg.Failure(NO_OFFERS_YET)
        answered = con.execute("SELECT count(*) FROM decisions WHERE round_id = ?", [round_id]).fetchone()[0]
        if answered:
            raise dg.Failure(f"round {round_id} already has {counted(answered, 'recorded decision')}; start a new round id instead")
        earlier = con.execute("SELECT period, started_at FROM rounds WHERE round_id = ?", [round_id]).fetchone()
        period = resolve_period(con, config.period)
        households = con.execute(
            "SELECT * FROM household_features WHERE submitted_period <= ? AND accepted_municipality_id IS NULL", [period]
        ).pl()
        group_sizes = con.execute("SELECT link_group, count(*) AS group_size FROM household_features GROUP BY link_group").pl()
        municipalities = con.execute("SELECT * FROM municipality_features WHERE intake_period = ?", [period]).pl()
        # Accepted places stay taken for the period, also those of a household erased since (erased_accepted).
        accepted_usage = con.execute(
            f"""SELECT d.municipality_id, {', '.join('f.' + r for r in RESOURCES)}
                FROM decisions d JOIN rounds r USING (round_id) JOIN household_features f USING (household_pseudonym)
                WHERE d.decision = 'accept' AND r.period = ?
                UNION ALL SELECT municipality_id, {', '.join(RESOURCES)} FROM erased_accepted WHERE period = ?""",
            [period, period],
        ).pl()
        coordinator = config.coordinator_pairs()
        named = sorted({h for _, _, h, _ in coordinator.entries()})
        # Why a named household is not in the pool, if it is not (said in the refusal).
        known = con.execute(
            "SELECT household_pseudonym, submitted_period, accepted_municipality_id FROM household_features"
            " WHERE list_contains(?::VARCHAR[], household_pseudonym)",
            [named],
        ).pl()
    households, waiting = complete_link_groups(households, group_sizes)
    # Unplaced without a solve: recorded so that households.csv and the report name them and why.
    waiting = waiting.select("household_pseudonym", "persons")
    if waiting.height:
        context.log.info(f"{counted(waiting.height, 'linked household waits', 'linked households wait')}: a household of their group is not in this round's pool")
    offers, municipalities = municipalities, remaining_capacity(municipalities, accepted_usage)
    # An offer lowered mid-period below what was accepted there: the round goes on, the coordinator is told.
    for line in beyond_offer_lines(offers, municipalities):
        context.log.warning(line)
    context.log.info(f"round {round_id}: period {period}, {counted(households.height, 'household')}, {counted(municipalities.height, 'municipality')}")
    pairs = candidate_pairs(households, municipalities)
    # The coordinator's pairs are checked against this round before anything is written.
    problems = coordinator.round_problems(period, known, households, municipalities, pairs, offers)
    if problems:
        raise refused("round not started, fix the run config: ", problems)
    if earlier:
        # A round id reused replaces that round's answer (decisions.md, "A round is a dynamic partition"): its
        # proposals.csv may have gone out to the municipalities already, so the run says so instead of doing it quietly.
        context.log.warning(
            f"round {round_id} was run before (period {earlier[0]}, started {earlier[1]:%Y-%m-%d %H:%M} UTC): this run"
            f" replaces its proposals, report and files in rounds/{round_id}/; to keep them, launch a new round id"
        )
    forbidden = coordinator.frame().filter(pl.col("kind") == FORBIDDEN).select("household_pseudonym", "municipality_id")
    forbidden_candidates = pairs.join(forbidden, on=["household_pseudonym", "municipality_id"], how="semi")
    pairs = pairs.join(forbidden, on=["household_pseudonym", "municipality_id"], how="anti")
    # The coordinator's lists by their Launchpad names, and only when used: the run view read `11675 compatible pairs
    # (0 forbidden by the coordinator left out, 0 locked)` on every round.
    given = [f"{forbidden_candidates.height} left out by forbidden_pairs"] if forbidden_candidates.height else []
    given += [f"{len(coordinator.locked)} locked by locked_pairs"] if coordinator.locked else []
    context.log.info(f"{pairs.height} compatible pairs" + (f" ({', '.join(given)})" if given else "") + "; scoring")
    # The rules' counts, the scores and storing them: at 15 M pairs (a national round) about half a minute with
    # nothing else to say; the line says the round is alive and how much it scores.
    with still_working(context.log.info, f"still scoring and storing {counted(pairs.height, 'compatible pair')}"):
        exclusions, exclusions_by_municipality = exclusions_with_forbidden(
            *exclusion_tables(households, municipalities), forbidden, forbidden_candidates
        )
        n_candidates = pairs.group_by("household_pseudonym").agg(pl.len().alias("candidates"))
        pool = households.join(n_candidates, on="household_pseudonym", how="left").with_columns(pl.col("candidates").fill_null(0))
        with warehouse_connection(warehouse) as con:
            con.execute("BEGIN TRANSACTION")
            now = utc_now()
            if earlier and table_exists(con, "proposals"):
                # Kept (pseudonyms only) so that a decision made from the replaced proposals.csv is told the round
                # was run again, rather than only that it answers no proposal of the round.
                keep_replaced_proposals(con, round_id, now)
            con.execute("DELETE FROM rounds WHERE round_id = ?", [round_id])
            # A round id run again: the earlier run's answer belongs to other parameters and candidates. Left in
            # place until this solve succeeds, it would be the round's answer if the solve failed (decisions
            # were then recorded against it, and an erasure re-rendered it beside the new parameters).
            for table in SOLVE_TABLES:
                if table_exists(con, table):
                    con.execute(f"DELETE FROM {table} WHERE round_id = ?", [round_id])
            con.execute(
                "INSERT INTO rounds VALUES (?, ?, ?, ?)",
                [round_id, period, json.dumps(config.recorded(), sort_keys=True), now],
            )
            store_round_rows(con, "round_coordinator_pairs", round_id, coordinator.frame())
            store_round_rows(con, "round_households", round_id, pool)
            store_round_rows(con, "round_waiting", round_id, waiting)
            store_round_rows(con, "round_municipalities", round_id, municipalities)
            scores: list[pl.Series] = []
            store_round_rows(con, "round_candidates", round_id, scored_slices(pairs, households, municipalities, config.weights(), scores))
            store_round_rows(con, "round_exclusions", round_id, exclusions)
            store_round_rows(con, "round_municipality_exclusions", round_id, exclusions_by_municipality)
            # What accepted proposals of the period held when the round started: the report adds it back,
            # so it shows offered capacity and everything in use, and says who was kept.
            store_round_rows(con, "round_accepted", round_id, accepted_by_municipality(accepted_usage))
            # The intake this round saw, for its report: a later ingestion or erasure changes the warehouse's.
            # The pool and the waiting as they ran too: an erasure later takes households out of both tables, and
            # the intake's households would no longer add up beside the counts kept from this day.
            intake = current_intake_counts(con, period) | households_outside_pool(con, period) | {
                "households_waiting": waiting.height, "households_in_pool": pool.height,
            }
            store_round_rows(con, "round_intake_counts", round_id, pl.DataFrame(
                {"position": range(len(intake)), "name": list(intake), "value": list(intake.values())},
                schema={"position": pl.Int64, "name": pl.Utf8, "value": pl.Int64},
            ))
            con.execute("COMMIT")
    context.log.info(f"{counted(pairs.height, 'compatible pair')} scored and stored")
    folder = home.path / "rounds" / round_id
    for name in ROUND_OUTPUT_FILES:
        (folder / name).unlink(missing_ok=True)
    without = pool.filter(pl.col("candidates") == 0).height
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": pairs.height,
            "period": period,
            "households": pool.height,
            "households_without_any_candidate": without,
            "municipalities": municipalities.height,
            # Over every compatible pair, not the placed households (report.html's "Mean match score"): named apart.
            "mean_score_of_compatible_pairs": round(float(pl.concat(scores).mean() or 0.0), 2),  # points of 100
            "locked_pairs": len(coordinator.locked),
            "forbidden_pairs": len(coordinator.forbidden),
        }
    )


def round_coordinator_pairs(con: duckdb.DuckDBPyConnection, round_id: str) -> CoordinatorPairs:
    """The locked and forbidden pairs a round was started with (none for rounds run before they existed)."""
    if not table_exists(con, "round_coordinator_pairs"):
        return CoordinatorPairs()
    return CoordinatorPairs.from_frame(load_round_rows(con, "round_coordinator_pairs", round_id))


def forbidden_out(pool: pl.DataFrame, municipalities: pl.DataFrame, coordinator: CoordinatorPairs) -> list[str]:
    """Households left without a candidate by the coordinator's forbids alone: some forbidden pair of theirs passed
    every hard rule. Only the forbidden households' pairs are built (a national round has 15 M)."""
    forbidden = coordinator.frame().filter(pl.col("kind") == FORBIDDEN).select("household_pseudonym", "municipality_id")
    if not forbidden.height:
        return []
    named = pool.join(forbidden.select("household_pseudonym").unique(), on="household_pseudonym", how="semi")
    empty = named.filter(pl.col("candidates") == 0)
    if not empty.height:
        return []
    was = candidate_pairs(empty.drop("candidates"), municipalities).join(forbidden, on=["household_pseudonym", "municipality_id"], how="semi")
    return sorted(set(was["household_pseudonym"].to_list()))


def locks_below_minimum(problem: AssignmentProblem) -> list[str]:
    """Places whose locked units bring some persons but fewer than the place's minimum intake."""
    persons = np.zeros(problem.n_places, dtype=np.int64)
    for u, j in problem.locked:
        persons[j] += problem.usage[u, problem.persons_index]
    return [problem.place_ids[j] for j in np.flatnonzero((persons > 0) & (persons < problem.min_intake)).tolist()]


def household_outcomes(
    pool: pl.DataFrame, exclusions: pl.DataFrame, problem: AssignmentProblem, place_of_unit: np.ndarray, all_forbidden: Sequence[str] = ()
) -> pl.DataFrame:
    """household_pseudonym → placed, and if not, why: the hard rule excluding most places, or the diagnosed capacity.
    all_forbidden: households that had compatible municipalities before the coordinator forbade them all."""
    diagnosis = unplaced_reasons(problem, place_of_unit)
    by_unit = pl.DataFrame(
        {"link_group": [problem.unit_ids[u] for u in diagnosis.unit.tolist()], "diagnosis": diagnosis.reason},
        schema={"link_group": pl.Utf8, "diagnosis": pl.Utf8},
    )
    rules = exclusions.filter((pl.col("rule") != "any") & (pl.col("municipalities_excluded") > 0))
    top_rule = (
        rules.sort(["household_pseudonym", "municipalities_excluded", "rule"], descending=[False, True, False])
        .group_by("household_pseudonym", maintain_order=True)
        .first()
        .select("household_pseudonym", "rule")
    )
    placed_units = {problem.unit_ids[u] for u, p in enumerate(place_of_unit.tolist()) if p >= 0}
    # A `must` tie to a place that neither the reference list nor this round knows can never be met: say so.
    must = pool.filter((pl.col("family_ties_importance") == "must") & pl.col("family_ties_municipality_id").is_not_null())
    unknown = unknown_places(must["family_ties_municipality_id"].to_list(), list(problem.place_ids))
    unknown_tie = must.filter(pl.col("family_ties_municipality_id").is_in(list(unknown)))["household_pseudonym"]
    return (
        pool.select("household_pseudonym", "link_group", "persons", "candidates")
        .join(by_unit, on="link_group", how="left")
        .join(top_rule, on="household_pseudonym", how="left")
        .with_columns(pl.col("link_group").is_in(list(placed_units)).alias("placed"))
        .with_columns(
            pl.when(pl.col("placed"))
            .then(None)
            .when((pl.col("candidates") == 0) & pl.col("household_pseudonym").is_in(unknown_tie.implode()))
            .then(pl.lit(f"{NO_CANDIDATE}: {UNKNOWN_TIE_REASON}"))
            .when((pl.col("candidates") == 0) & pl.col("household_pseudonym").is_in(list(all_forbidden)))
            .then(pl.lit(f"{NO_CANDIDATE}: {ALL_FORBIDDEN_REASON}"))
            .when(pl.col("candidates") == 0)
            .then(pl.concat_str(pl.lit(f"{NO_CANDIDATE} (mostly: "), pl.col("rule").fill_null("unknown"), pl.lit(")")))
            .when(pl.col("diagnosis") == NO_CANDIDATE)
            .then(pl.lit("no municipality compatible with every linked household"))
            .otherwise(pl.col("diagnosis"))
            .alias("unplaced_reason")
        )
        .select("household_pseudonym", "persons", "candidates", "placed", "unplaced_reason")
    )


def capacity_misses(problem: AssignmentProblem, place_of_unit: np.ndarray) -> pl.DataFrame:
    """Per municipality and resource: the unplaced units whose nearest miss (engine.diagnosis) was a
    lack of that resource there, with their households and persons. A municipality's "who nearly came"."""
    diagnosis = unplaced_reasons(problem, place_of_unit)
    rows = [
        (problem.place_ids[int(j)], resource, int(problem.unit_households[u]), int(problem.usage[u, problem.persons_index]))
        for u, j, resource in zip(diagnosis.unit.tolist(), diagnosis.place.tolist(), diagnosis.resource)
        if resource is not None and j >= 0
    ]
    frame = pl.DataFrame(
        rows, schema={"municipality_id": pl.Utf8, "resource": pl.Utf8, "households": pl.Int64, "persons": pl.Int64}, orient="row"
    )
    return (
        frame.group_by("municipality_id", "resource")
        .agg(pl.len().cast(pl.Int64).alias("units"), pl.col("households").sum(), pl.col("persons").sum())
        .sort("municipality_id", "resource")
    )


# Pseudonyms named in a failure message at most: the rest are counted.
NAMED_IN_FAILURE = 5


# A national round solves for about 5 minutes (up to twice its time limit on a loaded machine) and compares
# with deferred acceptance for another half minute, with nothing new to say meanwhile: a line this often
# tells the person waiting at the terminal or in the run view that the round is alive and how far it is.
STILL_WORKING_EVERY_SECONDS = 30.0


@contextmanager
def still_working(
    say: Callable[[str], None], what: str, limit: str = "", every: float | None = None, done_so_far: Callable[[], str | None] | None = None
) -> Iterator[None]:
    """While the block runs, say `what, N s so far[, done_so_far()] (limit)` every `every` seconds (default
    STILL_WORKING_EVERY_SECONDS) from a thread beside it; nothing once the block is done. done_so_far says how far
    the work is where the wall clock alone cannot (None: nothing to add). The block's work is not touched (a solve
    proposes the same with or without these lines)."""
    every = STILL_WORKING_EVERY_SECONDS if every is None else every
    done = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not done.wait(every):
            far = done_so_far() if done_so_far is not None else None
            say(f"{what}, {elapsed(time.monotonic() - start)} so far{f', {far}' if far else ''}{f' ({limit})' if limit else ''}")

    beside = threading.Thread(target=beat, name="still-working", daemon=True)
    beside.start()
    try:
        yield
    finally:
        done.set()
        beside.join()


def counted_work_done(progress: SolveProgress) -> str | None:
    """`N s of counted work done` while a reproducible large solve runs: its limit is counted work, and on a loaded
    machine the wall clock passes it long before the work does (a national round said `5 min 30 s so far (time limit
    176 s of counted work …)` with no hint of how much was left; measured 2026-12-07). None for other solves."""
    seconds = progress.counted_seconds()
    if seconds is None:
        return None
    # As the limit is written (`176 s`); tenths below 10 s, where a short test round's whole budget lies.
    return f"{seconds:.0f} s of counted work done" if seconds >= 10 else f"{seconds:.1f} s of counted work done"


def solve_limit_words(problem: AssignmentProblem, params: SolverParams, by_size: bool, short: bool = False) -> str:
    """The method and time limit of a round's solve, as the log says them: the large-round method budgets counted
    work (stopped by the wall clock at params.wall_limit() at the latest) and ignores the backend. short: the
    limits only, for the lines while it solves."""
    size = " by the round size" if by_size else ""
    if uses_large_method(problem, params):
        wall = f", {elapsed(params.wall_limit())} at the latest" if params.reproducible else ""
        limit = f"time limit {params.time_limit_seconds:g} s of counted work{size}{wall}"
        return limit if short else f"large-round method, {limit}"
    limit = f"time limit {params.time_limit_seconds:g} s{size}"
    return limit if short else f"{params.backend}, {limit}"


def require_a_place_for_each(problem: AssignmentProblem, round_id: str) -> None:
    """With place_every_household: fail before solving, naming (by link group, i.e. a household's pseudonym or
    its group's) the units the hard rules leave no municipality."""
    placeless = np.flatnonzero(np.bincount(problem.pair_unit, minlength=problem.n_units) == 0)
    if placeless.size:
        named = ", ".join(problem.unit_ids[u] for u in placeless[:NAMED_IN_FAILURE])
        more = f" and {placeless.size - NAMED_IN_FAILURE} more" if placeless.size > NAMED_IN_FAILURE else ""
        raise dg.Failure(
            f"round {round_id}: place_every_household: {counted(placeless.size, 'household or link group has', 'households or link groups have')} no compatible"
            f" municipality in this round ({named}{more}); nothing was proposed or stored. Run the round with"
            " place_every_household off: report.html gives each one's reason"
        )


@dg.asset(deps=["round_candidates"], partitions_def=rounds_partitions, group_name="matching", pool="duckdb", kinds={"duckdb", "ortools"})
@reason_first
def round_proposals(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource, identity: IdentityStore, home: RematchHome
) -> dg.MaterializeResult:
    """The round's proposals: a municipality for each household placed, by pseudonym (table proposals; solver.json
    says how the solve went). proposals.csv is the coordinators' restricted copy (owner-only): households by
    reference (household_ref), not by pseudonym; the Launchpad's fields take the pseudonym of report.html."""
    round_id = context.partition_key
    # Loading a national round's 15 M scored pairs and building the problem from them: some 15 s before `solving`.
    context.log.info(f"round {round_id}: loading the candidate pairs and building the problem")
    with still_working(context.log.info, "still loading the candidate pairs and building the problem"):
        with warehouse_connection(warehouse) as con:
            period, config_json = con.execute("SELECT period, config_json FROM rounds WHERE round_id = ?", [round_id]).fetchone()
            pool = load_round_rows(con, "round_households", round_id)
            municipalities = load_round_rows(con, "round_municipalities", round_id)
            # The problem needs the total score only, not the criteria (a national round: 15 M rows).
            scored = load_round_rows(con, "round_candidates", round_id, ("household_pseudonym", "municipality_id", "score"))
            exclusions = load_round_rows(con, "round_exclusions", round_id)
            coordinator = round_coordinator_pairs(con, round_id)
        config = RoundConfig(**json.loads(config_json))
        problem = build_problem(pool, municipalities, scored, locked=coordinator.locked, exactly_one=config.place_every_household)
    if config.place_every_household:
        require_a_place_for_each(problem, round_id)
    # A national round has ~15 M candidate rows: not held through the solve (the proposals
    # read back only the chosen pairs' scores).
    del scored
    params = config.solver_params(len(problem.pair_unit))
    context.log.info(
        f"solving {len(problem.unit_ids)} placement units (households; linked ones as one) × {len(problem.place_ids)} municipalities,"
        f" {len(problem.pair_unit)} compatible pairs ({solve_limit_words(problem, params, config.time_limit_seconds is None)})"
    )
    progress = SolveProgress()
    with still_working(
        context.log.info, "still solving", solve_limit_words(problem, params, by_size=False, short=True), done_so_far=partial(counted_work_done, progress)
    ):
        result = solve(problem, params, progress=progress)
    violations = check_assignment(problem, result)
    short = locks_below_minimum(problem)
    if violations and short:
        # Locks that keep a place below its minimum intake, when the other households cannot make it up.
        raise dg.Failure(
            f"locked_pairs: no assignment keeps every lock: the locked persons at {', '.join(short)} are below the"
            " minimum intake (min_persons) and too few other compatible households fit there; lock more households there, or none"
        )
    if config.place_every_household and result.status == "infeasible":
        bound = next((s.best_bound for s in result.stages if s.name == "persons" and math.isfinite(s.best_bound)), None)
        fit = f": at most {bound:.0f} of {int(problem.usage[:, problem.persons_index].sum())} persons fit" if bound is not None else ""
        raise dg.Failure(
            f"round {round_id}: place_every_household: the offers cannot take every household of the pool (proven{fit});"
            " nothing was proposed or stored. Run the round with place_every_household off: report.html names the"
            " households left out and the capacities short"
        )
    if result.status not in ("optimal", "feasible") and len(problem.unit_ids):
        # No assignment at all (the engine then leaves every unit unplaced): a report would blame capacities
        # for what is the time limit or the model. Nothing of this solve is stored.
        stopped = ", ".join(f"{s.name} {s.status} after {s.wall_seconds:.1f} s" for s in result.stages) or "none"
        raise dg.Failure(
            f"round {round_id}: the solver found no assignment within time_limit_seconds {params.time_limit_seconds:g}"
            f" (status {result.status}; stages: {stopped}); nothing was proposed or stored:"
            " launch the round again with a longer time_limit_seconds"
        )
    if violations:
        raise dg.Failure(f"solver answer breaks {len(violations)} constraints, first: {violations[0]}")
    context.log.info(
        f"{solved_words(result.status)}: {counted(result.persons_placed, 'person')} placed, score gap {gap_words(result.gap)},"
        f" {result.wall_seconds:.1f} s"
    )
    # The engine's own word on a wall-clock cut (which setting to lengthen) where it has one, else the plain one: once.
    for note in result.notes:
        context.log.warning(note)
    if not result.reproducible and not result.notes:
        context.log.warning("the time limit cut this solve short: a repeat of the round may propose otherwise (see solver.json)")
    unsolved = [s.name for s in result.stages[1:] if s.status not in ("optimal", "feasible")]
    if unsolved:
        # The stage kept the persons stage's answer: its scores were never weighed (no gap to warn by).
        context.log.warning(
            f"the time limit ran out before the solver found any answer for stage {', '.join(unsolved)}: the proposals"
            f" place the most persons, their scores only improved by swapping households of the same needs (no bound);"
            f" run the round again with a longer time_limit_seconds than {params.time_limit_seconds:g}"
        )
    if result.far_from_bound():
        context.log.warning(
            f"the answer is far from its bounds ({result.persons_placed} of at most {result.persons_bound:.0f} persons"
            f" placed, score gap {gap_words(result.gap, 2)}): time_limit_seconds {params.time_limit_seconds:g} is likely too short"
            " for this round (a national round of 50,000 households x 401 districts needs 300 s; docs/operations.md)"
        )

    unit_place = {
        problem.unit_ids[u]: problem.place_ids[p] for u, p in enumerate(result.place_of_unit.tolist()) if p >= 0
    }
    # A lock holds the household's link group: every household of it is a locked proposal.
    locked_groups = {problem.unit_ids[u] for u, _ in problem.locked}
    chosen = pool.select("household_pseudonym", "link_group", "persons").with_columns(
        # return_dtype: a round that places nobody has no AGS to infer the type from.
        pl.col("link_group").replace_strict(unit_place, default=None, return_dtype=pl.Utf8).alias("municipality_id"),
        pl.col("link_group").is_in(list(locked_groups)).alias("locked"),
    ).filter(pl.col("municipality_id").is_not_null())
    forbidden = set(coordinator.forbidden) & set(chosen.select("household_pseudonym", "municipality_id").iter_rows())
    if forbidden:  # a last guard: the forbidden pairs were left out of the candidates
        raise dg.Failure(f"solver answer proposes {len(forbidden)} pairs forbidden by the coordinator")
    # The criteria of the chosen pairs, scored again from the round's own pool and offers: round_candidates
    # keeps only each pair's total (same inputs, same weights, so the same score to the last bit).
    scored = score_pairs(chosen.select("household_pseudonym", "municipality_id"), pool, municipalities, config.weights())
    proposals = (
        chosen.join(scored, on=["household_pseudonym", "municipality_id"], how="left")
        .join(municipalities.select("municipality_id", "municipality_name"), on="municipality_id", how="left")
        .select("household_pseudonym", "municipality_id", "municipality_name", "persons", "score", pl.col("^score_.*$"), "locked")
        .sort(["municipality_id", "household_pseudonym"])
    )
    households = household_outcomes(pool, exclusions, problem, result.place_of_unit, forbidden_out(pool, municipalities, coordinator))
    offers = capacity_offers(problem, result.place_of_unit)
    solver = {
        "round_id": round_id,
        "period": period,
        "status": result.status,
        "backend": result.solver,
        "objective": finite(result.objective_value),
        "bound": finite(result.best_bound),
        "persons_bound": finite(result.persons_bound),
        "stages": [
            {k: finite(v) if isinstance(v, float) else v for k, v in dataclasses.asdict(stage).items()} for stage in result.stages
        ],
        "gap": finite(result.gap),
        "reproducible": result.reproducible,
        "bound_reproducible": result.bound_reproducible,
        "seconds": round(result.wall_seconds, 3),
        "persons_placed": result.persons_placed,
        "total_score": result.total_score,
        "households": pool.height,
        "households_placed": proposals.height,
        "units": len(problem.unit_ids),
        "municipalities": len(problem.place_ids),
        "candidate_pairs": len(problem.pair_unit),
        "params": result.params,
        "capacity_offers": [offer.sentence() for offer in offers],
        "mechanisms": {},
    }
    if config.compare_mechanisms:
        # The same round under deferred acceptance, and blocking pairs of all three (docs/mechanisms.md): ~25 s at 50,000.
        context.log.info("comparing the proposals with deferred acceptance and the fixed distribution key (compare_mechanisms)")
        with still_working(context.log.info, "still comparing with deferred acceptance and the distribution key"):
            # The preferences ranked once for the three (1.6 s each time at 10,000 households, 2.9 M pairs).
            counter = StabilityCounter(problem)
            solver["mechanisms"] = compare_with_deferred_acceptance(problem, result.place_of_unit, counter)
            # Today's fixed key on the same households and offers (Königsteiner Schlüssel between Länder, population
            # within), keeping the coordinator's locks and forbids, measured by the same rules, score and stability
            # counts (docs/mechanisms.md §6).
            key_weight = reference_population(municipalities.get_column("municipality_id").to_list())
            solver["mechanisms"]["distribution_key"] = distribution_key_baseline(
                pool, municipalities, config.weights(), key_weight, land_weight=koenigstein_shares(),
                locked=coordinator.locked, forbidden=coordinator.forbidden, stability=counter,
            )
            del counter
    with warehouse_connection(warehouse) as con:
        con.execute("BEGIN TRANSACTION")
        store_round_rows(con, "proposals", round_id, proposals.drop("municipality_name"))
        # A pair this run proposes again was not replaced: a decision answering it answers this run.
        con.execute(
            "DELETE FROM replaced_proposals r WHERE round_id = ? AND EXISTS (SELECT 1 FROM proposals p WHERE p.round_id = r.round_id"
            " AND p.household_pseudonym = r.household_pseudonym AND p.municipality_id = r.municipality_id)",
            [round_id],
        )
        store_round_rows(con, "round_outcomes", round_id, households)
        store_round_rows(con, "round_capacity_misses", round_id, capacity_misses(problem, result.place_of_unit))
        store_round_rows(con, "solver_runs", round_id, pl.DataFrame({"solver_json": [json.dumps(solver, sort_keys=True)]}))
        con.execute("COMMIT")

    out = home.round_dir(round_id)
    refs = identity.household_refs(proposals["household_pseudonym"].to_list())
    export = proposals.select(
        pl.col("household_pseudonym").replace_strict(refs, default=None).alias("household_ref"),
        "municipality_id",
        # Beside its AGS as households.csv has it (the round's offers name it): coordinators call by name.
        "municipality_name",
        "persons",
        pl.col("score").round(4),
        pl.when(pl.col("locked")).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("locked"),
    ).sort(["municipality_id", "household_ref"])
    write_csv(export, out / "proposals.csv", private=True)
    (out / "solver.json").write_text(json.dumps(solver, indent=2, sort_keys=True) + "\n")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": proposals.height,
            # In the log's words ("feasible" read as "it worked"); the solver's own word as solver.json keeps it.
            "status": solved_words(result.status),
            "solver_status": result.status,
            "persons_placed": result.persons_placed,
            "households_placed": proposals.height,
            "households_unplaced": pool.height - proposals.height,
            "households_locked": int(proposals["locked"].sum()),
            "locked_pairs": len(coordinator.locked),
            "forbidden_pairs": len(coordinator.forbidden),
            # In percent, as the log line and the report say it (a fraction read as 0.0010745971878382493).
            "gap_percent": round(100 * finite(result.gap), 4) if finite(result.gap) is not None else "unproven",
            "solver_seconds": round(float(result.wall_seconds), 1),
            "reproducible": result.reproducible,
            "proposals_csv": dg.MetadataValue.path(str(out / "proposals.csv")),
        }
    )
