"""Erasures one after another from the same exports: each removes exactly its household's lines (and its
members' lines) from the archived and landed copies, every other line stays as it was, and the stored
rows keep pointing at their lines (a later erasure, a retry and a validation read them by row number)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import polars as pl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.sample import SampleRound, generate_round
from tests.e2e.test_odk_central import _central_zip
from tests.formats.fixtures.exports import CENTRAL_FORM_ID

# Sheets of a canonical workbook (any names: the reader knows a template by its header).
_SHEETS = {"households": "Haushalte", "members": "Personen"}


@pytest.fixture(scope="module")
def sample() -> SampleRound:
    return generate_round(14, 3, seed=17)


def _planted(sample: SampleRound) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Households without links, each with a contact name and member names found nowhere else."""
    households = sample.households.with_columns(
        pl.format("Kontakt{}Qz", pl.int_range(pl.len())).alias("contact_name"),
        pl.lit("").alias("linked_household_refs"),
        pl.lit("yes").alias("consent_processing"),
    )
    members = sample.members.with_columns(pl.format("Mitglied{}Qz", pl.int_range(pl.len())).alias("member_name"))
    return households, members


def _csv(frame: pl.DataFrame) -> bytes:
    out = io.StringIO()
    frame.write_csv(out)
    return out.getvalue().encode()


def _land_csvs(home: RematchHome, sample: SampleRound, households: pl.DataFrame, members: pl.DataFrame) -> None:
    """The sample's municipalities and these households and members as canonical CSV exports in landing/."""
    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    (home.landing("households") / "households.csv").write_bytes(_csv(households))
    (home.landing("households") / "members.csv").write_bytes(_csv(members))


def _xlsx(frames: dict[str, pl.DataFrame]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for table, frame in frames.items():
        sheet = book.create_sheet(_SHEETS[table])
        sheet.append(frame.columns)
        for row in frame.iter_rows():
            sheet.append([v if v != "" else None for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _archived(home: RematchHome, name: str) -> Path:
    """The archived copy the ledger names for a landed export (its original entry)."""
    (archived_as,) = _query(home.warehouse_path, "SELECT archived_as FROM ingestion_log WHERE file_name = ? AND status = 'ingested'", [name])[0]
    return home.archive / archived_as


def _csv_lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _xlsx_rows(data: bytes) -> dict[str, list[tuple]]:
    """Each sheet's rows as the readers read them (formats.workbook.read_workbook), without trailing empty cells: a
    rewritten copy saves no empty cell and no <dimension>, which openpyxl's own read-only mode pads rows to."""
    from rematch_pipeline.formats.workbook import read_workbook

    def rows(book) -> dict[str, list[tuple]]:  # noqa: ANN001 - a formats.workbook.Workbook
        return {sheet.title: [_trimmed(row) for row in sheet.rows()] for sheet in book.sheets}

    return read_workbook(data, "copy.xlsx", rows, unsaved_formulas_empty=True)


def _trimmed(row: Sequence[object]) -> tuple:
    cells = list(row)
    while cells and cells[-1] is None:
        cells.pop()
    return tuple(cells)


def _line_cells(home: RematchHome, sha: str, sheet: str | None, row: int) -> list[str]:
    """The cells of one row (1-based, header = 1) of the current archived copy of a stored file."""
    (archived_as,) = _query(home.warehouse_path, "SELECT archived_as FROM ingestion_log WHERE file_sha256 = ?", [sha])[0]
    data = (home.archive / archived_as).read_bytes()
    if archived_as.endswith(".zip"):  # a zip of CSVs: the sheet is the member's name
        return list(csv.reader(io.StringIO(_zip_members(data)[sheet].decode())))[row - 1]
    if sheet is None:
        return list(csv.reader(io.StringIO(data.decode())))[row - 1]
    return ["" if v is None else str(v) for v in _xlsx_rows(data)[sheet][row - 1]]


def _zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _holds(cells: list[str], value: str) -> bool:
    """Whether a cell is the value, or names it after a prefix (Central's `uuid:` keys)."""
    return any(cell == value or cell.startswith(f"uuid:{value}") for cell in cells)


def _check_stored_rows_point_at_their_lines(home: RematchHome) -> None:
    """Every raw row and identity row names a line of the current archived copy that holds its submission
    (and, for identity rows, its reference or member name)."""
    checked = 0
    for sha, sheet, row, submission in _query(home.warehouse_path, "SELECT file_sha256, sheet, file_row, submission_id FROM raw_households UNION ALL SELECT file_sha256, sheet, file_row, submission_id FROM raw_members"):
        assert _holds(_line_cells(home, sha, sheet, row), submission), (sheet, row)
        checked += 1
    for sha, row, submission, ref in _query(home.identity_path, "SELECT file_sha256, file_row, submission_id, household_ref FROM household_identity"):
        sheet = _query(home.warehouse_path, "SELECT DISTINCT sheet FROM raw_households WHERE file_sha256 = ?", [sha])[0][0]
        cells = _line_cells(home, sha, sheet, row)
        assert _holds(cells, submission) and ref in cells, (sheet, row)
    for sha, row, submission, name in _query(home.identity_path, "SELECT file_sha256, file_row, submission_id, member_name FROM member_identity"):
        sheet = _query(home.warehouse_path, "SELECT DISTINCT sheet FROM raw_members WHERE file_sha256 = ?", [sha])[0][0]
        cells = _line_cells(home, sha, sheet, row)
        assert _holds(cells, submission) and name in cells, (sheet, row)
    assert checked


def _files_holding(home: RematchHome, needles: list[str]) -> list[str]:
    found = []
    for path in sorted(home.path.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if data[:2] == b"PK":  # an XLSX or zip keeps its cells deflated: search the members too
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    data += b"".join(archive.read(name) for name in archive.namelist())
            found += [f"{path.relative_to(home.path)}: {n}" for n in needles if n.encode() in data]
    return found


def _erase_one_after_another(
    home: RematchHome,
    households: pl.DataFrame,
    members: pl.DataFrame,
    targets: list[int],
    copies: Callable[[], dict[str, bytes]],
    expected: Callable[[set[str]], dict[str, bytes | dict[str, list[tuple]]]],
    view: Callable[[bytes], bytes | dict[str, list[tuple]]],
    capsys: pytest.CaptureFixture,
) -> None:
    """Erase the households at the given positions one by one; after each, the copies hold exactly the lines expected."""
    validated = dict(_query(home.warehouse_path, "SELECT member_pseudonym, age_years FROM members"))
    assert validated
    erased: set[str] = set()
    for position in targets:
        row = households.row(position, named=True)
        capsys.readouterr()
        assert main(["erase", row["household_ref"]]) == 0
        erased.add(row["submission_id"])
        for label, data in copies().items():
            assert view(data) == expected(erased)[label.split(":")[0]], f"{label} after erasing {len(erased)} household(s)"
        _check_stored_rows_point_at_their_lines(home)

    # Validation reads the stored rows again: the members' ages (birth dates from the identity store, joined
    # by file and row) are those they had before; nothing else was lost.
    assert main(["ingest"]) == 0
    kept_households = households.filter(~pl.col("submission_id").is_in(sorted(erased)))
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(kept_households.height,)]
    after = dict(_query(home.warehouse_path, "SELECT member_pseudonym, age_years FROM members"))
    assert after == {p: a for p, a in validated.items() if p in after} and len(after) == members.filter(~pl.col("submission_id").is_in(sorted(erased))).height

    # A retry reads the archived copies again by row number: nothing is lost, and every row stays where it was.
    stored = _query(home.warehouse_path, "SELECT file_sha256, sheet, file_row, submission_id FROM raw_households ORDER BY ALL")
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("UPDATE raw_households SET pets = '#withheld' WHERE submission_id = ?", [kept_households["submission_id"][0]])
    capsys.readouterr()
    assert main(["ingest", "--retry-rejected"]) == 0
    out = capsys.readouterr().out
    assert "read again" in out, out
    assert _query(home.warehouse_path, "SELECT file_sha256, sheet, file_row, submission_id FROM raw_households ORDER BY ALL") == stored
    _check_stored_rows_point_at_their_lines(home)

    # The erased households' names, references and submission ids are in no file of the data home.
    gone = households.filter(pl.col("submission_id").is_in(sorted(erased)))
    needles = [*gone["contact_name"], *gone["household_ref"], *members.filter(pl.col("submission_id").is_in(sorted(erased)))["member_name"]]
    assert _files_holding(home, needles) == []
    kept_names = [*kept_households["contact_name"]]
    assert len({f.split(":")[1] for f in _files_holding(home, kept_names)}) == len(kept_names)


def test_erasures_from_the_same_csv_exports_remove_exactly_their_lines(home: RematchHome, sample: SampleRound, capsys) -> None:
    households, members = _planted(sample)
    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    original = {"households.csv": _csv(households), "members.csv": _csv(members)}
    for name, data in original.items():
        (home.landing("households") / name).write_bytes(data)
    assert main(["ingest"]) == 0
    submissions = {"households.csv": households["submission_id"].to_list(), "members.csv": members["submission_id"].to_list()}

    def copies() -> dict[str, bytes]:
        return {f"{name}:{where}": path.read_bytes() for name in original for where, path in (("archive", _archived(home, name)), ("landing", home.landing("households") / name))}

    def expected(erased: set[str]) -> dict[str, bytes]:
        # Line 1 is the header; line n + 2 is the frame's row n.
        return {
            name: b"".join(line for i, line in enumerate(_csv_lines(data)) if i == 0 or submissions[name][i - 1] not in erased)
            for name, data in original.items()
        }

    # The second target's line follows the first's, the third is the file's last line.
    targets = [3, 4, households.height - 1]
    _erase_one_after_another(home, households, members, targets, copies, expected, lambda data: data, capsys)


def test_an_erasure_says_each_step_as_it_goes_without_naming_the_household(home: RematchHome, sample: SampleRound, capsys) -> None:
    """On a national data home `rematch erase` printed nothing for 36 s before its one line (evaluated 2026-12-06):
    whoever waited could not tell it working from hung. Each step now says what it does, with counts; never the
    household's reference, submission id or names (the terminal's scrollback is not the identity store)."""
    households, members = _planted(sample)
    _land_csvs(home, sample, households, members)
    assert main(["ingest"]) == 0
    row = households.row(2, named=True)
    capsys.readouterr()
    assert main(["erase", row["household_ref"]]) == 0
    said = capsys.readouterr()
    steps = [line for line in said.err.splitlines() if line.startswith("erasing: ")]
    assert steps == [
        "erasing: finding the household's rows and the exports that hold them",
        "erasing: deleting its rows from the warehouse (2 exports rewritten without them, 0 rejected exports to delete)",
        "erasing: replacing the exports' copies and the rounds' files",
        "erasing: deleting it from the identity store",
        "erasing: rewriting the warehouse and the identity store without the deleted rows' bytes",
        "erasing: searching the Dagster runs' logs and config for the household",
    ], said.err
    assert said.out.startswith("erased: "), "the result stays on stdout, after the steps"
    named = [row["household_ref"], row["submission_id"], row["contact_name"],
             *members.filter(pl.col("submission_id") == row["submission_id"])["member_name"]]
    assert not [n for n in named if n in said.err + said.out]


def test_erasures_from_the_same_workbook_remove_exactly_their_rows(home: RematchHome, sample: SampleRound, capsys) -> None:
    households, members = _planted(sample)
    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    original = _xlsx({"households": households, "members": members})
    (home.landing("households") / "intake.xlsx").write_bytes(original)
    assert main(["ingest"]) == 0
    rows = _xlsx_rows(original)
    submissions = {_SHEETS["households"]: households["submission_id"].to_list(), _SHEETS["members"]: members["submission_id"].to_list()}

    def copies() -> dict[str, bytes]:
        return {"intake.xlsx:archive": _archived(home, "intake.xlsx").read_bytes(), "intake.xlsx:landing": (home.landing("households") / "intake.xlsx").read_bytes()}

    def expected(erased: set[str]) -> dict[str, dict[str, list[tuple]]]:
        kept = {sheet: [r for i, r in enumerate(values) if i == 0 or submissions[sheet][i - 1] not in erased] for sheet, values in rows.items()}
        return {"intake.xlsx": kept}

    targets = [6, 2, 3]
    _erase_one_after_another(home, households, members, targets, copies, expected, _xlsx_rows, capsys)
    assert hashlib.sha256((home.landing("households") / "intake.xlsx").read_bytes()).hexdigest() == _archived(home, "intake.xlsx").name.split(".")[0]


def test_erasures_from_the_same_central_zip_remove_exactly_their_lines_from_both_csvs(home: RematchHome, sample: SampleRound, capsys) -> None:
    households, members = _planted(sample)
    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    original = _central_zip(households, members)
    (home.landing("households") / "central.zip").write_bytes(original)
    assert main(["ingest"]) == 0
    submissions = {f"{CENTRAL_FORM_ID}.csv": households["submission_id"].to_list(), f"{CENTRAL_FORM_ID}-members.csv": members["submission_id"].to_list()}

    def view(data: bytes) -> dict[str, list[bytes]]:
        return {name: _csv_lines(content) for name, content in _zip_members(data).items()}

    def copies() -> dict[str, bytes]:
        return {"central.zip:archive": _archived(home, "central.zip").read_bytes(), "central.zip:landing": (home.landing("households") / "central.zip").read_bytes()}

    def expected(erased: set[str]) -> dict[str, dict[str, list[bytes]]]:
        kept = {name: [line for i, line in enumerate(lines) if i == 0 or submissions[name][i - 1] not in erased] for name, lines in view(original).items()}
        return {"central.zip": kept}

    _erase_one_after_another(home, households, members, [1, 2, 0], copies, expected, view, capsys)


def _fixture_households(n: int) -> list[dict]:
    """n unlinked households in the fixtures' shape, with names and references found nowhere else."""
    import copy

    from tests.formats.fixtures.exports import HOUSEHOLDS

    rows = []
    for i in range(n):
        row = copy.deepcopy(HOUSEHOLDS[i % len(HOUSEHOLDS)])
        row.update(submission_id=f"{i:08d}-8e3b-4c1a-9d0e-3f6a1c2b7e{i:02d}", household_ref=f"UA-HH-07{i:02d}", contact_name=f"Kontakt{i}Qz")
        row.update(linked_household_refs=None, consent_processing="yes")
        for j, member in enumerate(row["members"]):
            member["member_name"] = f"Mitglied{i}x{j}Qz"
        rows.append(row)
    return rows


def _export(kind: str, rows: list[dict], folder: Path) -> tuple[str, bytes]:
    """A real export of the households in one of the formats erasure rewrites: (file name, bytes)."""
    from tests.formats.fixtures import exports as fx

    if kind == "kobo-xlsx":
        return "kobo.xlsx", fx.kobo_kpi_households_xlsx(folder / "kobo.xlsx", rows).read_bytes()
    if kind == "kobo-csv":
        return "kobo.csv", fx.kobo_legacy_households_csv(rows)
    if kind == "limesurvey-csv":
        return "results-survey.csv", fx.limesurvey_csv("households", rows)
    if kind == "limesurvey-xlsx":
        return "results-survey.xlsx", fx.limesurvey_xlsx(fx.limesurvey_csv("households", rows))
    if kind == "limesurvey-vv":
        return "vvexport.csv", fx.limesurvey_vv("households", rows=rows)
    return "central.zip", fx.zipped(fx.odk_central_households(rows))


def _units(data: bytes) -> dict[str | None, list]:
    """Per sheet (zip member, None for a CSV) its lines as bytes, or an XLSX sheet's rows as cell values."""
    if data[:2] != b"PK":
        return {None: data.splitlines(keepends=True)}
    if "[Content_Types].xml" in _zip_members(data):
        return dict(_xlsx_rows(data))
    return {name: content.splitlines(keepends=True) for name, content in _zip_members(data).items()}


def _read(name: str, data: bytes) -> dict[tuple[str, str | None], pl.DataFrame]:
    from rematch_pipeline.formats.detect import read_export

    return {(p.table, p.sheet): p.frame for p in read_export(Path(name), data)}


@pytest.mark.parametrize("kind", ["kobo-xlsx", "kobo-csv", "limesurvey-csv", "limesurvey-xlsx", "limesurvey-vv", "odk-central-zip"])
def test_erasures_one_after_another_in_every_export_format(home: RematchHome, tmp_path: Path, kind: str, capsys) -> None:
    from tests.formats.fixtures.exports import kobo_kpi_municipalities_csv

    rows = _fixture_households(6)
    (home.landing("municipalities") / "municipalities.csv").write_bytes(kobo_kpi_municipalities_csv())
    name, original = _export(kind, rows, tmp_path)
    (home.landing("households") / name).write_bytes(original)
    assert main(["ingest"]) == 0
    parsed = _read(name, original)
    assert {table for table, _ in parsed} >= {"households", "members"}
    # Submission ids as the reader gives them (LimeSurvey's are its response ids).
    households = next(frame for (table, _), frame in parsed.items() if table == "households")
    submission_of = dict(zip(households["household_ref"], households["submission_id"]))
    erased: set[str] = set()
    for position in (2, 3, 5):
        capsys.readouterr()
        assert main(["erase", rows[position]["household_ref"]]) == 0
        erased.add(submission_of[rows[position]["household_ref"]])
        archived, landed = _archived(home, name).read_bytes(), (home.landing("households") / name).read_bytes()
        assert archived == landed
        # Exactly the erased households' lines (their members' too) are gone; every other line is as it was.
        gone: dict[str | None, set[int]] = {}
        for (_, sheet), frame in parsed.items():
            gone.setdefault(sheet, set()).update(frame.filter(pl.col("submission_id").is_in(sorted(erased)))["file_row"].to_list())
        expected = {sheet: [u for n, u in enumerate(units, start=1) if n not in gone.get(sheet, set())] for sheet, units in _units(original).items()}
        assert _units(archived) == expected, f"after erasing {len(erased)} household(s)"
        # Every stored row names the row of the current copy that holds its submission.
        now = _read(name, archived)
        for table in ("households", "members"):
            for sheet, row, submission in _query(home.warehouse_path, f"SELECT sheet, file_row, submission_id FROM raw_{table}"):
                # (A wide export, Kobo's legacy CSV or LimeSurvey, has a household's members on its line.)
                assert submission in now[(table, sheet)].filter(pl.col("file_row") == row)["submission_id"].to_list(), (table, sheet, row)
        sheets = dict(_query(home.warehouse_path, "SELECT DISTINCT 'members', sheet FROM raw_members"))
        for row, member in _query(home.identity_path, "SELECT file_row, member_name FROM member_identity"):
            assert member in now[("members", sheets["members"])].filter(pl.col("file_row") == row)["member_name"].to_list(), row

    # A retry reads the copy again: every row stays in its place.
    stored = _query(home.warehouse_path, "SELECT sheet, file_row, submission_id FROM raw_households ORDER BY ALL")
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("UPDATE raw_households SET pets = '#withheld' WHERE submission_id = ?", [submission_of[rows[4]["household_ref"]]])
    capsys.readouterr()
    assert main(["ingest", "--retry-rejected"]) == 0
    assert "read again" in capsys.readouterr().out
    assert _query(home.warehouse_path, "SELECT sheet, file_row, submission_id FROM raw_households ORDER BY ALL") == stored
    needles = [v for p in (2, 3, 5) for v in (rows[p]["household_ref"], rows[p]["contact_name"], *(m["member_name"] for m in rows[p]["members"]))]
    assert _files_holding(home, needles) == []


def test_a_file_an_older_version_erased_from_stops_the_next_erasure_with_nothing_lost(home: RematchHome, sample: SampleRound, capsys) -> None:
    """A version before the renumbering left the stored rows numbered by the original after erasing from a
    file: erasing from it again would drop other households' lines. Erasure says so and changes nothing."""
    households, members = _planted(sample)
    _land_csvs(home, sample, households, members)
    assert main(["ingest"]) == 0
    first, second = households.row(3, named=True), households.row(6, named=True)
    assert main(["erase", first["household_ref"]]) == 0
    # What the older version left: the rows below the erased line keep their original numbers.
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("UPDATE raw_households SET file_row = file_row + 1 WHERE file_name = 'households.csv' AND file_row >= 5")
    before = {p.name: p.read_bytes() for p in [*home.archive.iterdir(), *home.landing("households").iterdir()]}
    rows = _query(home.warehouse_path, "SELECT count(*) FROM raw_households")

    capsys.readouterr()
    assert main(["erase", second["household_ref"]]) == 1
    err = capsys.readouterr().err
    assert "erasure stopped, nothing erased: households.csv: " in err and "do not name their row of the archived copy" in err, err
    assert second["household_ref"] not in err and second["contact_name"] not in err
    assert {p.name: p.read_bytes() for p in [*home.archive.iterdir(), *home.landing("households").iterdir()]} == before
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == rows
    assert _query(home.identity_path, "SELECT count(*) FROM household_identity WHERE household_ref = ?", [second["household_ref"]]) == [(1,)]


def test_erasures_from_the_same_decisions_file_remove_exactly_their_lines(home: RematchHome, sample: SampleRound, capsys) -> None:
    """A decisions file names households by reference and has no submission id, so erasure finds its lines
    by the stored rows' numbers alone: two erasures one after another (adjacent lines) must still remove
    exactly those households' lines, and the stored rows left must keep naming their lines."""
    households, members = _planted(sample)
    _land_csvs(home, sample, households, members)
    refs = households["household_ref"].to_list()[:5]
    place = sample.municipalities["municipality_id"][0]
    decisions = pl.DataFrame({
        "round_id": ["r9"] * len(refs), "household_ref": refs, "municipality_id": [place] * len(refs),
        "decision": ["decline"] * len(refs), "reason": ["family"] * len(refs),
    })
    original = _csv(decisions)
    (home.landing("decisions") / "decisions-r9.csv").write_bytes(original)
    assert main(["ingest"]) == 0
    stored = _query(home.warehouse_path, "SELECT count(*) FROM raw_decisions")
    assert stored == [(len(refs),)]
    lines = _csv_lines(original)
    erased: set[int] = set()
    for position in (1, 2):  # lines 3 and 4 of the file, one after the other
        capsys.readouterr()
        assert main(["erase", refs[position]]) == 0
        erased.add(position)
        expected = b"".join(line for i, line in enumerate(lines) if i == 0 or i - 1 not in erased)
        for copy in (_archived(home, "decisions-r9.csv"), home.landing("decisions") / "decisions-r9.csv"):
            assert copy.read_bytes() == expected, f"{copy.parent.name} after erasing {len(erased)} household(s)"
        # The rows left name the lines that hold them: row n is the file's line n (line 1 the header).
        rows = _query(home.warehouse_path, "SELECT file_row FROM raw_decisions ORDER BY file_row")
        assert [r[0] for r in rows] == list(range(2, 2 + len(refs) - len(erased)))
    assert _files_holding(home, [refs[1], refs[2]]) == []


def test_erasure_reads_a_workbook_an_older_version_ingested_with_unsaved_formulas(home: RematchHome, sample: SampleRound, capsys) -> None:
    """A workbook with a formula cell without a saved value is refused at ingestion now; one an older version
    ingested (the cell read as empty) must still be erasable from: erasure reads its archived copy as it was read
    when it landed, not by today's refusal (it stopped with `archived copy … cannot be read`)."""
    from openpyxl import load_workbook

    households, members = _planted(sample)
    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    (home.landing("households") / "intake.xlsx").write_bytes(_xlsx({"households": households, "members": members}))
    assert main(["ingest"]) == 0
    archived = _archived(home, "intake.xlsx")
    book = load_workbook(archived)  # what an older version archived: a pets cell holding a formula, no result
    sheet = book[_SHEETS["households"]]
    sheet.cell(3, [c.value for c in sheet[1]].index("pets") + 1).value = "=1+1"
    book.save(archived)
    target = households.row(5, named=True)
    capsys.readouterr()
    assert main(["erase", target["household_ref"]]) == 0, capsys.readouterr()
    assert _files_holding(home, [target["contact_name"], target["household_ref"]]) == []
    _check_stored_rows_point_at_their_lines(home)


def test_erasure_reads_a_code_page_850_csv_an_older_version_ingested(home: RematchHome, sample: SampleRound, capsys, monkeypatch) -> None:
    """A CSV in code page 850 (Excel's CSV (MS-DOS)) that Windows-1252 decodes is refused at ingestion now; one an older
    version ingested (read as Windows-1252) must still be erasable from: erasure reads its archived copy as it was
    read when it landed (it stopped with `archived copy … cannot be read: encoding`)."""
    from rematch_pipeline.formats import text

    households, members = _planted(sample)
    households = households.with_columns(pl.format("{} Jäger Köhler", pl.col("contact_name")).alias("contact_name"))
    members = members.with_columns(pl.format("{} Bäcker", pl.col("member_name")).alias("member_name"))
    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    for name, frame in (("households.csv", households), ("members.csv", members)):
        # Without ü (a byte Windows-1252 lacks: such a file was refused by older versions too).
        content = _csv(frame).decode().replace("ü", "ue").replace("Ü", "Ue")
        (home.landing("households") / name).write_bytes(content.encode("cp850", errors="replace"))
    with monkeypatch.context() as older:  # a version without the code-page check
        older.setattr(text, "refused_code_page", lambda body, file: None)
        assert main(["ingest"]) == 0
    assert main(["ingest"]) == 0  # nothing new landed: today's check is not run on what is stored
    target, kept = households.row(5, named=True), households.row(6, named=True)
    capsys.readouterr()
    assert main(["erase", target["household_ref"]]) == 0, capsys.readouterr()
    needle = target["contact_name"].split()[0]  # its ASCII part: the copies are in code page 850
    assert _files_holding(home, [needle, target["household_ref"]]) == []
    assert _files_holding(home, [kept["household_ref"]])


def test_erasure_from_a_kobo_workbook_keeps_answers_kpi_wrote_as_formulas_as_typed(home: RematchHome, tmp_path: Path, capsys) -> None:
    """KPI's XLSX export writes an answer starting with = as a formula saved as 0 (xlsxwriter); ingestion reads it as
    typed. Erasing another household rewrites the workbook with openpyxl: the answers stay as typed (text cells), so
    the copy reads as when it landed (retry, the restoring of members, the next erasure's row check), and erasing
    that household removes them from every file."""
    from rematch_pipeline.formats.detect import read_export
    from tests.formats.fixtures.exports import kobo_kpi_municipalities_csv

    rows = _fixture_households(4)
    rows[1]["current_address"] = "=5 people Qz"
    rows[1]["members"][0]["member_name"] = "=)Mitglied1x0Qz"
    (home.landing("municipalities") / "municipalities.csv").write_bytes(kobo_kpi_municipalities_csv())
    name, original = _export("kobo-xlsx", rows, tmp_path)
    assert b"<f>5 people Qz</f><v>0</v>" in _zip_members(original)["xl/worksheets/sheet1.xml"]
    (home.landing("households") / name).write_bytes(original)
    assert main(["ingest"]) == 0

    assert main(["erase", rows[2]["household_ref"]]) == 0, capsys.readouterr()
    archived = _archived(home, name).read_bytes()
    assert b"<f>" not in b"".join(v for k, v in _zip_members(archived).items() if k.startswith("xl/worksheets/"))
    for as_landed in (False, True):
        tables = {p.table: p.frame for p in read_export(Path(name), archived, as_landed=as_landed)}
        assert "=5 people Qz" in tables["households"]["current_address"].to_list()
        assert "=)Mitglied1x0Qz" in tables["members"]["member_name"].to_list()
    _check_stored_rows_point_at_their_lines(home)

    assert main(["erase", rows[1]["household_ref"]]) == 0, capsys.readouterr()
    assert _files_holding(home, ["5 people Qz", "Mitglied1x0Qz", rows[1]["household_ref"]]) == []
    _check_stored_rows_point_at_their_lines(home)


def _stored_files(home: RematchHome) -> dict[str, bytes]:
    """Every file of the data home but Dagster's own, by path: what an erasure could change."""
    return {
        str(p.relative_to(home.path)): p.read_bytes()
        for p in sorted(home.path.rglob("*"))
        if p.is_file() and home.dagster_home not in p.parents
    }


def test_erasing_a_reference_no_household_has_stops_with_nothing_changed(home: RematchHome, sample: SampleRound, capsys) -> None:
    """A mistyped reference, or a submission id given by mistake, ran every step, printed `erased: 0 rows` and
    exited 0 (twenty-seventh session): the mistake went unnoticed. Now it stops before anything changes (exit 1),
    says that no household has this reference and where references are listed, never repeating what was typed."""
    from rematch_pipeline.resources.identity import pseudonym

    households, members = _planted(sample)
    _land_csvs(home, sample, households, members)
    assert main(["ingest"]) == 0
    row = households.row(2, named=True)
    before = _stored_files(home)
    shown = pseudonym(home.secret(), "household", row["household_ref"])
    for given, hint in [
        (row["submission_id"], "this is a household's submission id"),
        (row["household_ref"] + "x", None),
        (shown, "this is a household's pseudonym"),
    ]:
        capsys.readouterr()
        assert main(["erase", given]) == 1
        said = capsys.readouterr()
        line = said.err.strip().splitlines()[-1]
        assert line.startswith("rematch: erasure stopped, nothing erased: no household has this reference"), said.err
        assert "household_ref column of the households export" in line
        assert (hint in line) if hint else ("this is a household's" not in line)
        assert given not in said.err + said.out
        assert "erased: " not in said.out and "erasing: deleting" not in said.err
        assert _stored_files(home) == before, "nothing stored may change"

    # Erased once, the same reference again changes nothing and says so (exit 0: what was asked holds).
    assert main(["erase", row["household_ref"]]) == 0
    after = _stored_files(home)
    capsys.readouterr()
    assert main(["erase", row["household_ref"]]) == 0
    said = capsys.readouterr()
    assert said.out.startswith("nothing to erase: the household with this reference was erased on "), said.out
    assert row["household_ref"] not in said.err + said.out
    assert _stored_files(home) == after


def test_an_erasure_is_recorded_in_utc_whatever_the_machines_time_zone(home: RematchHome, sample: SampleRound) -> None:
    """Every stored time is UTC (ingestion_log, submitted_at); the erasure's were DuckDB's now(), which a TIMESTAMP
    column keeps in the machine's local time: 14 hours ahead on a machine in Kiritimati, and `rematch erase` of the
    same reference again said `erased on` the next day. The erasure runs as a process of its own, its zone set."""
    households, members = _planted(sample)
    _land_csvs(home, sample, households, members)
    assert main(["ingest"]) == 0
    row = households.row(2, named=True)
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    erased = subprocess.run(
        [sys.executable, "-m", "rematch_pipeline.cli", "erase", row["household_ref"]],
        env={**os.environ, "TZ": "Pacific/Kiritimati"}, capture_output=True, text=True, check=False,
    )
    after = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert erased.returncode == 0, erased.stderr
    stamps = [
        *_query(home.warehouse_path, "SELECT erased_at FROM erasures UNION ALL SELECT erased_at FROM erased_submissions"),
        *_query(home.identity_path, "SELECT erased_at FROM erasures"),
    ]
    assert len(stamps) == 3 and all(before <= at <= after for (at,) in stamps), (before, stamps, after)
