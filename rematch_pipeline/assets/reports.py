"""Round outputs for people: the evaluation report (HTML with figures) and its spreadsheet files
(municipalities.csv, households.csv)."""


import json
import dataclasses
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.failures import reason_first
from rematch_pipeline.assets.matching import (
    BEYOND_OFFER_PREFIX, intake_counts_of_round, load_round_rows, round_coordinator_pairs, rounds_partitions,
)
from rematch_pipeline.features import CAPACITY_COLUMNS, RESOURCES
from rematch_pipeline.formats.writers import replace_file, write_csv
from rematch_pipeline.reports.round_report import RoundReportData, household_table, municipality_table, render_round_report, unplaced_markdown
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.warehouse import table_exists, warehouse_connection

# The round's files for spreadsheets, written and linked with the report: file name -> what it holds.
ROUND_FILES: dict[str, str] = {
    "municipalities.csv": "one row per municipality (AGS): capacity offered, used by this round and by accepted "
    "proposals, left and full per resource; households and persons proposed; compatible households, households "
    "kept out by a hard rule (and the rule keeping most out), unplaced households short of a resource there",
    "households.csv": "one row per household of the round by pseudonym: placed or not, municipality, score, "
    "locked, and for an unplaced household the reason",
}


def municipality_use(
    municipalities: pl.DataFrame, proposals: pl.DataFrame, pool: pl.DataFrame, accepted: pl.DataFrame | None = None
) -> pl.DataFrame:
    """capacity_<r> and used_<r> per municipality for every resource, and accepted_<r> / accepted_households.

    The round's municipalities hold what was left after accepted proposals of the period; adding
    those back gives the capacity offered, and used = accepted earlier + proposed in this round. Where the
    accepted use more than the latest offer (beyond_offer_<r>, rounds since the thirtieth session), that
    excess is taken off again: capacity is the offer as made, and used exceeds it.
    """
    usage = proposals.select("household_pseudonym", "municipality_id").join(
        pool.select("household_pseudonym", *RESOURCES), on="household_pseudonym"
    )
    used = usage.group_by("municipality_id").agg([pl.col(r).sum().alias(f"used_{r}") for r in RESOURCES])
    if accepted is None:
        accepted = pl.DataFrame(schema={"municipality_id": pl.Utf8, "households": pl.Int64, **dict.fromkeys(RESOURCES, pl.Int64)})
    held = accepted.select(
        "municipality_id", pl.col("households").alias("accepted_households"), *[pl.col(r).alias(f"accepted_{r}") for r in RESOURCES]
    )
    # Rounds run before it was recorded: none beyond the offer (their ledger shows the offer as the accepted use).
    beyond = municipalities.select(
        "municipality_id",
        *[(pl.col(BEYOND_OFFER_PREFIX + r) if BEYOND_OFFER_PREFIX + r in municipalities.columns else pl.lit(0)).alias(f"_beyond_{r}") for r in RESOURCES],
    )
    return (
        municipalities.select(
            "municipality_id", "municipality_name", "latitude", "longitude", "min_persons",
            *[pl.col(CAPACITY_COLUMNS[r]).alias(f"capacity_{r}") for r in RESOURCES],
        )
        .join(used, on="municipality_id", how="left")
        .join(held, on="municipality_id", how="left")
        .with_columns([pl.col(c).fill_null(0) for r in RESOURCES for c in (f"used_{r}", f"accepted_{r}")] + [pl.col("accepted_households").fill_null(0)])
        .join(beyond, on="municipality_id", how="left")
        .with_columns(
            [(pl.col(f"capacity_{r}") + pl.col(f"accepted_{r}") - pl.col(f"_beyond_{r}").fill_null(0)).alias(f"capacity_{r}") for r in RESOURCES]
            + [(pl.col(f"used_{r}") + pl.col(f"accepted_{r}")).alias(f"used_{r}") for r in RESOURCES]
        )
        .sort("municipality_id")
    )


def earlier_decisions(pool: pl.DataFrame, outcomes: pl.DataFrame, accepted: pl.DataFrame | None) -> dict[str, int]:
    """What decisions on earlier proposals did to this round: kept households, and declined ones re-matched."""
    declined = pool.filter(pl.col("declined_municipality_ids").list.len() > 0).select("household_pseudonym")
    placed = declined.join(outcomes.filter(pl.col("placed")), on="household_pseudonym", how="semi").height
    return {
        "accepted_households": int(accepted["households"].sum()) if accepted is not None and accepted.height else 0,
        "accepted_persons": int(accepted["persons"].sum()) if accepted is not None and accepted.height else 0,
        "declined_households": declined.height,
        "declined_placed_elsewhere": placed,
        "declined_unplaced": declined.height - placed,
    }


def municipality_reasons(con: duckdb.DuckDBPyConnection, round_id: str) -> pl.DataFrame | None:
    """Per municipality: compatible households, households the hard rules keep away (and the rule that
    keeps most), and unplaced households that missed it for lack of each resource (missed_<resource>).
    None for rounds run before these tables existed."""
    if not (table_exists(con, "round_municipality_exclusions") and table_exists(con, "round_capacity_misses")):
        return None
    compatible = con.execute(
        "SELECT municipality_id, count(*) AS compatible_households FROM round_candidates WHERE round_id = ? GROUP BY 1", [round_id]
    ).pl()
    rules = load_round_rows(con, "round_municipality_exclusions", round_id)
    excluded = rules.filter(pl.col("rule") == "any").select("municipality_id", pl.col("households_excluded").alias("excluded_households"))
    main = (
        rules.filter((pl.col("rule") != "any") & (pl.col("households_excluded") > 0))
        .sort(["municipality_id", "households_excluded", "rule"], descending=[False, True, False])
        .group_by("municipality_id", maintain_order=True)
        .first()
        .select("municipality_id", pl.col("rule").alias("main_rule"), pl.col("households_excluded").alias("main_rule_households"))
    )
    misses = load_round_rows(con, "round_capacity_misses", round_id)
    missed = misses.select(
        "municipality_id",
        *[pl.when(pl.col("resource") == r).then(pl.col("households")).otherwise(0).alias(f"missed_{r}") for r in RESOURCES],
    ).group_by("municipality_id").sum()
    return (
        excluded.join(compatible, on="municipality_id", how="left")
        .join(main, on="municipality_id", how="left")
        .join(missed, on="municipality_id", how="left")
        .with_columns(pl.col("compatible_households").fill_null(0), *[pl.col(f"missed_{r}").fill_null(0) for r in RESOURCES])
        .sort("municipality_id")
    )


def _with_time_limit_used(config: dict, solver: dict) -> dict:
    """The round's parameters with the time limit the solve used where none was given (by the round's size)."""
    used = solver.get("params", {}).get("time_limit_seconds")
    if config.get("time_limit_seconds") is None and used is not None:
        return config | {"time_limit_seconds": used}
    return config


def round_report_data(con: duckdb.DuckDBPyConnection, round_id: str) -> RoundReportData:
    """What rounds/<round_id>/report.html shows, from the warehouse's tables of that round (also after
    an erasure, which re-renders it without the erased household)."""
    period, config_json, started = con.execute("SELECT period, config_json, started_at FROM rounds WHERE round_id = ?", [round_id]).fetchone()
    solver = json.loads(con.execute("SELECT solver_json FROM solver_runs WHERE round_id = ?", [round_id]).fetchone()[0])
    proposals = load_round_rows(con, "proposals", round_id)
    outcomes = load_round_rows(con, "round_outcomes", round_id)
    pool = load_round_rows(con, "round_households", round_id)
    municipalities = load_round_rows(con, "round_municipalities", round_id)
    # Rounds run before round_accepted existed: no record of earlier acceptances (shown as none).
    accepted = load_round_rows(con, "round_accepted", round_id) if table_exists(con, "round_accepted") else None
    counts = intake_counts_of_round(con, round_id)
    # Rounds run before round_waiting existed recorded none.
    waiting = load_round_rows(con, "round_waiting", round_id, ["household_pseudonym", "persons"]) if table_exists(con, "round_waiting") else None
    # In the intake too, so that its households add up (received = … + waiting + in the pool): kept as the round
    # ran (round_intake_counts), like the counts beside them; rounds stored before kept neither, so today's tables.
    counts.setdefault("households_waiting", 0 if waiting is None else waiting.height)
    counts.setdefault("households_in_pool", pool.height)
    names = municipalities.select("municipality_id", "municipality_name")
    data = RoundReportData(
        round_id=round_id,
        period=period,
        created_at=f"{started:%Y-%m-%d %H:%M} UTC",  # started_at is stored as UTC
        config=_with_time_limit_used(json.loads(config_json), solver),
        # Nested entries (stages, params) are in solver.json; the report shows the flat summary.
        solver={k: v for k, v in solver.items() if not isinstance(v, dict | list)}
        | {f"stage_{s['name']}_gap": s["gap"] for s in solver.get("stages", [])}
        | {f"stage_{s['name']}_status": s["status"] for s in solver.get("stages", [])}
        # maximin's own result: the lowest per-household score reached, and its bound.
        | {f"stage_min_score_{k}": s[key] for s in solver.get("stages", []) if s["name"] == "min_score"
           for k, key in (("value", "objective_value"), ("bound", "best_bound"))},
        proposals=proposals.join(names, on="municipality_id", how="left"),
        households=outcomes.select("household_pseudonym", "persons", "placed", "unplaced_reason"),
        municipalities=municipality_use(municipalities, proposals, pool, accepted),
        counts=counts,
        earlier_decisions=earlier_decisions(pool, outcomes, accepted),
        capacity_offers=solver.get("capacity_offers", []),
        mechanisms=solver.get("mechanisms", {}),
        municipality_reasons=municipality_reasons(con, round_id),
        coordinator_pairs=round_coordinator_pairs(con, round_id).frame(),
        waiting=waiting,
    )
    return data


def write_round_report(home: RematchHome, data: RoundReportData) -> dict[str, Path]:
    """Write rounds/<round_id>/report.html and, beside it, municipalities.csv and households.csv (owner-only,
    like proposals.csv: the files go to municipalities and evaluators by hand, not to everyone on the server).
    Returns the paths by name ("report", "municipalities_csv", "households_csv")."""
    folder = home.round_dir(data.round_id)
    data = dataclasses.replace(data, files=tuple(ROUND_FILES.items()))
    paths = {
        "municipalities_csv": write_csv(municipality_table(data), folder / "municipalities.csv", private=True),
        "households_csv": write_csv(household_table(data), folder / "households.csv", private=True),
    }
    report = folder / "report.html"
    # Owner-only like its CSVs: it shows households by pseudonym with their municipality.
    replace_file(report, render_round_report(data).encode("utf-8"), 0o600)
    return {"report": report, **paths}


@dg.asset(deps=["round_proposals"], partitions_def=rounds_partitions, group_name="reports", kinds={"html"})
@reason_first
def round_report(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: RematchHome) -> dg.MaterializeResult:
    """The round's report, rounds/<round_id>/report.html: placements, capacity use, scores, unplaced households and
    why, households by pseudonym; and for spreadsheets municipalities.csv and households.csv (pseudonyms too)."""
    round_id = context.partition_key
    with warehouse_connection(warehouse) as con:
        data = round_report_data(con, round_id)
    paths = write_round_report(home, data)
    proposals = data.proposals
    context.log.info(f"report written: {paths['report']}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": proposals.height,
            **{name: dg.MetadataValue.path(str(path)) for name, path in paths.items()},
            "households_placed": proposals.height,
            "persons_placed": int(proposals["persons"].sum() or 0),
            # The UI cannot open report.html: why households went unplaced, where a coordinator looks first.
            "unplaced_by_reason": dg.MetadataValue.md(unplaced_markdown(data)),
        }
    )
