"""Coordinators' decisions: accept consumes capacity, decline excludes the pair, erasure removes a household."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import duckdb
import openpyxl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import pseudonym
from rematch_pipeline.schemas.contract import PROPOSALS_ONLY_COLUMNS
from rematch_pipeline.schemas.models import ROUND_ID_FORMAT_RULE
from rematch_pipeline.validation import LINKED_DECISIONS_RULE, NO_ROUND_RULE, NOT_PROPOSED_HOUSEHOLD_RULE
from tests.conftest import land


def _proposals(home: RematchHome, round_id: str) -> list[dict[str, str]]:
    with (home.path / "rounds" / round_id / "proposals.csv").open(encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _unlinked(home: RematchHome, proposals: list[dict[str, str]], round_id: str = "r1") -> list[dict[str, str]]:
    """The proposals of households without linked partners in the round (a linked one's decision counts only
    with its whole group answered alike; which households are linked to which differs run to run,
    since the pseudonyms, and so the order, come from each data home's own key)."""
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        alone = {
            r[0]
            for r in con.execute(
                "SELECT household_pseudonym FROM round_households h WHERE round_id = $r"
                " AND (SELECT count(*) FROM round_households g WHERE g.round_id = $r AND g.link_group = h.link_group) = 1",
                {"r": round_id},
            ).fetchall()
        }
    return [p for p in proposals if pseudonym(home.secret(), "household", p["household_ref"]) in alone]


@pytest.fixture
def first_round(home: RematchHome, tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / "sample"
    assert main(["sample", "--households", "80", "--municipalities", "10", "--seed", "5", "--out", str(out)]) == 0
    land(home, out)
    assert main(["ingest"]) == 0
    assert main(["round", "r1", "--period", "2026-07", "--time-limit", "20"]) == 0
    return _proposals(home, "r1")


def test_accept_and_decline_shape_the_next_round(home: RematchHome, first_round: list[dict[str, str]], capsys) -> None:
    accepted, declined = _unlinked(home, first_round)[:2]
    decisions = home.landing("decisions") / "decisions-r1.csv"
    with decisions.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision", "reason"])
        writer.writerow(["r1", accepted["household_ref"], accepted["municipality_id"], "accept", ""])
        # A reason typed as free text (contract D's reason is an optional code): the decline counts, without a reason.
        writer.writerow(["r1", declined["household_ref"], declined["municipality_id"], "decline", "zu weit weg von Olenas Klinik"])
        writer.writerow(["r1", declined["household_ref"], "99999", "accept", ""])  # never proposed
        # A mistyped reference: the household is what is wrong, not the municipality (it was told
        # `municipality_id: reference: not a proposal of that round`, sending the coordinator to the wrong cell).
        writer.writerow(["r1", "RM-999999-000000", accepted["municipality_id"], "accept", ""])
    with (home.landing("decisions") / "decisions-r1-pseudonym.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_pseudonym", "municipality_id", "decision", "reason"])
        writer.writerow(["r1", "H-0123456789abcdef0123", accepted["municipality_id"], "decline", "work"])
    capsys.readouterr()
    assert main(["ingest"]) == 0
    reason_rule = "code list: one of housing/family/work/health/other (or in German: Wohnung, Familie, Arbeit, Gesundheit, Sonstiges)"
    declined_h = pseudonym(home.secret(), "household", declined["household_ref"])
    err = capsys.readouterr().err
    assert f"warning: household {declined_h}, reason (decisions-r1.csv, row 3): {reason_rule}; the decision is recorded without a reason" in err
    assert "Olena" not in err and "weit" not in err
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 2
        assert con.execute("SELECT decision, reason FROM decisions WHERE household_pseudonym = ?", [declined_h]).fetchall() == [("decline", None)]
        assert con.execute("SELECT value FROM intake_counts WHERE name = 'decision_reasons_left_out'").fetchall() == [(1,)]
        rules = con.execute("SELECT file_name, file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1, 2").fetchall()
        stored = [con.execute(f"SELECT * FROM {t}").fetchall() for t in ("raw_decisions", "decisions", "validation_warnings", "quarantine")]
    assert "weit" not in str(stored)
    assert rules == [
        ("decisions-r1-pseudonym.csv", 2, "household_pseudonym", NOT_PROPOSED_HOUSEHOLD_RULE),
        ("decisions-r1.csv", 4, "municipality_id", "reference: not a proposal of that round"),
        ("decisions-r1.csv", 5, "household_ref", NOT_PROPOSED_HOUSEHOLD_RULE),
    ]

    capsys.readouterr()
    assert main(["round", "r1", "--period", "2026-07"]) == 1
    assert "already has 2 recorded decisions" in capsys.readouterr().err

    assert main(["round", "r2", "--period", "2026-07", "--time-limit", "20"]) == 0
    second = {p["household_ref"]: p["municipality_id"] for p in _proposals(home, "r2")}
    assert accepted["household_ref"] not in second, "an accepted household leaves the pool"
    assert second.get(declined["household_ref"]) != declined["municipality_id"], "a declined pair is never proposed again"
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        before, after = (
            con.execute(
                "SELECT capacity_persons FROM round_municipalities WHERE round_id = ? AND municipality_id = ?",
                [r, accepted["municipality_id"]],
            ).fetchone()[0]
            for r in ("r1", "r2")
        )
    assert after == before - int(accepted["persons"])


def test_free_text_in_a_decisions_code_column_is_quarantined_but_not_stored(home: RematchHome, capsys) -> None:  # noqa: ANN001 - pytest fixture
    """Contract D's decision and reason are codes: a sentence typed there is free text, which stays out of the warehouse."""
    reason = "family says the flat is too far from Olena's clinic"
    with (home.landing("decisions") / "decisions-r9.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision", "reason"])
        writer.writerow(["r9", "RM-202607-000001", "01001", "decline", reason])
        writer.writerow(["r9", "RM-202607-000002", "01001", "maybe later", "housing"])
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        stored = con.execute("SELECT * FROM raw_decisions").fetchall()
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1, 2").fetchall()
    assert reason not in str(stored) and "maybe" not in str(stored)
    # Row 2's decision would be kept without its reason, but it names no round: both rules are said (one pass).
    assert rules == [
        (2, "reason", "code list: one of housing/family/work/health/other (or in German: Wohnung, Familie, Arbeit, Gesundheit, Sonstiges)"),
        (2, "round_id", NO_ROUND_RULE),
        (3, "decision", "code list: one of accept/decline (or in German: Annehmen/Angenommen/Zusage, Ablehnen/Abgelehnt/Absage)"),
    ]
    # `rematch ingest` says so, by file, row, column and rule, without the text.
    err = capsys.readouterr().err
    assert "quarantined: decisions-r9.csv, row 2, column reason: code list: one of housing/family/work/health/other (or in German: Wohnung, Familie, Arbeit, Gesundheit, Sonstiges)" in err
    assert "quarantined: decisions-r9.csv, row 3, column decision: code list" in err and reason not in err


def _ingest_decisions(home: RematchHome, rows: list[list[str]]) -> tuple[list[tuple], list[tuple]]:
    """A decisions file of rows landed and ingested: the stored raw rows and the decisions' quarantine lines."""
    with (home.landing("decisions") / "decisions-r9.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_pseudonym", "municipality_id", "decision", "reason"])
        writer.writerows(rows)
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        stored = con.execute("SELECT * FROM raw_decisions").fetchall()
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1").fetchall()
    return stored, rules


def test_a_reference_typed_where_a_decision_wants_a_pseudonym_is_quarantined_but_not_stored(home: RematchHome) -> None:
    """household_pseudonym holds our H- pseudonyms only: a household reference or a name typed there is identifying."""
    typed = "RM-202607-000042 Olena"
    stored, rules = _ingest_decisions(home, [["r9", typed, "01001", "decline", "housing"], ["r9", "H-0123456789abcdef0123", "01001", "accept", ""]])
    assert typed not in str(stored) and "H-0123456789abcdef0123" in str(stored)
    assert rules == [
        (2, "household_pseudonym", "format: a household pseudonym (H- and 20 hex digits)"),
        (3, "round_id", "reference: no round with this id has proposals"),  # a well-formed pseudonym, but no round r9
    ]


def test_a_name_typed_as_the_round_id_is_quarantined_but_not_stored(home: RematchHome, capsys) -> None:  # noqa: ANN001 - pytest fixture
    """A round id has a closed shape (the `rounds` partition's rule): a name typed in its column is identifying.

    Found by a leak sweep of a data home: `Bohdan Kovalenko` typed as a decision's round_id was stored as typed
    in raw_decisions, where every other column of contract D withholds what lacks its shape.
    """
    typed = "Bohdan Kovalenko"
    stored, rules = _ingest_decisions(home, [[typed, "H-0123456789abcdef0123", "01001", "decline", "housing"], ["r9", "H-0123456789abcdef0123", "01001", "accept", ""]])
    assert typed not in str(stored) and "r9" in str(stored)
    assert rules == [
        (2, "round_id", ROUND_ID_FORMAT_RULE),
        (3, "round_id", "reference: no round with this id has proposals"),  # well-formed, but no round r9
    ]
    err = capsys.readouterr().err
    assert f"quarantined: decisions-r9.csv, row 2, column round_id: {ROUND_ID_FORMAT_RULE}" in err and typed not in err


def test_linked_households_answered_differently_or_in_part_are_quarantined_until_their_group_agrees(
    home: RematchHome, first_round: list[dict[str, str]]
) -> None:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        pair = con.execute(
            "SELECT list(household_pseudonym ORDER BY household_pseudonym) FROM round_households h"
            " WHERE round_id = 'r1' AND household_pseudonym IN (SELECT household_pseudonym FROM proposals WHERE round_id = 'r1')"
            " GROUP BY link_group HAVING count(*) = 2 ORDER BY 1 LIMIT 1"
        ).fetchone()[0]
        place = dict(con.execute("SELECT household_pseudonym, municipality_id FROM proposals WHERE round_id = 'r1'").fetchall())

    def decide(name: str, rows: list[tuple[str, str]]) -> list[tuple]:
        with (home.landing("decisions") / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["round_id", "household_pseudonym", "municipality_id", "decision", "reason"])
            writer.writerows(["r1", h, place[h], d, ""] for h, d in rows)
        assert main(["ingest"]) == 0
        with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
            kept = con.execute("SELECT household_pseudonym, decision FROM decisions ORDER BY 1").fetchall()
            rules = con.execute("SELECT file_name, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1").fetchall()
        return kept, rules

    kept, rules = decide("split.csv", [(pair[0], "accept"), (pair[1], "decline")])
    assert kept == [] and rules == [("split.csv", "decision", LINKED_DECISIONS_RULE)] * 2
    # The second file answers both alike; the first one's rows are superseded per household (latest wins).
    kept, rules = decide("together.csv", [(pair[0], "accept"), (pair[1], "accept")])
    assert kept == [(pair[0], "accept"), (pair[1], "accept")] and rules == []


def test_erasure_removes_a_household_everywhere(home: RematchHome, first_round: list[dict[str, str]]) -> None:
    report = home.round_dir("r1") / "report.html"
    # Households the report shows (it lists the first proposals only; proposals.csv has them all).
    listed = [p["household_ref"] for p in first_round if pseudonym(home.secret(), "household", p["household_ref"]).encode() in report.read_bytes()]
    assert len(listed) >= 3
    target = listed[0]
    shown = pseudonym(home.secret(), "household", target)
    others = [pseudonym(home.secret(), "household", ref) for ref in listed[1:3]]
    assert main(["erase", target]) == 0
    # The report is rendered again without it; the other households stay in it.
    assert shown.encode() not in report.read_bytes() and all(o.encode() in report.read_bytes() for o in others)
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM household_identity WHERE household_ref = ?", [target]).fetchone()[0] == 0
        erased = con.execute("SELECT household_pseudonym FROM erasures").fetchone()[0]
    assert erased == shown
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        tables = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE column_name = 'household_pseudonym' AND table_name <> 'erasures'"
        ).fetchall()
        assert len(tables) >= 5
        for table, column in tables:
            assert con.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = ?', [erased]).fetchone()[0] == 0, table
        assert con.execute("SELECT count(*) FROM erasures WHERE household_pseudonym = ?", [erased]).fetchone()[0] == 1


def test_a_linked_household_waits_while_its_partner_is_not_in_the_pool() -> None:
    import polars as pl

    from rematch_pipeline.assets.matching import complete_link_groups

    households = pl.DataFrame({"household_pseudonym": ["H-a", "H-b", "H-c"], "link_group": ["H-a", "H-a", "H-c"]})
    sizes = pl.DataFrame({"link_group": ["H-a", "H-c"], "group_size": [3, 1]}, schema={"link_group": pl.Utf8, "group_size": pl.Int64})
    kept, held = complete_link_groups(households, sizes)
    assert kept["household_pseudonym"].to_list() == ["H-c"]
    assert sorted(held["household_pseudonym"].to_list()) == ["H-a", "H-b"]


def _files_with(folder: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


def test_erasure_rewrites_the_archived_and_landed_exports_and_the_proposals(home: RematchHome, first_round: list[dict[str, str]], capsys) -> None:  # noqa: ANN001 - pytest fixture
    households = next(home.landing("households").glob("households_*.csv")).read_text()
    linked = {ref for row in csv.DictReader(households.splitlines()) for ref in (row["linked_household_refs"] or "").split()}
    target = next(p["household_ref"] for p in first_round if p["household_ref"] not in linked).encode()
    # Two rejected exports (a renamed column): one names the household, in a semicolon CSV; one does not.
    renamed = households.replace("household_ref,", "household_reference,", 1)
    (home.landing("households") / "households_broken.csv").write_text(renamed.replace(",", ";"), encoding="utf-8-sig")
    (home.landing("households") / "households_other.csv").write_text(
        "\n".join(line for line in renamed.splitlines() if target.decode() not in line) + "\n"
    )
    # A rejected members file (a renamed column) with the household's members only: no reference, its submission id.
    submission = next(row["submission_id"] for row in csv.DictReader(households.splitlines()) if row["household_ref"] == target.decode())
    members = next(home.landing("households").glob("members_*.csv")).read_text().splitlines()
    mine = [line for line in members[1:] if line.startswith(submission + ",")]
    assert mine and target not in "".join(mine).encode()
    (home.landing("households") / "members_broken.csv").write_text("\n".join([members[0].replace("member_name", "member_nam"), *mine]) + "\n")
    capsys.readouterr()
    assert main(["ingest"]) == 1
    assert "3 files rejected" in capsys.readouterr().err
    assert _files_with(home.archive, target) and _files_with(home.landing("households"), target)
    archived = sorted(p.name for p in home.archive.iterdir())
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        raw_before = con.execute("SELECT count(*) FROM raw_households").fetchone()[0]

    capsys.readouterr()
    assert main(["erase", target.decode()]) == 0
    assert "2 rejected exports naming the household deleted" in capsys.readouterr().out

    assert _files_with(home.archive, target) == [] and _files_with(home.landing("households"), target) == []
    assert _files_with(home.path / "rounds", target) == []
    assert (home.landing("households") / "households_other.csv").exists()
    assert not (home.landing("households") / "households_broken.csv").exists()
    assert not (home.landing("households") / "members_broken.csv").exists()
    proposals = home.path / "rounds" / "r1" / "proposals.csv"
    assert len(_proposals(home, "r1")) == len(first_round) - 1
    assert proposals.stat().st_mode & 0o777 == 0o600
    # The rewritten exports replace their originals; the rejected one naming the household is gone.
    assert len(list(home.archive.iterdir())) == len(archived) - 2 and sorted(p.name for p in home.archive.iterdir()) != archived
    # The rewritten exports are known: ingesting again loads nothing, and the household stays erased.
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_households").fetchone()[0] == raw_before - 1
        statuses = dict(con.execute("SELECT status, count(*) FROM ingestion_log GROUP BY status").fetchall())
        logged = {r[0] for r in con.execute("SELECT archived_as FROM ingestion_log").fetchall()}
        unarchived = con.execute("SELECT file_name FROM ingestion_log WHERE archived_as IS NULL").fetchall()
    assert sorted(unarchived) == [("households_broken.csv",), ("members_broken.csv",)]
    assert statuses.get("erasure_copy") == 2  # the households and the members file
    assert {p.name for p in home.archive.iterdir()} <= logged
    assert main(["round", "r2", "--period", "2026-07", "--time-limit", "20"]) == 0


def test_decisions_recorded_from_the_ui_job_shape_the_next_round(home: RematchHome, first_round: list[dict[str, str]]) -> None:
    import dagster as dg

    from rematch_pipeline.definitions import build_definitions
    from rematch_pipeline.runs import RunFailed, execute

    (accepted_h, accepted_m), (declined_h, declined_m) = [
        (pseudonym(home.secret(), "household", p["household_ref"]), p["municipality_id"]) for p in _unlinked(home, first_round)[:2]
    ]
    defs = build_definitions(home)

    def record(entries: list[dict[str, str]]) -> None:
        with dg.DagsterInstance.get() as instance:
            execute(defs, instance, "record_decisions_job", run_config={"ops": {"record_decisions": {"config": {"round_id": "r1", "decisions": entries}}}})

    # All or none: one entry that answers no proposal, one answering a household twice, and nothing is written. (A word
    # that is no decision is refused by Dagster's config check before the run: tests/assets/test_ui.py.)
    with pytest.raises(RunFailed) as failed:
        record([
            {"household_pseudonym": accepted_h, "municipality_id": accepted_m, "decision": "accept"},
            {"household_pseudonym": declined_h, "municipality_id": "99999", "decision": "decline"},
            {"household_pseudonym": accepted_h, "municipality_id": accepted_m, "decision": "decline"},
            {"household_pseudonym": "H-0123456789abcdef0123", "municipality_id": accepted_m, "decision": "accept"},
        ])
    # Entries counted from 0, as Dagster's own config errors and locked_pairs[i] count them in the same Launchpad.
    # Each names the field to correct: the municipality of a proposed household, or a household not proposed.
    assert "decisions[1].municipality_id: reference: not a proposal" in str(failed.value)
    assert f"decisions[3].household_pseudonym: {NOT_PROPOSED_HOUSEHOLD_RULE}" in str(failed.value)
    assert "decisions[2].household_pseudonym: duplicate: the same household as decisions[0]" in str(failed.value)
    assert "decisions[0]." not in str(failed.value) and "99999" not in str(failed.value)  # entry 0 itself is fine
    assert list(home.landing("decisions").iterdir()) == []

    record([
        {"household_pseudonym": accepted_h, "municipality_id": accepted_m, "decision": "accept"},
        {"household_pseudonym": declined_h, "municipality_id": declined_m, "decision": "decline", "reason": "family"},
    ])
    written = list(home.landing("decisions").iterdir())
    assert len(written) == 1 and not any(p["household_ref"].encode() in written[0].read_bytes() for p in first_round)
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        recorded = con.execute("SELECT household_pseudonym, municipality_id, decision FROM decisions ORDER BY decision").fetchall()
    assert recorded == [(accepted_h, accepted_m, "accept"), (declined_h, declined_m, "decline")]
    assert main(["round", "r2", "--period", "2026-07", "--time-limit", "20"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        second = dict(con.execute("SELECT household_pseudonym, municipality_id FROM proposals WHERE round_id = 'r2'").fetchall())
    assert accepted_h not in second and second.get(declined_h) != declined_m

    # The next round's report says so. Before, it said nothing of either, and showed the accepted
    # municipality's capacity as what was left after the acceptance, with a note claiming otherwise.
    from rematch_pipeline.assets.reports import round_report_data

    persons = next(int(p["persons"]) for p in _unlinked(home, first_round)[:1])
    report = (home.path / "rounds" / "r2" / "report.html").read_text()
    person_word = "person" if persons == 1 else "persons"
    assert f"1 household ({persons} {person_word}) accepted a proposal of an earlier round of this intake period" in report
    again = int(declined_h in second)
    assert f"1 household of this round declined an earlier proposal: {again} {'is' if again == 1 else 'are'} proposed elsewhere now" in report
    assert accepted_h not in report and declined_h not in report.split("Decisions on earlier proposals")[1].split("</section>")[0]
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        offered = con.execute(
            "SELECT capacity_persons FROM round_municipalities WHERE round_id = 'r1' AND municipality_id = ?", [accepted_m]
        ).fetchone()[0]
        first, after = (
            round_report_data(con, r).municipalities.filter(municipality_id=accepted_m).row(0, named=True) for r in ("r1", "r2")
        )
    assert first["accepted_persons"] == 0 and after["accepted_persons"] == persons and after["accepted_households"] == 1
    assert first["capacity_persons"] == after["capacity_persons"] == offered, "the capacity offered for the period, in both rounds"
    assert after["used_persons"] >= persons
    table = report.split('<section id="municipalities">')[1].split("</section>")[0]
    row = table.split(f'<td class="id">{accepted_m}</td>')[1].split("</tr>")[0]
    cells = [c.split(">", 1)[1] for c in row.split("</td>")[1:5]]  # households, persons placed, accepted earlier, used / capacity
    assert cells[2] == str(persons) and cells[3].split(" (")[0].split(" / ")[1] == str(offered), cells


def test_erasure_unlinks_the_households_that_named_it_and_leaves_no_bytes_behind(home: RematchHome, first_round: list[dict[str, str]], capsys) -> None:  # noqa: ANN001 - pytest fixture
    households = list(csv.DictReader(next(home.landing("households").glob("households_*.csv")).read_text().splitlines()))
    partner = next(row for row in households if row["linked_household_refs"])
    target = partner["linked_household_refs"].split()[0]
    control = next(row["household_ref"] for row in households if row["household_ref"] not in (target, partner["household_ref"]))
    partner_pseudonym = pseudonym(home.secret(), "household", partner["household_ref"])
    target_pseudonym = pseudonym(home.secret(), "household", target)
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM households WHERE household_pseudonym = ?", [partner_pseudonym]).fetchone()[0] == 1
    assert home.identity_path.name in _files_with(home.path, target.encode())

    capsys.readouterr()
    assert main(["erase", target]) == 0
    assert "had named it as linked: the link is removed" in capsys.readouterr().out

    # No file of the data home holds the reference: not the exports, not the partner's cell, and not
    # the deleted rows' pages of the DuckDB files. The same search finds a reference that stays.
    assert _files_with(home.path, target.encode()) == []
    assert home.identity_path.name in _files_with(home.path, control.encode())
    assert list(home.path.rglob("*.compact")) == []
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM household_identity WHERE household_ref = ?", [partner["household_ref"]]).fetchone()[0] == 1
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM households WHERE list_contains(linked_household_pseudonyms, ?)", [target_pseudonym]).fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM household_features WHERE link_group = ?", [target_pseudonym]).fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM round_households WHERE link_group = ?", [target_pseudonym]).fetchone()[0] == 0

    # The partner is still a valid household on the next validation, no longer waiting for the erased one.
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM households WHERE household_pseudonym = ?", [partner_pseudonym]).fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM quarantine WHERE rule LIKE 'reference: a linked household%'").fetchone()[0] == 0


def test_accepted_persons_count_towards_the_minimum_intake_of_the_period() -> None:
    """min_persons is per intake period: a later round must not ask for the whole minimum again.

    Before, a municipality (capacity 71, minimum 8) that had accepted 64 persons had 7 places left
    and a minimum of 8 in the next round, so it could receive nobody for the rest of the period.
    """
    import polars as pl

    from rematch_pipeline.assets.matching import remaining_capacity
    from rematch_pipeline.features import RESOURCES

    caps = {r: [20, 20, 20] for r in RESOURCES if r != "persons"}
    municipalities = pl.DataFrame({"municipality_id": ["03241", "05170", "09162"], "capacity_persons": [71, 30, 30], "min_persons": [8, 8, 0], **caps})
    accepted = pl.DataFrame({"municipality_id": ["03241", "05170"], **{r: [64, 5] if r == "persons" else [1, 1] for r in RESOURCES}})
    left = remaining_capacity(municipalities, accepted).sort("municipality_id")
    assert left["capacity_persons"].to_list() == [7, 25, 30]
    assert left["min_persons"].to_list() == [0, 3, 0]


def test_a_decision_naming_two_different_households_is_quarantined(home: RematchHome, first_round: list[dict[str, str]]) -> None:
    """Contract D names who answers by household_ref or pseudonym; a row with both that disagree is not guessed.

    Before, the reference silently won: a row whose pseudonym named household B declined for household A.
    """
    a, b = _unlinked(home, first_round)[:2]
    with (home.landing("decisions") / "decisions-r1.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "household_pseudonym", "municipality_id", "decision", "reason"])
        writer.writerow(["r1", a["household_ref"], pseudonym(home.secret(), "household", b["household_ref"]), a["municipality_id"], "decline", "work"])
        writer.writerow(["r1", b["household_ref"], pseudonym(home.secret(), "household", b["household_ref"]), b["municipality_id"], "accept", ""])
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        recorded = con.execute("SELECT household_pseudonym, decision FROM decisions").fetchall()
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions'").fetchall()
    assert recorded == [(pseudonym(home.secret(), "household", b["household_ref"]), "accept")]
    assert rules == [(2, "household_pseudonym", "reference: household_ref and household_pseudonym name different households")]


def test_a_file_that_answers_one_proposal_twice_differently_counts_neither(home: RematchHome, first_round: list[dict[str, str]]) -> None:
    """Accept in one row and decline in the next for the same household: which one was meant is
    unknown (the Launchpad job refuses the same). Before, the last valid row counted silently, and
    where the decline's free-text reason was quarantined, the accept counted alone."""
    a, b = _unlinked(home, first_round)[:2]
    with (home.landing("decisions") / "decisions-r1.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "household_pseudonym", "municipality_id", "decision", "reason"])
        writer.writerow(["r1", a["household_ref"], "", a["municipality_id"], "accept", ""])
        writer.writerow(["r1", "", pseudonym(home.secret(), "household", a["household_ref"]), a["municipality_id"], "decline", "Zzyzx Quuxley rief an"])
        writer.writerow(["r1", b["household_ref"], "", b["municipality_id"], "accept", ""])
        writer.writerow(["r1", b["household_ref"], "", b["municipality_id"], "accept", ""])  # the same answer twice is fine
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        recorded = con.execute("SELECT household_pseudonym, decision FROM decisions").fetchall()
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1, 2").fetchall()
    assert recorded == [(pseudonym(home.secret(), "household", b["household_ref"]), "accept")]
    duplicate = "duplicate: the file answers this proposal more than once, differently (which answer is meant is unknown)"
    assert rules == [(2, "decision", duplicate), (3, "decision", duplicate), (3, "reason", "code list: one of housing/family/work/health/other (or in German: Wohnung, Familie, Arbeit, Gesundheit, Sonstiges)")]


def test_a_household_that_accepts_proposals_of_two_rounds_counts_neither_until_one_is_declined(
    home: RematchHome, first_round: list[dict[str, str]]
) -> None:
    """Two rounds run on the same pool (a comparison, say) propose the same households. Accepting one household
    in both counted its persons at both places (round_candidates sums every accept of the period) while the
    household was kept at one of them; it can go to one municipality only."""
    assert main(["round", "r2", "--period", "2026-07", "--time-limit", "20"]) == 0
    second = {p["household_ref"]: p["municipality_id"] for p in _proposals(home, "r2")}
    both = next(p for p in _unlinked(home, first_round) if p["household_ref"] in second)
    other = next(p for p in _unlinked(home, first_round) if p is not both)
    path = home.landing("decisions") / "decisions-twice.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision", "reason"])
        writer.writerow(["r1", both["household_ref"], both["municipality_id"], "accept", ""])
        writer.writerow(["r2", both["household_ref"], second[both["household_ref"]], "accept", ""])
        writer.writerow(["r1", other["household_ref"], other["municipality_id"], "accept", ""])
    assert main(["ingest"]) == 0
    who = pseudonym(home.secret(), "household", both["household_ref"])
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        kept = con.execute("SELECT household_pseudonym FROM decisions").fetchall()
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1").fetchall()
        accepted = con.execute("SELECT accepted_municipality_id FROM household_features WHERE household_pseudonym = ?", [who]).fetchone()[0]
    assert kept == [(pseudonym(home.secret(), "household", other["household_ref"]),)]
    assert [(row, column) for row, column, _ in rules] == [(2, "decision"), (3, "decision")]
    assert all(rule.startswith("duplicate: the household accepted proposals of more than one round") for _, _, rule in rules)
    assert accepted is None
    # Declining one of them (a later file) lets the other count, once.
    with (home.landing("decisions") / "decisions-fix.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision", "reason"])
        writer.writerow(["r2", both["household_ref"], second[both["household_ref"]], "decline", "other"])
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT round_id, decision FROM decisions WHERE household_pseudonym = ? ORDER BY 1", [who]).fetchall() == [
            ("r1", "accept"), ("r2", "decline")]
        assert con.execute("SELECT count(*) FROM quarantine WHERE \"table\" = 'decisions'").fetchone()[0] == 0
    # The Launchpad job refuses such an accept before it writes anything.
    import dagster as dg

    from rematch_pipeline.definitions import build_definitions
    from rematch_pipeline.runs import RunFailed, execute

    entry = {"household_pseudonym": who, "municipality_id": second[both["household_ref"]], "decision": "accept"}
    with dg.DagsterInstance.get() as instance, pytest.raises(RunFailed) as failed:
        execute(build_definitions(home), instance, "record_decisions_job",
                run_config={"ops": {"record_decisions": {"config": {"round_id": "r2", "decisions": [entry]}}}})
    assert "decisions[0].decision: duplicate: the household accepted a proposal of round r1" in str(failed.value)
    assert who not in str(failed.value)
    assert not list(home.landing("decisions").glob("*-ui-*.csv"))


def test_a_sentence_typed_as_the_launchpads_reason_is_refused_before_dagster_stores_the_run(home: RematchHome) -> None:
    """The Launchpad's `reason` takes the contract's codes only. Dagster keeps a run's config in its run storage,
    so the op refusing a sentence there came too late: the run, with the sentence (here a family name and a place),
    stayed in `dagster/history/runs.db` and in the UI's run history. Now Dagster's config check refuses it and no
    run is made."""
    import dagster as dg

    from rematch_pipeline.definitions import build_definitions
    from rematch_pipeline.runs import RunFailed, execute

    sentence = "Familie Petrenko zieht zu Verwandten nach Kiel"
    entry = {"household_pseudonym": "H-0123456789abcdef0123", "municipality_id": "01002", "decision": "decline", "reason": sentence}
    with dg.DagsterInstance.get() as instance:
        with pytest.raises(RunFailed) as failed:
            execute(build_definitions(home), instance, "record_decisions_job",
                    run_config={"ops": {"record_decisions": {"config": {"round_id": "r1", "decisions": [entry]}}}})
        runs = instance.get_runs()
    assert str(failed.value) == (
        "record_decisions_job not started, fix the run config: ops.record_decisions.config.decisions[0].reason:"
        " code: not one of housing, family, work, health, other"
    )
    assert runs == [] and list(home.landing("decisions").iterdir()) == []
    stored = [p for p in home.dagster_home.rglob("*") if p.is_file() and b"Petrenko" in p.read_bytes()]
    assert stored == []


def _land_accept(home: RematchHome, proposal: dict[str, str]) -> None:
    """A decisions file accepting one proposal of round r1, landed."""
    with (home.landing("decisions") / "decisions-r1.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision"])
        writer.writerow(["r1", proposal["household_ref"], proposal["municipality_id"], "accept"])


def test_proposals_csv_saved_from_excel_as_a_decisions_workbook_is_read(home: RematchHome, first_round: list[dict[str, str]], capsys) -> None:  # noqa: ANN001 - pytest fixture
    """What a coordinator makes of proposals.csv: round_id and decision added, its own columns (persons, score,
    locked) kept, columns reordered, codes typed with capitals and spaces, the AGS stored as a number by Excel,
    saved as XLSX. Before, the file was refused for `unexpected columns persons, score, locked`, and once those
    were deleted every `Accept`, `DECLINE ` and `Family` was quarantined as not on the code list."""
    assert set(first_round[0]) - {"household_ref", "municipality_id"} == set(PROPOSALS_ONLY_COLUMNS)
    a, b = _unlinked(home, first_round)[:2]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Decision", "household_ref", "Persons", "municipality_id", "municipality_name", "score", "locked", "round_id", "Reason"])
    sheet.append(["Accept", a["household_ref"], int(a["persons"]), int(a["municipality_id"]), a["municipality_name"], float(a["score"]), "no", "r1", None])
    sheet.append(["DECLINE ", b["household_ref"], int(b["persons"]), int(b["municipality_id"]), b["municipality_name"], float(b["score"]), "no", "r1", "Family"])
    book.save(home.landing("decisions") / "decisions-r1.xlsx")
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        recorded = con.execute("SELECT household_pseudonym, municipality_id, decision, reason FROM decisions ORDER BY decision").fetchall()
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions'").fetchall()
    assert rules == []
    assert recorded == [
        (pseudonym(home.secret(), "household", a["household_ref"]), a["municipality_id"], "accept", None),
        (pseudonym(home.secret(), "household", b["household_ref"]), b["municipality_id"], "decline", "family"),
    ]
    # Any other column (a note, which may hold anything) still stops the file, saying what a decisions file holds.
    with (home.landing("decisions") / "decisions-r1-notes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision", "Bemerkung"])
        writer.writerow(["r1", a["household_ref"], a["municipality_id"], "accept", "ruft zurück"])
    capsys.readouterr()
    assert main(["ingest"]) == 1
    err = capsys.readouterr().err
    assert "rejected: decisions-r1-notes.csv, row 1: header: unexpected columns Bemerkung (a decisions file holds round_id," in err
    assert "ruft" not in err


def test_an_offer_lowered_below_what_was_accepted_there_is_said_and_shown_as_made(
    home: RematchHome, first_round: list[dict[str, str]], tmp_path: Path, capsys  # noqa: ANN001 - pytest fixture
) -> None:
    """A municipality sends a corrected offer mid-period, below what proposals accepted there already use. The round
    proposes nothing more there (as before) and now says so, and municipalities.csv shows the offer as made, the
    accepted use beside it and a negative `left`. Before, nothing was said, and the file showed the accepted use as
    the offer (`persons_offered` 9 for an offer of 5), as if the municipality had offered what was accepted."""
    accepted = _unlinked(home, first_round)[0]
    place = accepted["municipality_id"]
    _land_accept(home, accepted)
    offers = tmp_path / "sample" / "municipalities" / "municipalities_2026-07.csv"
    with offers.open(encoding="utf-8-sig") as handle:
        rows = [r for r in csv.DictReader(handle) if r["municipality_id"] == place]
    offer = int(accepted["persons"]) - 1
    rows[0] |= {"submitted_at": "2026-07-28T09:00:00", "capacity_persons": str(offer), "min_persons": "0"}
    with (home.landing("municipalities") / "municipalities-correction.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(rows[0])
    assert main(["ingest"]) == 0
    capsys.readouterr()
    assert main(["round", "r2", "--period", "2026-07", "--time-limit", "20"]) == 0
    err = capsys.readouterr().err
    assert (
        f"municipality {place}: proposals accepted earlier in the period use more than its latest offer"
        f" (persons {accepted['persons']} of {offer}"
    ) in err
    assert place not in {p["municipality_id"] for p in _proposals(home, "r2")}
    with (home.path / "rounds" / "r2" / "municipalities.csv").open(encoding="utf-8-sig") as handle:
        row = next(r for r in csv.DictReader(handle) if r["municipality_id"] == place)
    assert (row["persons_offered"], row["persons_used_accepted_earlier"], row["persons_left"]) == (str(offer), accepted["persons"], "-1")
    assert "persons" in row["full"].split()
    report = (home.path / "rounds" / "r2" / "report.html").read_text()
    assert "Persons (Personen): 1 municipality uses more than offered now: proposals accepted earlier in the period exceed" in report


def test_an_erased_household_keeps_the_places_it_accepted_for_the_period(home: RematchHome, first_round: list[dict[str, str]]) -> None:
    """Erasure takes the household out of everything, but the family took its places: the next round of the period
    must not offer them again. Before, erasing an accepted household gave its municipality its places back."""
    accepted = _unlinked(home, first_round)[0]
    place = accepted["municipality_id"]
    _land_accept(home, accepted)
    assert main(["ingest"]) == 0
    assert main(["erase", accepted["household_ref"]]) == 0
    assert main(["ingest"]) == 0
    assert main(["round", "r2", "--period", "2026-07", "--time-limit", "20"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        before, after = (
            con.execute("SELECT capacity_persons FROM round_municipalities WHERE round_id = ? AND municipality_id = ?", [r, place]).fetchone()[0]
            for r in ("r1", "r2")
        )
        assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0
        assert after == before - int(accepted["persons"])
        kept = con.execute("SELECT * FROM erased_accepted").pl()
    assert kept.select("period", "municipality_id", "persons").rows() == [("2026-07", place, int(accepted["persons"]))]
    assert not {"household_pseudonym", "household_ref"} & set(kept.columns)
    with (home.path / "rounds" / "r2" / "municipalities.csv").open(encoding="utf-8-sig") as handle:
        row = next(r for r in csv.DictReader(handle) if r["municipality_id"] == place)
    assert (row["persons_used_accepted_earlier"], row["households_accepted_earlier"]) == (accepted["persons"], "1")


def test_a_decisions_file_in_german_is_read_and_a_word_off_the_list_is_quarantined_unstored(
    home: RematchHome, first_round: list[dict[str, str]], capsys  # noqa: ANN001 - pytest fixture
) -> None:
    """German coordinators write contract D in German: `Runde;Haushalts-Nr.;Kommune;Entscheidung;Grund` with `Zusage`,
    `abgelehnt`, `Familie` was refused whole as `not a … template`, without a hint. Now contract D's closed list of
    German headings and codes is read (CSV and XLSX), stored as our codes; a word not on it is quarantined by file,
    row, column and rule, never stored; a German header with a heading off the list is told what a decisions file holds."""
    a, b, c, d = _unlinked(home, first_round)[:4]
    unknown = "vielleicht nach Kiel"
    with (home.landing("decisions") / "entscheidungen-r1.csv").open("w", newline="", encoding="cp1252") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Runde", "Haushalts-Nr.", "Kommune", "Entscheidung", "Grund"])
        writer.writerow(["r1", a["household_ref"], a["municipality_id"], "Zusage", ""])
        writer.writerow(["r1", b["household_ref"], b["municipality_id"], " abgelehnt ", "Familie"])
        writer.writerow(["r1", c["household_ref"], c["municipality_id"], unknown, "Sonstiges"])
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Runde", "Haushalt", "AGS", "Entscheidung", "Grund"])
    sheet.append(["r1", d["household_ref"], int(d["municipality_id"]), "ABLEHNEN", "wohnung"])
    book.save(home.landing("decisions") / "entscheidungen-r1.xlsx")
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        recorded = con.execute("SELECT household_pseudonym, municipality_id, decision, reason FROM decisions").fetchall()
        rules = con.execute("SELECT file_name, file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions'").fetchall()
        stored = con.execute("SELECT * FROM raw_decisions").fetchall()
    who = {p["household_ref"]: pseudonym(home.secret(), "household", p["household_ref"]) for p in (a, b, d)}
    assert sorted(recorded) == sorted([
        (who[a["household_ref"]], a["municipality_id"], "accept", None),
        (who[b["household_ref"]], b["municipality_id"], "decline", "family"),
        (who[d["household_ref"]], d["municipality_id"], "decline", "housing"),
    ])
    assert rules == [("entscheidungen-r1.csv", 4, "decision", "code list: one of accept/decline (or in German: Annehmen/Angenommen/Zusage, Ablehnen/Abgelehnt/Absage)")]
    assert unknown not in str(stored)
    err = capsys.readouterr().err
    assert "quarantined: entscheidungen-r1.csv, row 4, column decision: code list: one of accept/decline (or in German: Annehmen/Angenommen/Zusage, Ablehnen/Abgelehnt/Absage)" in err and unknown not in err

    # A German heading not on the list: the file stops, saying what a decisions file holds, in German too.
    with (home.landing("decisions") / "entscheidungen-r1-b.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Runde", "Haushalt", "Gemeinde", "Beschluss", "Grund"])
        writer.writerow(["r1", a["household_ref"], a["municipality_id"], "Zusage", ""])
    assert main(["ingest"]) == 1
    err = capsys.readouterr().err
    assert "rejected: entscheidungen-r1-b.csv, row 1: header: not a municipalities, households, members or decisions template;" \
        " nearest: decisions (no column decision, in German Entscheidung) (a decisions file holds round_id, household_ref or" in err
    assert "in German: Runde, Haushalt or Pseudonym, AGS, Entscheidung and Grund" in err


def test_a_round_id_excel_made_a_date_of_is_quarantined_saying_so(home: RematchHome, capsys) -> None:  # noqa: ANN001 - pytest fixture
    """A round id typed as 2026-07 in Excel becomes a date cell; the decision was quarantined as `round_id: format: a round
    id (1-64 letters …)`, which did not say why. The rule now says the cell is a date, without the date."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["round_id", "household_pseudonym", "municipality_id", "decision"])
    sheet.append([dt.datetime(2026, 7, 1), "H-0123456789abcdef0123", "01001", "accept"])
    sheet["A2"].number_format = "mmm-yy"
    sheet.append(["Bohdan Kovalenko", "H-0123456789abcdef0124", "01001", "accept"])
    book.save(home.landing("decisions") / "decisions-juli.xlsx")
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1").fetchall()
        stored = str(con.execute("SELECT * FROM raw_decisions").fetchall())
    dated = "format: the cell is a date (Excel made a date of the round id); format the column as text and type it again"
    assert rules == [(2, "round_id", dated), (3, "round_id", ROUND_ID_FORMAT_RULE)], "a name is no date"
    assert "2026" not in stored and "Kovalenko" not in stored
    err = capsys.readouterr().err
    assert f"quarantined: decisions-juli.xlsx [sheet Sheet], row 2, column round_id: {dated}" in err and "2026-07-01" not in err


def test_a_round_id_excel_made_a_date_of_and_then_a_number_is_quarantined_saying_so(home: RematchHome, capsys) -> None:  # noqa: ANN001 - pytest fixture
    """A round id typed as 2026-07 becomes a date cell; formatted as General afterwards, the cell holds the date's serial
    number (46204), which has a round id's shape, and the decision was quarantined as `no round with this id has
    proposals` without the date hint a date cell gets. A whole number Excel shows as a date of 2000-2099 now gets it
    where no round has that id, never with the number; other unknown ids keep the plain rule."""
    serial = (dt.date(2026, 7, 1) - dt.date(1899, 12, 30)).days  # 46204, Excel's 1900 date system
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["round_id", "household_pseudonym", "municipality_id", "decision"])
    sheet.append([serial, "H-0123456789abcdef0123", "01001", "accept"])
    sheet["A2"].number_format = "General"  # the date cell's format set back to General: the serial shows
    sheet.append(["r9", "H-0123456789abcdef0124", "01001", "accept"])
    sheet.append([12, "H-0123456789abcdef0125", "01001", "accept"])  # a number, but no date of this century
    book.save(home.landing("decisions") / "decisions-juli.xlsx")
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        rules = con.execute("SELECT file_row, \"column\", rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1").fetchall()
    hint = "the id is a number Excel shows as a date"
    assert [(row, column) for row, column, _ in rules] == [(2, "round_id"), (3, "round_id"), (4, "round_id")]
    assert rules[0][2].startswith(NO_ROUND_RULE + "; " + hint) and "format the column as text and type the round id again" in rules[0][2]
    assert rules[1][2] == rules[2][2] == NO_ROUND_RULE
    err = capsys.readouterr().err
    assert f"quarantined: decisions-juli.xlsx [sheet Sheet], row 2, column round_id: {NO_ROUND_RULE}; {hint}" in err
    assert str(serial) not in err and "2026-07" not in err


def test_a_round_named_by_a_number_takes_its_decisions_from_a_number_cell(home: RematchHome, tmp_path: Path) -> None:
    """The date hint is for a number no round has: a round an operator named 46204 (a number Excel would show as
    2026-07-01) takes the decision of a workbook whose round_id cell holds that number, as for any round id."""
    out = tmp_path / "sample"
    assert main(["sample", "--households", "40", "--municipalities", "6", "--seed", "5", "--out", str(out)]) == 0
    land(home, out)
    assert main(["ingest"]) == 0
    assert main(["round", "46204", "--period", "2026-07", "--time-limit", "10"]) == 0
    proposal = _unlinked(home, _proposals(home, "46204"), "46204")[0]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["round_id", "household_ref", "municipality_id", "decision"])
    sheet.append([46204, proposal["household_ref"], proposal["municipality_id"], "accept"])
    sheet["A2"].number_format = "General"
    book.save(home.landing("decisions") / "decisions-46204.xlsx")
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT round_id, decision FROM decisions").fetchall() == [("46204", "accept")]
        assert con.execute("SELECT count(*) FROM quarantine WHERE \"table\" = 'decisions'").fetchone() == (0,)


def test_a_german_decisions_workbook_lacking_a_column_is_told_which_in_german(home: RematchHome, capsys) -> None:  # noqa: ANN001 - pytest fixture
    """A decisions workbook headed `Haushalt`, `AGS`, `Entscheidung` (no `Runde`) was taken for a sheet without template
    columns and refused as `no sheet with a template header`, naming neither the sheet nor the missing column. Now its
    sheet is told the column it lacks with its German heading; a code-list sheet headed `Entscheidung`, `Grund` beside
    it is still left out, and nothing of the file is stored."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Entscheidungen"
    sheet.append(["Haushalt", "AGS", "Entscheidung"])
    sheet.append(["RM-202607-000042", "09162", "Zusage"])
    codes = book.create_sheet("Listen")
    codes.append(["Entscheidung", "Grund"])
    codes.append(["Zusage", "Wohnung"])
    book.save(home.landing("decisions") / "entscheidungen.xlsx")
    assert main(["ingest"]) == 1
    err = capsys.readouterr().err
    assert "rejected: entscheidungen.xlsx [sheet Entscheidungen], row 1: header: not a municipalities, households, members or" \
        " decisions template; nearest: decisions (no column round_id, in German Runde) (a decisions file holds" in err
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_decisions").fetchone() == (0,)

    # With the round column added, the same workbook is read and its code-list sheet left out and counted.
    sheet.insert_cols(1)
    sheet["A1"], sheet["A2"] = "Runde", "r9"
    book.save(home.landing("decisions") / "entscheidungen-2.xlsx")
    assert main(["ingest"]) == 0
    out = capsys.readouterr()
    assert "sheets without template columns (instructions, code lists): 1" in out.out + out.err
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_decisions").fetchone() == (1,)



def test_a_german_decisions_workbook_lacking_a_column_under_a_title_row_is_told_both(home: RematchHome, capsys) -> None:  # noqa: ANN001 - pytest fixture
    """The same header lacking `Runde`, under a title row typed above it: it was refused as no template at all, the
    title row read as the header and nothing said of either. Now the title row and the missing column are named."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Entscheidungen"
    sheet.append(["Entscheidungen Juli"])
    sheet.append(["Haushalt", "AGS", "Entscheidung"])
    sheet.append(["RM-202607-000042", "09162", "Zusage"])
    book.save(home.landing("decisions") / "entscheidungen.xlsx")
    assert main(["ingest"]) == 1
    err = capsys.readouterr().err
    assert "rejected: entscheidungen.xlsx [sheet Entscheidungen], row 1: header: two header rows (merged title row?); the field" \
        " names must be in row 1 alone; nearest: decisions (no column round_id, in German Runde)" in err
    assert "RM-202607-000042" not in err
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_decisions").fetchone() == (0,)


def test_a_decision_made_before_the_round_was_run_again_is_told_so(home: RematchHome, first_round: list[dict[str, str]], tmp_path: Path) -> None:
    """A round id run again (other weights) replaced proposals.csv; a decisions file made from the first one had
    its rows quarantined as `not a proposal of that round` only, though the proposal was the round's when the file
    was made. Now the rule says the round was run again and when; a pair no run proposed keeps the plain rule, and
    the Launchpad's job says the same."""
    import dagster as dg

    from rematch_pipeline.definitions import build_definitions
    from rematch_pipeline.runs import RunFailed, execute
    from rematch_pipeline.validation import NOT_A_PROPOSAL_RULE

    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\nweight_jobs: 9\nweight_wishes: 0\ntime_limit_seconds: 20\n')
    assert main(["round", "r1", "--config", str(config)]) == 0
    again = {(p["household_ref"], p["municipality_id"]) for p in _proposals(home, "r1")}
    moved = [p for p in _unlinked(home, first_round) if (p["household_ref"], p["municipality_id"]) not in again]
    assert moved, "the weights moved no proposal: the test checks nothing"
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        run_again = con.execute("SELECT strftime(started_at, '%Y-%m-%d %H:%M') FROM rounds WHERE round_id = 'r1'").fetchone()[0]
    with (home.landing("decisions") / "decisions-r1.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round_id", "household_ref", "municipality_id", "decision"])
        writer.writerow(["r1", moved[0]["household_ref"], moved[0]["municipality_id"], "accept"])
        writer.writerow(["r1", moved[0]["household_ref"], "99999", "decline"])  # proposed by no run
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        rules = con.execute("SELECT file_row, rule FROM quarantine WHERE \"table\" = 'decisions' ORDER BY 1").fetchall()
    replaced = (
        f"reference: a proposal of an earlier run of that round, which was run again on {run_again} UTC:"
        " make the decisions from the round's new proposals.csv"
    )
    assert rules == [(2, replaced), (3, NOT_A_PROPOSAL_RULE)]

    entry = {"household_pseudonym": pseudonym(home.secret(), "household", moved[0]["household_ref"]), "municipality_id": moved[0]["municipality_id"], "decision": "accept"}
    with dg.DagsterInstance.get() as instance, pytest.raises(RunFailed) as failed:
        execute(build_definitions(home), instance, "record_decisions_job", run_config={"ops": {"record_decisions": {"config": {"round_id": "r1", "decisions": [entry]}}}})
    # The field to correct: the municipality of a household the round still proposes, else the household.
    field = "municipality_id" if moved[0]["household_ref"] in {ref for ref, _ in again} else "household_pseudonym"
    assert str(failed.value).endswith(f"nothing recorded: decisions[0].{field}: {replaced}")


def test_replaced_proposals_keep_each_pair_a_run_again_no_longer_proposes_once(home: RematchHome, first_round: list[dict[str, str]], tmp_path: Path) -> None:
    """replaced_proposals grew by every proposal at every run again (unchanged parameters included: a national round
    50,000 rows a time) and was never pruned. It now holds each (round, household, municipality) an earlier run
    proposed and the current run does not, once, with the latest run that proposed it; a decision from any earlier
    proposals.csv is still told so."""
    def stored() -> tuple[list[tuple], set[tuple[str, str]]]:
        with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
            rows = con.execute("SELECT household_pseudonym, municipality_id, proposed_at, replaced_at FROM replaced_proposals WHERE round_id = 'r1'").fetchall()
            current = set(con.execute("SELECT household_pseudonym, municipality_id FROM proposals WHERE round_id = 'r1'").fetchall())
        return rows, current

    def pairs(proposals: list[dict[str, str]]) -> set[tuple[str, str]]:
        return {(pseudonym(home.secret(), "household", p["household_ref"]), p["municipality_id"]) for p in proposals}

    first = pairs(first_round)
    # The same parameters again propose the same (determinism): nothing was replaced.
    assert main(["round", "r1", "--period", "2026-07", "--time-limit", "20"]) == 0
    rows, current = stored()
    assert current == first and rows == []
    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\nweight_jobs: 9\nweight_wishes: 0\ntime_limit_seconds: 20\n')
    assert main(["round", "r1", "--config", str(config)]) == 0
    rows, current = stored()
    second = current
    assert first - second, "the weights moved no proposal: the test checks nothing"
    assert sorted((h, m) for h, m, *_ in rows) == sorted(first - second)  # each once, the ones proposed again left out
    # Back to the first weights: the pairs of both earlier runs not proposed now, each once; none of the current run's.
    assert main(["round", "r1", "--period", "2026-07", "--time-limit", "20"]) == 0
    rows, current = stored()
    assert current == first
    assert sorted((h, m) for h, m, *_ in rows) == sorted((first | second) - first)
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        starts = con.execute("SELECT max(replaced_at) FROM replaced_proposals").fetchone()[0]
    assert all(replaced == starts for *_, replaced in rows)  # replaced by the last run again
