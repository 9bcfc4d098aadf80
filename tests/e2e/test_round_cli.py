"""The issue's acceptance path through the command line: sample → landing → ingest → round."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import dagster as dg
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from tests.conftest import land
from tests.hard_rules import violations


def test_sample_ingest_round_breaks_no_hard_rule(home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sample"
    assert main(["sample", "--households", "300", "--municipalities", "30", "--seed", "7", "--out", str(out)]) == 0
    period = capsys.readouterr().out.strip().splitlines()[-1]
    assert period == "2026-07"
    land(home, out)
    assert main(["ingest"]) == 0
    assert main(["round", "r1", "--period", period, "--time-limit", "30"]) == 0

    round_dir = home.path / "rounds" / "r1"
    proposals = round_dir / "proposals.csv"
    with proposals.open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert rows, "no proposals were made"
    assert {r["locked"] for r in rows} == {"no"}, "the coordinator locked nothing"
    assert list(rows[0]) == ["household_ref", "municipality_id", "municipality_name", "persons", "score", "locked"]
    assert proposals.stat().st_mode & 0o077 == 0, "the restricted export must not be readable by others"
    assert violations(out, proposals) == {}

    solver = json.loads((round_dir / "solver.json").read_text())
    assert solver["status"] in ("optimal", "feasible")
    assert solver["bound"] >= solver["objective"] - 1e-6
    assert solver["persons_placed"] == sum(int(r["persons"]) for r in rows)
    assert solver["reproducible"] is True and solver["bound_reproducible"] is True  # a small round's stages all finish
    assert solver["params"]["wall_limit_seconds"] is None
    assert (round_dir / "report.html").stat().st_size > 10_000
    # The report sets the answer beside deferred acceptance, with blocking pairs (docs/mechanisms.md §4);
    # before, only the docs promised that.
    ours, da = solver["mechanisms"]["optimiser"], solver["mechanisms"]["deferred_acceptance"]
    assert ours["persons_placed"] == solver["persons_placed"] and ours["households_placed"] == len(rows)
    assert abs(ours["total_score"] - solver["total_score"]) < 0.01
    # Per municipality: compatible and kept-out households add up to the pool; the nearest capacity misses
    # add up to the unplaced households the diagnosis blames on capacity.
    import duckdb

    from rematch_pipeline.assets.reports import round_report_data

    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        reasons = round_report_data(con, "r1").municipality_reasons
        short = con.execute("SELECT count(*) FROM round_outcomes WHERE round_id = 'r1' AND unplaced_reason LIKE 'capacity: %'").fetchone()[0]
        missed = con.execute("SELECT coalesce(sum(households), 0) FROM round_capacity_misses WHERE round_id = 'r1'").fetchone()[0]
    assert reasons.height == solver["municipalities"]
    assert (reasons["compatible_households"] + reasons["excluded_households"] == solver["households"]).all()
    assert missed == short
    assert sum(int(reasons[c].sum()) for c in reasons.columns if c.startswith("missed_")) == missed
    assert "<th>Rule keeping most out</th><th>Unplaced, short of</th>" in (round_dir / "report.html").read_text()
    # The spreadsheet files agree: an unplaced household short of a capacity names the place of its nearest
    # miss, and municipalities.csv counts them there.
    households = list(csv.DictReader((round_dir / "households.csv").open(encoding="utf-8")))
    municipalities = list(csv.DictReader((round_dir / "municipalities.csv").open(encoding="utf-8")))
    nearest = [h for h in households if h["unplaced_nearest_municipality_id"]]
    assert len(households) == solver["households"] and len(municipalities) == solver["municipalities"]
    assert len(nearest) == short and all(h["unplaced_reason"].startswith("capacity: ") for h in nearest)
    assert sum(int(m[c]) for m in municipalities for c in m if c.startswith("unplaced_short_of_")) == missed
    stability = (round_dir / "report.html").read_text().split('<section id="stability">')[1].split("</section>")[0]
    assert f"<td class=\"num\">{ours['blocking_pairs']}</td><td class=\"num\">{da['blocking_pairs']}</td>" in stability
    # Beside them, today's fixed key on the same pool (docs/mechanisms.md §6): the sample's districts have a Land and
    # a reference population (Königsteiner Schlüssel between Länder, population within), and the key ignores the
    # hard rules, so some of what it places they forbid.
    key = solver["mechanisms"]["distribution_key"]
    assert key["key"] == "koenigstein+population" and key["households"] == solver["households"]
    assert "between the Länder of the round by the Königsteiner Schlüssel (2017)" in stability
    assert key["households_placed"] == key["households_forbidden"] + key["households_allowed"]
    assert key["households_forbidden"] > 0
    assert f"The fixed key: {key['households_forbidden']} households to a place a hard rule forbids (" in stability
    # Its blocking pairs in its own column, counted like the others' (a dash before the thirty-second session).
    row = f"<td class=\"num\">{ours['blocking_pairs']}</td><td class=\"num\">{da['blocking_pairs']}</td><td class=\"num\">{key['blocking_pairs']:,}</td>".replace(",", "\u202f")
    assert key["blocking_pairs"] > 0 and row in stability

    # Same inputs and configuration, another round id: the same proposals, byte for byte.
    assert main(["round", "r1-again", "--period", period, "--time-limit", "30"]) == 0
    assert (home.path / "rounds" / "r1-again" / "proposals.csv").read_bytes() == proposals.read_bytes()

    # The runs are in the data home's Dagster instance, so the UI's run history shows them.
    instance = dg.DagsterInstance.get()
    jobs = {run.job_name for run in instance.get_runs()}
    assert {"ingest_file_job", "validate_job", "round_job"} <= jobs


def test_round_on_an_unknown_period_fails_with_one_line(home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sample"
    main(["sample", "--households", "40", "--municipalities", "5", "--seed", "1", "--out", str(out)])
    land(home, out)
    assert main(["ingest"]) == 0
    capsys.readouterr()
    assert main(["round", "r9", "--period", "1999-01"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rematch: round_job failed")
    assert "1999-01 has no validated municipality offers" in err
