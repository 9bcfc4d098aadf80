"""Synthetic national rounds through the real data path, without Dagster.

sample generator → canonical text tables → pseudonymisation → validation → feature tables →
hard rules and scores → AssignmentProblem. Only the solver step is what the benchmark times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import polars as pl

from rematch_pipeline.engine.compatibility import candidate_pairs
from rematch_pipeline.engine.problem import AssignmentProblem, build_problem
from rematch_pipeline.engine.scoring import ScoreWeights, score_pairs
from rematch_pipeline.features import household_features, municipality_features
from rematch_pipeline.formats.canonical import ParsedTable
from rematch_pipeline.formats.landing import split_identity
from rematch_pipeline.resources.warehouse import raw_columns
from rematch_pipeline.sample import generate_round
from rematch_pipeline.validation import build_canonical

SECRET = b"benchmark-secret"


@dataclass(frozen=True)
class SyntheticRound:
    """A round ready for the solver, and how long each preparation step took."""

    problem: AssignmentProblem
    households: int
    municipalities: int
    seconds: dict[str, float]


def _raw(table: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int32).alias("file_row"))
    rows = rows.with_columns([pl.col(c).replace("", None) for c in frame.columns])
    return split_identity(ParsedTable(table, rows), SECRET, f"sha-{table}", f"{table}.csv")


def synthetic_round(households: int, municipalities: int, seed: int = 1) -> SyntheticRound:
    """A sample round of the given size turned into an AssignmentProblem through the pipeline's own modules."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    sample = generate_round(households, municipalities, seed)
    seconds["generate"] = time.perf_counter() - start

    start = time.perf_counter()
    raw, identity = {}, {}
    for table, frame in (("municipalities", sample.municipalities), ("households", sample.households), ("members", sample.members)):
        raw[table], identity[table] = _raw(table, frame)
    raw["decisions"] = pl.DataFrame(schema={c: pl.Int32 if c == "file_row" else pl.Utf8 for c in raw_columns("decisions")})
    births = identity["members"].select("file_sha256", "file_row", "member_pseudonym", "date_of_birth")
    proposals = pl.DataFrame(schema={"round_id": pl.Utf8, "household_pseudonym": pl.Utf8, "municipality_id": pl.Utf8})
    tables = build_canonical(raw, births, proposals)
    del sample, raw, identity, births  # the text tables are not needed past validation
    seconds["validate"] = time.perf_counter() - start

    start = time.perf_counter()
    hh = household_features(tables.households, tables.members, tables.decisions)
    mu = municipality_features(tables.municipalities)
    del tables
    pairs = candidate_pairs(hh, mu)
    # The solver reads the score only: no per-criterion breakdown (~1 GB at 15 M pairs).
    scored = score_pairs(pairs, hh, mu, ScoreWeights(), breakdown=False)
    seconds["features_and_scores"] = time.perf_counter() - start

    start = time.perf_counter()
    problem = build_problem(hh, mu, scored)
    seconds["build_problem"] = time.perf_counter() - start
    return SyntheticRound(problem, hh.height, mu.height, seconds)
