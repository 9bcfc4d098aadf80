"""The next export after an erasure: survey tools export every submission each time, so the export of the
following week still holds the erased household unless someone deleted it in the tool too. Ingestion takes
those lines out (the same submission again), keeps a new submission of the same household, and takes the
erased reference out of its partner's link list, as erasure did."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.formats.erased import ERASED_LINES
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import pseudonym
from tests.e2e.test_erasure_repeated import _export, _files_holding, _fixture_households, _query

KINDS = ["kobo-xlsx", "kobo-csv", "limesurvey-csv", "limesurvey-xlsx", "limesurvey-vv", "odk-central-zip"]


def _landed_and_archived(home: RematchHome, name: str) -> tuple[bytes, bytes]:
    (archived_as,) = _query(home.warehouse_path, "SELECT archived_as FROM ingestion_log WHERE file_name = ? AND status = 'ingested'", [name])[0]
    return (home.landing("households") / name).read_bytes(), (home.archive / archived_as).read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_the_next_export_after_an_erasure_does_not_bring_the_household_back(home: RematchHome, tmp_path: Path, kind: str, capsys) -> None:
    from tests.formats.fixtures.exports import kobo_kpi_municipalities_csv

    rows = _fixture_households(6)
    partner, erased, new = rows[1], rows[2], rows[5]
    partner["linked_household_refs"], erased["linked_household_refs"] = erased["household_ref"], partner["household_ref"]
    (home.landing("municipalities") / "municipalities.csv").write_bytes(kobo_kpi_municipalities_csv())
    (tmp_path / "first").mkdir()
    name, first = _export(kind, rows[:5], tmp_path / "first")
    (home.landing("households") / name).write_bytes(first)
    assert main(["ingest"]) == 0
    assert main(["erase", erased["household_ref"]]) == 0
    target = pseudonym(home.secret(), "household", erased["household_ref"])
    partner_pseudonym = pseudonym(home.secret(), "household", partner["household_ref"])

    # The next week's export: every submission again (the erased one too), and one new household.
    (tmp_path / "next").mkdir()
    _, following = _export(kind, rows, tmp_path / "next")
    later = f"week2-{name}"
    (home.landing("households") / later).write_bytes(following)
    capsys.readouterr()
    assert main(["ingest"]) == 0
    out = capsys.readouterr().out
    left_out = [line for line in out.splitlines() if line.startswith(f"left out: {later}: ")]
    assert len(left_out) == 1 and f"{ERASED_LINES}: " in left_out[0], out

    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE household_pseudonym = ?", [target]) == [(0,)]
    assert _query(home.identity_path, "SELECT count(*) FROM household_identity WHERE household_ref = ?", [erased["household_ref"]]) == [(0,)]
    new_pseudonym = pseudonym(home.secret(), "household", new["household_ref"])
    assert _query(home.warehouse_path, "SELECT count(*) FROM households WHERE household_pseudonym = ?", [new_pseudonym]) == [(1,)]
    # The partner's new line lost the link, so it is placed on its own, not held out for a missing partner.
    assert _query(home.warehouse_path, "SELECT linked_household_pseudonyms FROM raw_households WHERE household_pseudonym = ? AND file_name = ?", [partner_pseudonym, later]) == [(None,)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM households WHERE household_pseudonym = ?", [partner_pseudonym]) == [(1,)]
    # The landed and archived copies are the same bytes, without the erased household's lines.
    landed, archived = _landed_and_archived(home, later)
    assert landed == archived
    needles = [erased["household_ref"], erased["contact_name"], *(m["member_name"] for m in erased["members"])]
    assert _files_holding(home, needles) == []
    # Landing the same export once more is a no-op (its bytes are logged): the household stays out.
    stored = _query(home.warehouse_path, "SELECT count(*) FROM raw_households")
    (home.landing("households") / f"again-{name}").write_bytes(following)
    assert main(["ingest"]) == 0
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == stored
    assert _query(home.identity_path, "SELECT count(*) FROM household_identity WHERE household_ref = ?", [erased["household_ref"]]) == [(0,)]


def test_a_household_that_submits_again_after_its_erasure_is_kept(home: RematchHome, tmp_path: Path, capsys) -> None:
    """A new submission (a new id) of an erased household's reference is a new consent, not the erased
    submission: it is stored (docs/decisions.md)."""
    from tests.formats.fixtures.exports import kobo_kpi_municipalities_csv

    rows = _fixture_households(4)
    again = rows[2]
    (home.landing("municipalities") / "municipalities.csv").write_bytes(kobo_kpi_municipalities_csv())
    name, first = _export("kobo-csv", rows, tmp_path)
    (home.landing("households") / name).write_bytes(first)
    assert main(["ingest"]) == 0
    assert main(["erase", again["household_ref"]]) == 0
    again["submission_id"] = "ffffffff-8e3b-4c1a-9d0e-3f6a1c2b7eff"
    _, following = _export("kobo-csv", [again], tmp_path)
    (home.landing("households") / "resubmitted.csv").write_bytes(following)
    capsys.readouterr()
    assert main(["ingest"]) == 0
    assert ERASED_LINES not in capsys.readouterr().out
    target = pseudonym(home.secret(), "household", again["household_ref"])
    assert _query(home.warehouse_path, "SELECT submission_id FROM raw_households WHERE household_pseudonym = ?", [target]) == [(again["submission_id"],)]
    assert (home.landing("households") / "resubmitted.csv").read_bytes() == following


def test_a_members_file_of_an_erased_submission_is_left_out(home: RematchHome, tmp_path: Path, capsys) -> None:
    """A members file has no reference: its lines of an erased submission go by the submission alone, unless a
    stored household carries that submission id (an id of another tool could be equal by chance)."""
    import polars as pl

    from rematch_pipeline.sample import generate_round
    from tests.e2e.test_erasure_repeated import _csv, _land_csvs, _planted

    sample = generate_round(10, 3, seed=5)
    households, members = _planted(sample)
    _land_csvs(home, sample, households, members)
    assert main(["ingest"]) == 0
    gone = households.row(3, named=True)
    assert main(["erase", gone["household_ref"]]) == 0
    kept = households.row(4, named=True)
    later = members.filter(pl.col("submission_id").is_in([gone["submission_id"], kept["submission_id"]]))
    (home.landing("households") / "members-again.csv").write_bytes(_csv(later))
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        again = con.execute("SELECT submission_id FROM raw_members WHERE file_name = 'members-again.csv'").fetchall()
    assert {s for (s,) in again} == {kept["submission_id"]}
    names = members.filter(pl.col("submission_id") == gone["submission_id"])["member_name"].to_list()
    assert names and _files_holding(home, names) == []


def test_a_refused_workbook_landing_after_an_erasure_is_rewritten_streaming_and_retried(
    home: RematchHome, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KoboToolbox workbook (two sheets) refused by this version's reading, landing after an erasure: its lines
    of the erased submission are taken out of the landed and archived copies, which are kept for `--retry-rejected`.
    That rewrite loaded the workbook in full (3.07 GiB and 208 s for a 50,000-household export): it now streams, the
    copy reads as the export did without the erased lines, and the retry stores the other households from it."""
    import openpyxl

    from rematch_pipeline.assets import ingest as ingest_asset
    from rematch_pipeline.formats.errors import InputFileError, Violation
    from tests.formats.fixtures.exports import kobo_kpi_municipalities_csv

    rows = _fixture_households(5)
    erased = rows[2]
    (home.landing("municipalities") / "municipalities.csv").write_bytes(kobo_kpi_municipalities_csv())
    (tmp_path / "first").mkdir()
    name, first = _export("kobo-xlsx", rows[:4], tmp_path / "first")
    (home.landing("households") / name).write_bytes(first)
    assert main(["ingest"]) == 0
    assert main(["erase", erased["household_ref"]]) == 0

    (tmp_path / "next").mkdir()
    _, following = _export("kobo-xlsx", rows, tmp_path / "next")
    later = f"week2-{name}"
    landed = home.landing("households") / later
    landed.write_bytes(following)
    reads = ingest_asset.read_export

    def older(path: Path, data: bytes, as_landed: bool = False):  # noqa: ANN202 - read_export's
        raise InputFileError(Violation(path.name, 1, None, "header: not a format this version reads"))

    def full_load(*args, **kwargs):  # noqa: ANN202
        raise AssertionError("the workbook was loaded in full")

    monkeypatch.setattr(ingest_asset, "read_export", older)
    monkeypatch.setattr(openpyxl, "load_workbook", full_load)
    capsys.readouterr()
    main(["ingest"])
    cli = capsys.readouterr()
    assert f"rejected: {later}, row 1: header: not a format this version reads" in cli.err
    lines = 1 + len(erased["members"])
    assert f"left out: {later}: {ERASED_LINES}: {lines}" in cli.out
    needles = [erased["household_ref"], erased["contact_name"], *(m["member_name"] for m in erased["members"])]
    assert _files_holding(home, needles) == []
    # The copy (landed and archived alike) reads as the export did, without the erased submission's lines.
    (archived_as,) = _query(home.warehouse_path, "SELECT archived_as FROM ingestion_log WHERE file_name = ? AND status = 'rejected'", [later])[0]
    assert (home.archive / archived_as).read_bytes() == landed.read_bytes()

    def tables(data: bytes) -> dict[str, list[dict]]:
        return {t.table: [{k: v for k, v in r.items() if k != "file_row"} for r in t.frame.to_dicts()] for t in reads(Path(later), data)}

    before = tables(following)
    gone = {r["submission_id"] for r in before["households"] if r["household_ref"] == erased["household_ref"]}
    assert len(gone) == 1
    assert tables(landed.read_bytes()) == {t: [r for r in rs if r["submission_id"] not in gone] for t, rs in before.items()}

    monkeypatch.setattr(ingest_asset, "read_export", reads)
    capsys.readouterr()
    assert main(["ingest", "--retry-rejected"]) == 0
    assert f"retried: {later}: ingested" in capsys.readouterr().out
    # The ledger keeps the count of lines ingestion took out of its copies (the retry's reading cannot see them again;
    # it overwrote the count with its own, none).
    skipped = _query(home.warehouse_path, "SELECT skipped FROM ingestion_log WHERE file_name = ? AND status = 'ingested'", [later])
    assert skipped == [(f"{ERASED_LINES}: {lines}",)], skipped
    target = pseudonym(home.secret(), "household", erased["household_ref"])
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE household_pseudonym = ?", [target]) == [(0,)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE file_name = ?", [later]) == [(4,)]
    assert _files_holding(home, needles) == []


def _refused_after_erasure(
    home: RematchHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, rows: list[dict], erased: dict, following_rows: list[dict]
) -> tuple[str, Path, list[str]]:
    """`rows` ingested, `erased` erased, then the next export (`following_rows`) refused by an older version's reader
    (its copies keep what only its columns tell); the reader restored. The landed name, its path, the erased needles."""
    from rematch_pipeline.assets import ingest as ingest_asset
    from rematch_pipeline.formats.errors import InputFileError, Violation
    from tests.formats.fixtures.exports import kobo_kpi_municipalities_csv

    (home.landing("municipalities") / "municipalities.csv").write_bytes(kobo_kpi_municipalities_csv())
    (tmp_path / "first").mkdir()
    name, first = _export(kind, rows, tmp_path / "first")
    (home.landing("households") / name).write_bytes(first)
    assert main(["ingest"]) == 0
    assert main(["erase", erased["household_ref"]]) == 0

    (tmp_path / "next").mkdir()
    _, following = _export(kind, following_rows, tmp_path / "next")
    later = f"week2-{name}"
    landed = home.landing("households") / later
    landed.write_bytes(following)

    def older(path: Path, data: bytes, as_landed: bool = False):  # noqa: ANN202 - read_export's
        raise InputFileError(Violation(path.name, 1, None, "header: not a format this version reads"))

    with monkeypatch.context() as patched:
        patched.setattr(ingest_asset, "read_export", older)
        assert main(["ingest"]) == 1
    needles = [erased["household_ref"], erased["contact_name"], *(m["member_name"] for m in erased["members"])]
    assert _files_holding(home, needles), "the refused copies keep what only the columns tell (the gap a retry closes)"
    return later, landed, needles


@pytest.mark.parametrize("kind", ["limesurvey-csv", "kobo-xlsx", "odk-central-zip"])
def test_a_refused_export_read_by_a_retry_loses_the_erased_households_lines_from_its_copies(
    home: RematchHome, tmp_path: Path, kind: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next export after an erasure, refused by this version's readers: its copies keep what only its columns tell
    (a LimeSurvey response, whose id is made of two columns; an erased reference in a partner's link list). When
    `--retry-rejected` reads it, its landed and archived copies lose them as a landing file's do: no line of the
    erased household is left in any file of the home, and the partner is stored without the link."""
    rows = _fixture_households(6)
    partner, erased = rows[1], rows[2]
    partner["linked_household_refs"], erased["linked_household_refs"] = erased["household_ref"], partner["household_ref"]
    later, landed, needles = _refused_after_erasure(home, tmp_path, monkeypatch, kind, rows[:5], erased, rows)

    capsys.readouterr()
    assert main(["ingest", "--retry-rejected"]) == 0
    out = capsys.readouterr().out
    assert f"retried: {later}: ingested" in out, out
    if kind.startswith("limesurvey"):  # the whole response stayed; elsewhere only the partner's link
        assert "3 rows of erased households left out" in out and f"{ERASED_LINES}: 1" in out, out  # 1 line: household, 2 members
    else:
        # Ingestion took the household's line and its 2 members' out of these copies: the retry takes none more, and its
        # `left out:` line is the file's ledger record, which keeps that count (it overwrote it with none before).
        assert f"left out: {later}: {ERASED_LINES}: 3" in out, out
    assert _files_holding(home, needles) == []
    (archived_as,) = _query(home.warehouse_path, "SELECT archived_as FROM ingestion_log WHERE file_name = ? AND status = 'ingested'", [later])[0]
    assert (home.archive / archived_as).read_bytes() == landed.read_bytes()
    partner_pseudonym = pseudonym(home.secret(), "household", partner["household_ref"])
    assert _query(
        home.warehouse_path, "SELECT linked_household_pseudonyms FROM raw_households WHERE household_pseudonym = ? AND file_name = ?", [partner_pseudonym, later]
    ) == [(None,)]
    # Stored rows name the lines of the copy (erasure's check): the partner's stored row is its line in the copy.
    assert _query(home.identity_path, "SELECT count(*) FROM household_identity WHERE household_ref = ?", [erased["household_ref"]]) == [(0,)]
    # The copy's content is logged: landing it again is a no-op; a second retry finds nothing.
    capsys.readouterr()
    assert main(["ingest", "--retry-rejected"]) == 0
    assert "nothing to retry" in capsys.readouterr().out


def test_a_refused_export_holding_only_an_erased_household_stays_refused_on_retry_without_its_lines(
    home: RematchHome, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused LimeSurvey export whose only response is an erased household's (its lines hold no submission id, so
    ingestion could not take them out): when `--retry-rejected` reads it, its copy without those lines holds a header
    only (LimeSurvey: no completed response). The retry says so for that file, as ingestion says it of a landing file, and its copies still lose the lines;
    it used to fail the whole retry run (\"header only\" raised as a bug), for every other file too, each time."""
    rows = _fixture_households(3)
    erased = rows[2]
    later, landed, needles = _refused_after_erasure(home, tmp_path, monkeypatch, "limesurvey-csv", rows, erased, [erased])

    capsys.readouterr()
    main(["ingest", "--retry-rejected"])
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert f"still rejected: {later}: " in said and "retry_exports_job failed" not in said, captured
    assert _files_holding(home, needles) == []
    (archived_as,) = _query(home.warehouse_path, "SELECT archived_as FROM ingestion_log WHERE file_name = ? AND status = 'rejected'", [later])[0]
    assert (home.archive / archived_as).read_bytes() == landed.read_bytes()
    # The copy's content is logged: landing it again is a no-op; a second retry finds it refused again, quietly.
    capsys.readouterr()
    main(["ingest", "--retry-rejected"])
    captured = capsys.readouterr()
    assert f"still rejected: {later}: " in captured.out + captured.err, captured
