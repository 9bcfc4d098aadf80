"""A round's outcome as files municipalities and evaluators open in a spreadsheet: municipalities.csv
(one row per municipality) and households.csv (one row per household of the pool, by pseudonym), written
beside proposals.csv by the report asset, linked from report.html, and kept in step by erasure."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.features import RESOURCES
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.sample import generate_round, write_round
from tests.assets.conftest import materialized_round
from tests.conftest import land

BASE = {"period": "2026-07", "time_limit_seconds": 10}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _query(home: RematchHome, sql: str, params: list | None = None) -> pl.DataFrame:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).pl()


@pytest.fixture
def round_run(ingested: RematchHome) -> tuple[RematchHome, dg.ExecuteInProcessResult]:
    """The ingested data home with round r1 materialised (no locks): 30 households, 4 municipalities."""
    return ingested, materialized_round(ingested, "r1", BASE)


def test_municipalities_csv_has_one_row_per_municipality_matching_the_round_tables(round_run) -> None:  # noqa: ANN001 - fixture
    home, result = round_run
    path = home.round_dir("r1") / "municipalities.csv"
    # A byte order mark, so that Excel reads UTF-8 (umlauts in names) instead of the ANSI code page.
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = _rows(path)
    municipalities = _query(home, "SELECT municipality_id, municipality_name FROM round_municipalities WHERE round_id = 'r1' ORDER BY 1")
    assert [r["municipality_id"] for r in rows] == municipalities["municipality_id"].to_list()
    assert [r["municipality_name"] for r in rows] == municipalities["municipality_name"].to_list()
    columns = list(rows[0])
    for resource in RESOURCES:
        for kind in ("offered", "used_this_round", "used_accepted_earlier", "left"):
            assert f"{resource}_{kind}" in columns
        assert f"unplaced_short_of_{resource}" in columns
    for column in ("full", "proposals", "households_proposed", "persons_proposed", "compatible_households",
                   "excluded_households", "main_rule", "main_rule_households"):
        assert column in columns

    proposed = _query(
        home, "SELECT municipality_id, count(*) AS n, sum(persons) AS persons FROM proposals WHERE round_id = 'r1' GROUP BY 1"
    )
    by_id = {r["municipality_id"]: r for r in rows}
    for municipality_id, n, persons in proposed.iter_rows():
        assert int(by_id[municipality_id]["households_proposed"]) == n
        assert int(by_id[municipality_id]["persons_proposed"]) == persons
    assert sum(int(r["proposals"]) for r in rows) == proposed["n"].sum()
    compatible = dict(_query(home, "SELECT municipality_id, count(*) FROM round_candidates WHERE round_id = 'r1' GROUP BY 1").iter_rows())
    excluded = dict(_query(
        home, "SELECT municipality_id, households_excluded FROM round_municipality_exclusions WHERE round_id = 'r1' AND rule = 'any'"
    ).iter_rows())
    offered = dict(_query(home, "SELECT municipality_id, capacity_persons FROM round_municipalities WHERE round_id = 'r1'").iter_rows())
    # The minimum intake the round had to meet (0 or at least that many persons): why a municipality with room
    # and compatible households may receive nobody. It was in no file of the round.
    minimum = dict(_query(home, "SELECT municipality_id, min_persons FROM round_municipalities WHERE round_id = 'r1'").iter_rows())
    assert [int(r["min_persons_this_round"]) for r in rows] == [minimum[r["municipality_id"]] for r in rows]
    for r in rows:
        assert int(r["compatible_households"]) == compatible.get(r["municipality_id"], 0)
        assert int(r["excluded_households"]) == excluded[r["municipality_id"]]
        # No decisions yet: offered = what the round had, left = offered - used.
        assert int(r["persons_offered"]) == offered[r["municipality_id"]]
        assert int(r["persons_left"]) == int(r["persons_offered"]) - int(r["persons_used_this_round"])
        assert int(r["persons_used_this_round"]) == int(r["persons_proposed"])
        assert ("persons" in r["full"].split()) == (int(r["persons_left"]) <= 0 < int(r["persons_offered"]))
    short = _query(home, "SELECT coalesce(sum(households), 0) AS n FROM round_capacity_misses WHERE round_id = 'r1'")["n"][0]
    assert sum(int(r[f"unplaced_short_of_{res}"]) for r in rows for res in RESOURCES) == short

    assert path.stat().st_mode & 0o777 == 0o600
    # The report shows the same households by pseudonym with their municipality (proposals to review, locks):
    # as private as households.csv, not readable by everyone on the server (it was 0644).
    assert (home.round_dir("r1") / "report.html").stat().st_mode & 0o777 == 0o600
    report = result.asset_materializations_for_node("round_report")[0].metadata
    assert report["municipalities_csv"].value == str(path)
    assert report["households_csv"].value == str(home.round_dir("r1") / "households.csv")
    html = (home.round_dir("r1") / "report.html").read_text()
    assert 'href="municipalities.csv"' in html and 'href="households.csv"' in html


def test_the_ui_shows_why_households_went_unplaced_as_households_csv_counts_them(round_run) -> None:  # noqa: ANN001
    """The Dagster UI cannot open report.html (a file:// path is not a link there): the round report's metadata
    carries the unplaced households by reason, counted as households.csv lists them, no pseudonym in it."""
    home, result = round_run
    table = result.asset_materializations_for_node("round_report")[0].metadata["unplaced_by_reason"].value
    unplaced = [r for r in _rows(home.round_dir("r1") / "households.csv") if r["placed"] == "no"]
    assert unplaced, "the small round should leave some households unplaced"
    counted: dict[str, tuple[int, int]] = {}
    for r in unplaced:
        households, persons = counted.get(r["unplaced_reason"], (0, 0))
        counted[r["unplaced_reason"]] = (households + 1, persons + int(r["persons"]))
    shown = {cells[0]: (int(cells[1]), int(cells[2]))
             for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:])}
    assert shown == counted
    assert not any(r["household_pseudonym"] in table for r in unplaced)


def test_households_csv_has_every_household_of_the_pool_by_pseudonym_with_its_outcome(round_run) -> None:  # noqa: ANN001
    home, _ = round_run
    path = home.round_dir("r1") / "households.csv"
    rows = _rows(path)
    assert list(rows[0]) == [
        "household_pseudonym", "persons", "placed", "municipality_id", "municipality_name", "score", "locked",
        "unplaced_reason", "unplaced_nearest_municipality_id",
    ]
    pool = _query(home, "SELECT household_pseudonym FROM round_households WHERE round_id = 'r1' ORDER BY 1")
    assert [r["household_pseudonym"] for r in rows] == pool["household_pseudonym"].to_list()
    proposals = {h: (m, s) for h, m, s in _query(
        home, "SELECT household_pseudonym, municipality_id, score FROM proposals WHERE round_id = 'r1'"
    ).iter_rows()}
    outcomes = dict(_query(home, "SELECT household_pseudonym, unplaced_reason FROM round_outcomes WHERE round_id = 'r1'").iter_rows())
    assert proposals and len(proposals) < len(rows), "the small round should place some households and leave some"
    for r in rows:
        h = r["household_pseudonym"]
        assert r["placed"] == ("yes" if h in proposals else "no")
        if h in proposals:
            assert r["municipality_id"] == proposals[h][0]
            assert abs(float(r["score"]) - proposals[h][1]) < 1e-4
            assert r["locked"] == "no" and r["unplaced_reason"] == ""
        else:
            assert r["municipality_id"] == r["score"] == r["locked"] == ""
            reason = outcomes[h]
            # As the report's unplaced section groups them: the reason, and the place of a capacity miss apart.
            nearest = r["unplaced_nearest_municipality_id"]
            assert reason == (f"{r['unplaced_reason']} at {nearest}" if nearest else r["unplaced_reason"])
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_round_files_carry_no_identifying_field(round_run) -> None:  # noqa: ANN001
    home, _ = round_run
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        identity_columns = {
            c for (c,) in con.execute("SELECT DISTINCT column_name FROM information_schema.columns").fetchall()
        } - {"household_pseudonym", "member_pseudonym", "municipality_id", "submission_id", "file_sha256", "file_row", "erased_at"}
        values = {
            v for table, column in con.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
            ).fetchall() if column in identity_columns
            for (v,) in con.execute(f'SELECT DISTINCT "{column}" FROM "{table}"').fetchall() if v and len(v) >= 4
        }
    assert values, "the identity store holds references and names"
    for name in ("municipalities.csv", "households.csv"):
        text = (home.round_dir("r1") / name).read_text(encoding="utf-8")
        header = text.splitlines()[0].split(",")
        assert not set(header) & identity_columns, name
        assert [v for v in values if v in text] == [], name


def test_erasure_takes_the_household_out_of_the_round_files(round_run) -> None:  # noqa: ANN001
    home, _ = round_run
    refs = dict(_query(home, "SELECT municipality_id, count(*) FROM proposals WHERE round_id = 'r1' GROUP BY 1").iter_rows())
    proposals = _rows(home.round_dir("r1") / "proposals.csv")
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        pseudonyms = dict(con.execute("SELECT household_ref, household_pseudonym FROM household_identity").fetchall())
    linked = {p for (p,) in _query(home, "SELECT household_pseudonym FROM round_households WHERE round_id = 'r1' AND link_group <> household_pseudonym").iter_rows()}
    target = next(p for p in proposals if pseudonyms[p["household_ref"]] not in linked)
    erased, municipality_id = pseudonyms[target["household_ref"]], target["municipality_id"]
    households_before = _rows(home.round_dir("r1") / "households.csv")
    municipalities_before = {r["municipality_id"]: r for r in _rows(home.round_dir("r1") / "municipalities.csv")}

    assert main(["erase", target["household_ref"]]) == 0

    households = _rows(home.round_dir("r1") / "households.csv")
    assert [r for r in households_before if r["household_pseudonym"] != erased] == households
    municipalities = {r["municipality_id"]: r for r in _rows(home.round_dir("r1") / "municipalities.csv")}
    assert int(municipalities[municipality_id]["households_proposed"]) == refs[municipality_id] - 1
    assert int(municipalities[municipality_id]["persons_proposed"]) == (
        int(municipalities_before[municipality_id]["persons_proposed"]) - int(target["persons"])
    )
    for name in ("households.csv", "municipalities.csv", "report.html"):
        path = home.round_dir("r1") / name
        assert erased.encode() not in path.read_bytes(), name
    for name in ("households.csv", "municipalities.csv"):
        assert (home.round_dir("r1") / name).stat().st_mode & 0o777 == 0o600, name

    # An unplaced household: the report counts it by reason only, households.csv lists it.
    unplaced = next(r["household_pseudonym"] for r in households if r["placed"] == "no" and r["household_pseudonym"] not in linked)
    assert unplaced.encode() not in (home.round_dir("r1") / "report.html").read_bytes()
    ref = next(ref for ref, p in pseudonyms.items() if p == unplaced)
    assert main(["erase", ref]) == 0
    assert [r for r in households if r["household_pseudonym"] != unplaced] == _rows(home.round_dir("r1") / "households.csv")


ROWS = "Rows quarantined (failed validation), of this intake period and earlier"
# Every household received is in exactly one of these rows of a round's intake.
_HOUSEHOLD_PARTS = (
    "Without consent to processing (counted only, not processed)",
    "Households not validated, any period: failed validation, held out, or left out by the tool (not in this pool)",
    "Households that accepted a proposal of any round (kept there, not in this pool)",
    "Households submitted after this intake period (not in this pool)",
    "Linked households waiting outside this pool (a household of their group is not in it)",
    "Households in the matching pool",
)


def _intake(report: Path) -> dict[str, str]:
    """The report's Round details → Intake table, label → value."""
    table = re.search(r"<h3>Intake \(Eingang\)</h3>\s*<table>(.*?)</table>", report.read_text(encoding="utf-8"), re.S)
    assert table, "no intake table"
    return dict(re.findall(r"<tr><th>(.*?)</th><td class=\"num\">(.*?)</td></tr>", table.group(1)))


def test_a_report_written_again_by_an_erasure_keeps_the_rounds_intake_and_says_who_was_erased(round_run, tmp_path: Path) -> None:  # noqa: ANN001
    """Seen in a coordinator's season: July's round report, written again by an erasure after August's export had
    landed, counted August's questionnaires, duplicates and quarantined rows as its intake, and its headline's
    persons placed (without the erased household) stood beside the solver's (with it) without a word."""
    home, _ = round_run
    report = home.round_dir("r1") / "report.html"
    intake = _intake(report)
    # The next month's export lands: questionnaires this round never saw.
    write_round(generate_round(12, 4, seed=9, period="2026-08"), tmp_path / "august")
    land(home, tmp_path / "august")
    assert main(["ingest"]) == 0
    proposals = _rows(home.round_dir("r1") / "proposals.csv")
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        pseudonyms = dict(con.execute("SELECT household_ref, household_pseudonym FROM household_identity").fetchall())
    linked = {p for (p,) in _query(home, "SELECT household_pseudonym FROM round_households WHERE round_id = 'r1' AND link_group <> household_pseudonym").iter_rows()}
    target = next(p for p in proposals if pseudonyms[p["household_ref"]] not in linked)

    assert main(["erase", target["household_ref"]]) == 0

    # The intake as the round saw it, its pool included: the households still add up (received = the parts + the
    # pool; h5's review: the pool read from today's tables lost the erased household, 30 received and 29 in parts).
    after = _intake(report)
    assert after == intake
    assert int(after["Household questionnaires received"]) == sum(int(after[label]) for label in _HOUSEHOLD_PARTS)
    text = report.read_text(encoding="utf-8")
    assert "1 household of this round was erased since it ran (rematch erase)" in text


def test_the_intake_names_the_households_a_round_leaves_out_by_design(round_run, tmp_path: Path) -> None:  # noqa: ANN001
    """August's report counted 518 questionnaires received and 202 in the pool, and said nothing of the 311
    households placed by July's accepted proposals; a July round run after August's export landed counted
    August's households as received without a word. Both are now rows of the intake."""
    home, _ = round_run
    proposals = _rows(home.round_dir("r1") / "proposals.csv")
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        pseudonyms = dict(con.execute("SELECT household_ref, household_pseudonym FROM household_identity").fetchall())
    linked = {p for (p,) in _query(home, "SELECT household_pseudonym FROM round_households WHERE round_id = 'r1' AND link_group <> household_pseudonym").iter_rows()}
    accepted = [p for p in proposals if pseudonyms[p["household_ref"]] not in linked][:2]
    with (home.landing("decisions") / "decisions-r1.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision"])
        writer.writerows(["r1", p["household_ref"], p["municipality_id"], "accept"] for p in accepted)
    write_round(generate_round(12, 4, seed=9, period="2026-08"), tmp_path / "august")
    land(home, tmp_path / "august")
    assert main(["ingest"]) == 0
    later = _query(home, "SELECT count(*) AS n FROM household_features WHERE submitted_period = '2026-08'")["n"].item()
    assert later > 0

    materialized_round(home, "r2", BASE | {"period": "2026-08"})
    august = _intake(home.round_dir("r2") / "report.html")
    assert august["Households that accepted a proposal of any round (kept there, not in this pool)"] == "2"
    assert august["Households submitted after this intake period (not in this pool)"] == "0"
    materialized_round(home, "r3", BASE)
    july = _intake(home.round_dir("r3") / "report.html")
    assert july["Households that accepted a proposal of any round (kept there, not in this pool)"] == "2"
    assert july["Households submitted after this intake period (not in this pool)"] == str(later)


def test_a_rounds_rows_quarantined_are_its_intakes_not_a_later_months(round_run, tmp_path: Path) -> None:  # noqa: ANN001
    """`Rows quarantined` in a round's intake counted every quarantined row of the warehouse: a July round run
    after August's export landed counted August's broken rows, so a later month's broken file changed July's
    figure. Now a round counts the rows of its intake period and earlier (August's round counts July's too: its
    pool holds July's unplaced households)."""
    home, _ = round_run
    july_rows = _intake(home.round_dir("r1") / "report.html")[ROWS]
    # A July decisions row naming a household r1 did not propose: quarantined, dated by its round (July).
    with (home.landing("decisions") / "decisions-r1.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["round_id", "household_ref", "municipality_id", "decision"], ["r1", "RM-NOT-PROPOSED", "09162000", "accept"]])
    # August's export with two broken household rows (a pets answer that is no code).
    write_round(generate_round(12, 4, seed=9, period="2026-08"), tmp_path / "august")
    households = tmp_path / "august" / "households" / "households_2026-08.csv"
    rows = _rows(households)
    for row in rows[:2]:
        row["pets"] = "vielleicht"
    with households.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    land(home, tmp_path / "august")
    assert main(["ingest"]) == 0
    total = _query(home, "SELECT value FROM intake_counts WHERE name = 'rows_quarantined'")["value"].item()
    by_period = dict(_query(home, "SELECT period, rows FROM quarantined_by_period").iter_rows())
    assert sum(by_period.values()) == total  # every quarantined row has its period (or none), once
    # The two household rows; their members are held out with them, not quarantined (thirty-ninth session).
    assert by_period.get("2026-08", 0) == 2

    materialized_round(home, "r3", BASE)
    materialized_round(home, "r2", BASE | {"period": "2026-08"})
    july = _intake(home.round_dir("r3") / "report.html")
    august = _intake(home.round_dir("r2") / "report.html")
    assert int(july[ROWS]) == int(july_rows) + 1  # its decisions row, not August's
    assert int(august[ROWS]) == total
    # The households add up in both reports: every household received is in exactly one of these.
    for report, round_id in ((july, "r3"), (august, "r2")):
        pool = _query(home, "SELECT count(*) AS n FROM round_households WHERE round_id = ?", [round_id])["n"].item()
        assert int(report["Household questionnaires received"]) == sum(int(report[label]) for label in _HOUSEHOLD_PARTS)
        assert int(report["Households in the matching pool"]) == pool
    assert int(july["Households not validated, any period: failed validation, held out, or left out by the tool (not in this pool)"]) == 2


def test_proposals_csv_names_the_municipality_beside_its_ags_as_households_csv_does(round_run) -> None:  # noqa: ANN001
    """proposals.csv had the AGS only; a coordinator calling a family reads the place's name (households.csv had it)."""
    home, _ = round_run
    proposals = _rows(home.round_dir("r1") / "proposals.csv")
    households = {r["household_pseudonym"]: r for r in _rows(home.round_dir("r1") / "households.csv")}
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        pseudonyms = dict(con.execute("SELECT household_ref, household_pseudonym FROM household_identity").fetchall())
    assert list(proposals[0])[:3] == ["household_ref", "municipality_id", "municipality_name"]
    for row in proposals:
        placed = households[pseudonyms[row["household_ref"]]]
        assert (row["municipality_id"], row["municipality_name"]) == (placed["municipality_id"], placed["municipality_name"])
        assert row["municipality_name"]
