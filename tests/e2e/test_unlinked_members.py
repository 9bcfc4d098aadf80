"""A member row that cannot be told whose person it is (its household link empty, or naming no household), through
real exports, `rematch ingest` and `rematch round`.

Before, such a row was quarantined alone and its household was matched without that person: fewer persons,
childcare, school and course places and accessible dwellings than it needs (a household of two with a wheelchair
user was proposed as one person needing no accessible dwelling). Now every household of that members file is held
out until a corrected export lands, and where the format carries the link twice (ODK Central's repeat KEY,
KoboToolbox's `_submission__uuid`) the empty one is restored from the other.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import duckdb
import openpyxl
from openpyxl.worksheet.worksheet import Worksheet
import polars as pl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.sample import SampleRound, generate_round, write_round
from rematch_pipeline.validation import UNKNOWN_HOUSEHOLD_MEMBER_RULE, UNLINKED_MEMBER_RULE
from rematch_pipeline.wording import counted
from tests.conftest import land
from tests.e2e.test_retry import _excel_padded, _refused_by_an_older_version

SECRET_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def sample() -> SampleRound:
    return generate_round(24, 5, seed=21)


def _person(sample: SampleRound) -> tuple[int, str]:
    """A member (its row among the members, its submission) of a consenting household of several persons,
    a wheelchair user where there is one: the person whose absence breaks a hard rule."""
    consenting = sample.households.filter(pl.col("consent_processing") == "yes")["submission_id"].implode()
    members = sample.members.with_row_index("_i").filter(pl.col("submission_id").is_in(consenting))
    several = members.filter(pl.len().over("submission_id") > 1).sort(pl.col("wheelchair") != "yes", "_i")
    return int(several["_i"][0]), str(several["submission_id"][0])


def _query(home: RematchHome, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _ingest(capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    assert main(["ingest"]) == 0
    return capsys.readouterr().err


@pytest.mark.parametrize("link", [None, SECRET_ID], ids=["link_empty", "link_names_no_household"])
def test_a_member_row_without_its_household_holds_out_the_households_of_its_file(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture, link: str | None
) -> None:
    """Canonical templates with one member's submission_id blank (or mistyped) beside an intact ODK Central zip
    of other households: no household of the broken members file is matched, the others are, and a corrected
    members file brings them back."""
    out = tmp_path / "sample"
    write_round(sample, out, "csv")
    other = generate_round(12, 5, seed=22)
    write_round(other, tmp_path / "other", "odk-central")
    index, owner = _person(sample)
    members_csv = out / "households" / f"members_{sample.period}.csv"
    broken = sample.members.with_columns(
        pl.when(pl.int_range(pl.len()) == index).then(pl.lit(link, dtype=pl.Utf8)).otherwise(pl.col("submission_id")).alias("submission_id")
    )
    broken.write_csv(members_csv)
    for path in (*(out / "municipalities").iterdir(), *(out / "households").iterdir(), *(tmp_path / "other" / "households").iterdir()):
        (home.landing("households" if "households" in path.parent.name else "municipalities") / path.name).write_bytes(path.read_bytes())

    err = _ingest(capsys)
    row = index + 2  # header is row 1
    rule = UNLINKED_MEMBER_RULE if link is None else UNKNOWN_HOUSEHOLD_MEMBER_RULE
    assert f"quarantined: {members_csv.name}, row {row}, column submission_id: {rule}" in err
    assert SECRET_ID not in err  # the rule names the cell, never its value
    assert _query(home, "SELECT count(*) FROM quarantine WHERE rule LIKE 'required%' AND file_name = ?", [members_csv.name]) == [(0,)]
    csv_households = {s for (s,) in _query(home, "SELECT submission_id FROM raw_households WHERE file_name = ?", [f"households_{sample.period}.csv"])}
    central_households = {s for (s,) in _query(home, "SELECT submission_id FROM raw_households WHERE file_name LIKE '%.csv.zip'")}
    valid = {s for (s,) in _query(home, "SELECT submission_id FROM households")}
    assert owner in csv_households and not valid & csv_households  # before: every one but the broken row's was matched
    assert valid and valid <= central_households
    held = [line for line in err.splitlines() if line.startswith("held out: ")]
    assert held and f"{members_csv.name}, row {row}, column submission_id" in held[0] and "held out until a corrected export lands" in held[0]
    held_rows = _query(home, "SELECT DISTINCT submission_id FROM held_out WHERE \"column\" = 'members'")
    assert {s for (s,) in held_rows} == csv_households & {s for (s,) in _query(home, "SELECT submission_id FROM raw_members")}

    # The round proposes only households whose every person is known.
    assert main(["round", "r1"]) == 0
    proposed = {s for (s,) in _query(home, "SELECT h.submission_id FROM proposals p JOIN raw_households h USING (household_pseudonym)")}
    assert proposed and proposed <= central_households

    # A corrected members file replaces the broken one for every household it carries.
    (home.landing("households") / "members_corrected.csv").write_bytes(sample.members.write_csv().encode())
    err = _ingest(capsys)
    assert not [line for line in err.splitlines() if line.startswith("held out: ")]
    persons = sample.members.filter(pl.col("submission_id") == owner).height
    assert _query(home, "SELECT count(*) FROM members WHERE submission_id = ?", [owner]) == [(persons,)]


def _central_members_edited(data: bytes, edit) -> bytes:  # noqa: ANN001 - bytes -> bytes of the members CSV
    """The Central zip with its members CSV edited (byte for byte otherwise)."""
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info, edit(content) if info.filename.endswith("-members.csv") else content)
    return out.getvalue()


@pytest.mark.parametrize("blank_key", [False, True], ids=["parent_key_empty", "parent_key_and_key_empty"])
def test_an_empty_parent_key_of_odk_central_is_restored_from_the_row_key(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture, blank_key: bool
) -> None:
    """Central's repeat row KEY is its submission's KEY plus `/members[n]`: an emptied PARENT_KEY is read from it
    (the household keeps every person); with both emptied, the zip's households are held out."""
    write_round(sample, tmp_path, "odk-central")
    _, owner = _person(sample)
    key = f"uuid:{owner}".encode()
    # The household's first member row: `…,uuid:<id>,uuid:<id>/members[1]`.
    before = b"," + key + b"," + key + b"/members[1]"
    after = b",," + (b"" if blank_key else key + b"/members[1]")
    for kind in ("municipalities", "households"):
        for path in (tmp_path / kind).iterdir():
            data = path.read_bytes()
            if kind == "households":
                data = _central_members_edited(data, lambda csv: csv.replace(before, after, 1) if before in csv else pytest.fail("no such row"))
            (home.landing(kind) / path.name).write_bytes(data)
    err = _ingest(capsys)
    persons = sample.members.filter(pl.col("submission_id") == owner).height
    kept = _query(home, "SELECT count(*) FROM members WHERE submission_id = ?", [owner])[0][0]
    if not blank_key:
        assert kept == persons  # before: the household was matched one person short
        assert _query(home, "SELECT count(*) FROM quarantine WHERE \"table\" = 'members'") == [(0,)]
        assert not [line for line in err.splitlines() if line.startswith("held out: ")]
    else:
        assert kept == 0 and _query(home, "SELECT count(*) FROM households") == [(0,)]
        assert f"column submission_id: {UNLINKED_MEMBER_RULE}" in err


def _kobo_member_row(sample: SampleRound, tmp_path: Path) -> tuple[openpyxl.Workbook, Worksheet, int, int, int, str]:
    """The sample as a KoboToolbox workbook under tmp_path, its members sheet, the `_parent_index` and
    `_submission__uuid` column numbers, and the sheet row of _person's member with that member's submission id."""
    write_round(sample, tmp_path, "kobo-xlsx")
    _, owner = _person(sample)
    book = openpyxl.load_workbook(tmp_path / "households" / "rematch_household.xlsx")
    sheet = book["members"]
    header = [c.value for c in sheet[1]]
    parent, uuid = header.index("_parent_index") + 1, header.index("_submission__uuid") + 1
    row = next(r for r in range(2, sheet.max_row + 1) if sheet.cell(r, uuid).value == owner)
    return book, sheet, parent, uuid, row, owner


def test_an_empty_parent_index_of_a_kobo_workbook_is_restored_from_submission_uuid(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """KoboToolbox writes both links on a repeat row; an emptied `_parent_index` is read from `_submission__uuid`
    (before, the whole export was rejected). Both emptied still stop the file: its row order is no link."""
    book, sheet, parent, uuid, row, owner = _kobo_member_row(sample, tmp_path)
    workbook_path = tmp_path / "households" / "rematch_household.xlsx"
    sheet.cell(row, parent).value = None
    book.save(workbook_path)
    for kind in ("municipalities", "households"):
        for path in (tmp_path / kind).iterdir():
            (home.landing(kind) / path.name).write_bytes(path.read_bytes())
    err = _ingest(capsys)
    assert "rejected" not in err
    persons = sample.members.filter(pl.col("submission_id") == owner).height
    assert _query(home, "SELECT count(*) FROM members WHERE submission_id = ?", [owner]) == [(persons,)]

    sheet.cell(row, uuid).value = None
    book.save(tmp_path / "both_empty.xlsx")
    (home.landing("households") / "both_empty.xlsx").write_bytes((tmp_path / "both_empty.xlsx").read_bytes())
    capsys.readouterr()
    main(["ingest"])
    err = capsys.readouterr().err
    assert f"rejected: both_empty.xlsx [sheet members], row {row}, column _parent_index: kobo: repeat row refers to no row" in err


def test_a_limesurvey_response_without_its_id_keeps_the_other_households(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """LimeSurvey writes a household's members on its own line: a response whose id is blank is quarantined with
    its members, and no other household can be missing them, so the rest of the file is matched."""
    write_round(sample, tmp_path, "limesurvey-csv")
    path = next((tmp_path / "households").iterdir())
    lines = path.read_bytes().split(b"\r\n")
    # The first consenting response: `"<id>";…;"Y"` in consentprocessing.
    header = lines[0].decode("utf-8-sig").split(";")
    consent = header.index('"consentprocessing"')
    row = next(i for i, line in enumerate(lines[1:], start=1) if line and line.decode().split(";")[consent] == '"Y"')
    cells = lines[row].split(b";")
    lines[row] = b";".join([b'""', *cells[1:]])
    path.write_bytes(b"\r\n".join(lines))
    for kind in ("municipalities", "households"):
        for landed in (tmp_path / kind).iterdir():
            (home.landing(kind) / landed.name).write_bytes(landed.read_bytes())
    err = _ingest(capsys)
    assert f"quarantined: {path.name}, row {row + 1}, column submission_id: required" in err
    held = [line for line in err.splitlines() if line.startswith("held out: ")]
    assert len(held) == 1 and "latest submission failed validation" in held[0]  # itself, not its file's households
    assert _query(home, "SELECT count(*) FROM held_out WHERE \"column\" = 'members'") == [(0,)]
    assert _query(home, "SELECT count(*) FROM households")[0][0] > 10


UNLINKED_NAME = "Unverknuepft-Person-Qz"


def _with_unlinked_row(sample: SampleRound, index: int) -> pl.DataFrame:
    """The sample's members with the member at `index` (_person's) without its link and renamed UNLINKED_NAME
    (no other person has that name, so finding it finds that row)."""
    first = pl.int_range(pl.len()) == index
    return sample.members.with_columns(
        pl.when(first).then(pl.lit(None, dtype=pl.Utf8)).otherwise(pl.col("submission_id")).alias("submission_id"),
        pl.when(first).then(pl.lit(UNLINKED_NAME)).otherwise(pl.col("member_name")).alias("member_name"),
    )


def _stored_text(home: RematchHome) -> str:
    """Every row of every table of both DuckDB files, as text (as test_limesurvey's privacy scan reads them)."""
    texts = []
    for path in (home.warehouse_path, home.identity_path):
        with duckdb.connect(str(path), read_only=True) as con:
            tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
            texts += [str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables]
    return " ".join(texts)


def test_erasing_a_household_erases_the_unlinked_member_rows_that_may_be_its_person(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A person of the erased household whose member row lost its link (name, birth date in the identity store
    and the export) cannot be found by submission id: erasure takes every unlinked row of the members files
    that carry the members of its households file. The other households of that file stay held out (whose
    person the row was cannot be told), and every linked row of theirs stays."""
    out = tmp_path / "sample"
    write_round(sample, out, "csv")
    index, owner = _person(sample)
    members_csv = out / "households" / f"members_{sample.period}.csv"
    _with_unlinked_row(sample, index).write_csv(members_csv)
    land(home, out)
    _ingest(capsys)
    household = sample.households.filter(pl.col("submission_id") == owner).row(0, named=True)
    others = _query(home, "SELECT count(*) FROM raw_members WHERE submission_id <> ?", [owner])[0][0]
    assert UNLINKED_NAME in _stored_text(home)

    capsys.readouterr()
    assert main(["erase", household["household_ref"]]) == 0
    assert "1 member row without a household's link in the exports that held its members erased with it" in capsys.readouterr().out
    identifying = [household[c] for c in ("household_ref", "contact_name", "contact_phone", "contact_email", "current_address") if household[c]]
    # Its persons' names, where no other household has one alike (the one unlinked is renamed).
    names = sample.members.with_row_index("_i").filter(pl.col("_i") != index)
    others_names = set(names.filter(pl.col("submission_id") != owner)["member_name"])
    identifying += [UNLINKED_NAME, *(n for n in names.filter(pl.col("submission_id") == owner)["member_name"] if n not in others_names)]
    stored = _stored_text(home)
    assert [text for text in identifying if text in stored] == []  # before: the unlinked row's name stayed
    copies = [p for folder in (home.archive, home.landing("households")) for p in folder.iterdir() if p.is_file()]
    assert not [p.name for p in copies if UNLINKED_NAME.encode() in p.read_bytes()]
    assert _query(home, "SELECT count(*) FROM raw_members WHERE submission_id <> ?", [owner]) == [(others,)]

    # The others of the file stay held out: the erased row may have been one of their persons.
    err = _ingest(capsys)
    held = [line for line in err.splitlines() if line.startswith("held out: ")]
    assert held and members_csv.name in held[0] and "erased" in held[0]
    assert _query(home, "SELECT count(*) FROM households") == [(0,)]
    assert UNLINKED_NAME not in err

    # The survey tool's next export still holds the row: ingestion takes it out with the erased submission's lines.
    again = home.landing("households") / "members_again.csv"
    again.write_bytes(members_csv.read_bytes().replace(b"\n", b"\r\n"))
    capsys.readouterr()
    assert main(["ingest"]) == 0
    out = capsys.readouterr().out
    assert "left out: members_again.csv: lines of erased submissions (taken out of the landed and archived copies): 2" in out
    assert UNLINKED_NAME not in _stored_text(home) and UNLINKED_NAME.encode() not in again.read_bytes()
    assert _query(home, "SELECT count(*) FROM households") == [(0,)]


def _ingested_with_its_household_valid(home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    """The sample round landed as canonical CSVs and ingested; returns the submission id of _person's household,
    checked valid (the export a re-submission edits)."""
    out = tmp_path / "first"
    write_round(sample, out, "csv")
    land(home, out)
    _ingest(capsys)
    _, owner = _person(sample)
    assert _query(home, "SELECT count(*) FROM households WHERE submission_id = ?", [owner]) == [(1,)]
    return owner

def test_a_resubmitted_household_whose_new_members_file_holds_only_its_unlinked_row_is_held_out(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Canonical CSVs: the household's submission is edited (households file again, later submitted_at), and in the
    members file beside it its only row has lost the link. Its members would come from the older file (the latest
    file naming the submission), so it was matched on the older submission's persons; now every household of the
    households file whose members file holds the unlinked row is held out, it too."""
    owner = _ingested_with_its_household_valid(home, sample, tmp_path, capsys)

    # The re-submission, exported with a few other households: the household edited, a person fewer, and that
    # person's row without its link.
    again = [owner, *[s for s in sample.households["submission_id"].head(8) if s != owner]]
    edited = sample.households.filter(pl.col("submission_id").is_in(again)).with_columns(
        pl.when(pl.col("submission_id") == owner).then(pl.lit("2026-07-20T09:00:00")).otherwise(pl.col("submitted_at")).alias("submitted_at")
    )
    members = sample.members.filter(pl.col("submission_id").is_in(again)).with_row_index("_i")
    kept = members.filter(pl.col("submission_id") == owner)["_i"][0]
    resubmitted = members.filter((pl.col("submission_id") != owner) | (pl.col("_i") == kept)).with_columns(
        pl.when(pl.col("_i") == kept).then(pl.lit(None, dtype=pl.Utf8)).otherwise(pl.col("submission_id")).alias("submission_id")
    ).drop("_i")
    (home.landing("households") / "households_edited.csv").write_bytes(edited.write_csv().encode())
    (home.landing("households") / "members_edited.csv").write_bytes(resubmitted.write_csv().encode())
    err = _ingest(capsys)
    assert "members_edited.csv" in err and UNLINKED_MEMBER_RULE in err
    # Before: it alone stayed, matched on the older members file's persons.
    assert _query(home, "SELECT count(*) FROM households WHERE submission_id = ?", [owner]) == [(0,)]
    assert _query(home, "SELECT count(*) FROM held_out WHERE submission_id = ? AND \"column\" = 'members'", [owner]) == [(1,)]
    assert {s for (s,) in _query(home, "SELECT submission_id FROM households")}.isdisjoint(again)
    _round_proposes_others_not(home, owner)


def _round_proposes_others_not(home: RematchHome, owner: str) -> None:
    """`rematch round r1` proposes households, none of them the held-out submission `owner`."""
    assert main(["round", "r1"]) == 0
    proposed = {s for (s,) in _query(home, "SELECT DISTINCT h.submission_id FROM proposals p JOIN raw_households h USING (household_pseudonym)")}
    assert proposed and owner not in proposed

def test_a_kobo_parent_index_naming_another_submission_than_submission_uuid_stops_the_workbook(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A repeat row whose `_parent_index` was changed to another existing main row (a sorted sheet, an edited cell)
    while `_submission__uuid` still names its household: whose person it is cannot be told. Before, the person was
    read as the other household's (one too many there, one too few in its own)."""
    book, sheet, parent, uuid, row, owner = _kobo_member_row(sample, tmp_path)
    workbook_path = tmp_path / "households" / "rematch_household.xlsx"
    other = next(sheet.cell(r, parent).value for r in range(2, sheet.max_row + 1) if sheet.cell(r, uuid).value not in (owner, None))
    sheet.cell(row, parent).value = other
    book.save(workbook_path)
    for kind in ("municipalities", "households"):
        for path in (tmp_path / kind).iterdir():
            (home.landing(kind) / path.name).write_bytes(path.read_bytes())
    capsys.readouterr()
    assert main(["ingest"]) == 1  # a rejected file
    err = capsys.readouterr().err
    assert (
        f"rejected: rematch_household.xlsx [sheet members], row {row}, column _parent_index: kobo: repeat row's _parent_index"
        " and _submission__uuid name different submissions" in err
    )
    assert owner not in err
    assert _query(home, "SELECT count(*) FROM raw_members") == [(0,)]


def _landed_with_its_person_linked(home: RematchHome, sample: SampleRound, tmp_path: Path) -> tuple[int, str, pl.DataFrame]:
    """The sample round landed as canonical CSVs, its person of _person linked as exported; returns that person's
    row index, its household's submission id and the members with that row's link emptied (_with_unlinked_row)."""
    out = tmp_path / "sample"
    write_round(sample, out, "csv")
    index, owner = _person(sample)
    unlinked = _with_unlinked_row(sample, index)
    unlinked.with_columns(sample.members["submission_id"]).write_csv(out / "households" / f"members_{sample.period}.csv")
    land(home, out)
    return index, owner, unlinked

@pytest.mark.parametrize(
    "when", ["later_members_file_of_it_alone", "later_export_losing_no_other_line", "members_file_of_it_alone_before"]
)
def test_an_erased_households_person_without_its_link_does_not_come_back(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture, when: str
) -> None:
    """After `rematch erase`, an export in which the household's only row is a member row without its link (a
    members file of that row alone; the tool's next export with its household and linked rows deleted but that row
    left) brought the person's name and birth date back into the identity store: nothing of the household was
    left for ingestion to recognise. An empty link cannot be told whose it is, so after an erasure it is taken
    out like the erased lines; erasure takes such a row stored before it too (a members file of it alone)."""
    # The person is in the first export too, linked (and so erased with the household), under the same name.
    index, owner, unlinked = _landed_with_its_person_linked(home, sample, tmp_path)
    alone = home.landing("households") / "members_unlinked_alone.csv"
    if when == "members_file_of_it_alone_before":
        alone.write_bytes(unlinked.slice(index, 1).write_csv().encode())
    _ingest(capsys)
    assert UNLINKED_NAME in _stored_text(home)
    household = sample.households.filter(pl.col("submission_id") == owner).row(0, named=True)
    capsys.readouterr()
    assert main(["erase", household["household_ref"]]) == 0

    if when == "later_members_file_of_it_alone":
        alone.write_bytes(unlinked.slice(index, 1).write_csv().encode())
    elif when == "later_export_losing_no_other_line":
        # The household and its linked rows deleted in the tool; the row that lost its link stayed.
        later = unlinked.filter((pl.col("submission_id") != owner).fill_null(True))
        (home.landing("households") / "households_later.csv").write_bytes(sample.households.filter(pl.col("submission_id") != owner).write_csv().encode())
        # CRLF, as the tool writes it: without the row it is not the erasure's copy of the first export byte for byte.
        (home.landing("households") / "members_later.csv").write_bytes(later.write_csv().encode().replace(b"\n", b"\r\n"))
    capsys.readouterr()
    main(["ingest"])
    cli = capsys.readouterr()
    assert UNLINKED_NAME not in _stored_text(home)  # before: back in member_identity (and raw_members, pseudonymised)
    copies = [p for folder in (home.archive, home.landing("households")) for p in folder.iterdir() if p.is_file()]
    assert not [p.name for p in copies if UNLINKED_NAME.encode() in p.read_bytes()]
    assert UNLINKED_NAME not in cli.out + cli.err
    if when == "later_export_losing_no_other_line":
        assert "left out: members_later.csv: lines of erased submissions (taken out of the landed and archived copies): 1" in cli.out
        # The row may have been another household's person: that file's households stay held out.
        held = [line for line in cli.err.splitlines() if line.startswith("held out: ")]
        assert held and all("members_later.csv" in line and "erased with a household" in line for line in held)
        assert _query(home, "SELECT count(*) FROM households") == [(0,)]


def test_a_resubmission_exported_alone_with_only_its_unlinked_row_is_held_out(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The re-submission exported alone: a households file of that one household (later submitted_at) and a members
    file holding only its row that lost the link. No linked row pairs the members file with a households file, so
    the household was matched on the older file's persons; now a household exported again without member rows of
    its own, whose members come from a file that landed no later than such a members file, is held out."""
    owner = _ingested_with_its_household_valid(home, sample, tmp_path, capsys)
    valid_before = _query(home, "SELECT count(*) FROM households")[0][0]

    edited = sample.households.filter(pl.col("submission_id") == owner).with_columns(pl.lit("2026-07-20T09:00:00").alias("submitted_at"))
    row = sample.members.filter(pl.col("submission_id") == owner).head(1).with_columns(pl.lit(None, dtype=pl.Utf8).alias("submission_id"))
    (home.landing("households") / "households_edited.csv").write_bytes(edited.write_csv().encode())
    (home.landing("households") / "members_edited.csv").write_bytes(row.write_csv().encode())
    err = _ingest(capsys)
    assert f"quarantined: members_edited.csv, row 2, column submission_id: {UNLINKED_MEMBER_RULE}" in err
    held = [line for line in err.splitlines() if line.startswith("held out: ")]
    assert len(held) == 1 and "members_edited.csv, row 2, column submission_id" in held[0] and owner not in held[0]
    # Before: matched on the older members file's persons. The others (not exported again) stay valid.
    assert _query(home, "SELECT count(*) FROM held_out WHERE submission_id = ? AND \"column\" = 'members'", [owner]) == [(1,)]
    assert _query(home, "SELECT count(*) FROM households WHERE submission_id = ?", [owner]) == [(0,)]
    assert _query(home, "SELECT count(*) FROM households") == [(valid_before - 1,)]
    _round_proposes_others_not(home, owner)


def test_a_retried_export_leaves_out_the_unlinked_rows_that_go_with_an_erased_household(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`rematch ingest --retry-rejected` of an export refused after an erasure (a members file of the erased
    household's persons, one of them without its link, and another household's): the retry left out the erased
    submission's rows only, so the unlinked row's name came back. It now leaves out what ingestion leaves out
    (formats.erased.erased_lines), and the file's households stay held out."""
    index, owner, unlinked = _landed_with_its_person_linked(home, sample, tmp_path)
    _ingest(capsys)
    household = sample.households.filter(pl.col("submission_id") == owner).row(0, named=True)
    assert main(["erase", household["household_ref"]]) == 0

    other = str(sample.members.filter(pl.col("submission_id") != owner)["submission_id"][0])
    refused = unlinked.filter(pl.col("submission_id").is_in([owner, other]) | pl.col("submission_id").is_null())
    after = home.landing("households") / "members_after.csv"
    after.write_bytes(_excel_padded(refused))
    _refused_by_an_older_version(home, after, "header: unexpected columns , ; duplicated columns")
    capsys.readouterr()
    assert main(["ingest", "--retry-rejected"]) == 0
    cli = capsys.readouterr()
    kept = refused.filter(pl.col("submission_id") == other).height
    assert f"retried: members_after.csv: ingested {counted(kept, 'row')} (refused before); {counted(refused.height - kept, 'row')} of erased households left out" in cli.out
    assert UNLINKED_NAME not in _stored_text(home)  # before: back in member_identity
    assert _query(home, "SELECT count(*) FROM raw_members WHERE file_name = 'members_after.csv'") == [(kept,)]
    # The row may have been the other household's person: it stays held out (its persons come from this file).
    assert _query(home, "SELECT count(*) FROM held_out WHERE submission_id = ? AND \"column\" = 'members'", [other]) == [(1,)]
    assert "members_after.csv" in cli.err and "erased with a household" in cli.err


def _erased_after_landing(home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, pl.DataFrame]:
    """_landed_with_its_person_linked, ingested, and its household erased with `rematch erase`."""
    index, owner, unlinked = _landed_with_its_person_linked(home, sample, tmp_path)
    _ingest(capsys)
    household = sample.households.filter(pl.col("submission_id") == owner).row(0, named=True)
    assert main(["erase", household["household_ref"]]) == 0
    return index, owner, unlinked


def _copies_naming(home: RematchHome, text: str) -> list[str]:
    """Archived and landed copies (every landing kind) whose bytes hold the text."""
    folders = [home.archive, *(home.landing(kind) for kind in ("households", "municipalities", "decisions"))]
    return [p.name for folder in folders if folder.exists() for p in folder.iterdir() if p.is_file() and text.encode() in p.read_bytes()]


def test_a_rejected_export_landing_after_an_erasure_keeps_no_line_of_the_erased_household(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The tool's next members file, refused by the readers (a row with a cell too many after the erased household's
    rows), kept the erased household's persons (names, birth dates) in its archived and landed copies: erased lines
    were only found by reading the file. Now the lines naming an erased submission are found in the refused file's
    cells and taken out of both copies as for a file that reads; the rejection names the row of the copy (the file
    now in landing/), which is what `rematch ingest --retry-rejected` reads and names too."""
    index, owner, unlinked = _erased_after_landing(home, sample, tmp_path, capsys)
    members = unlinked.with_columns(sample.members["submission_id"])  # the person linked again, as the tool exports it
    names = members.filter(pl.col("submission_id") == owner)["member_name"].to_list()
    assert UNLINKED_NAME in names
    lines = members.write_csv().splitlines()
    owner_lines = [i + 2 for i, s in enumerate(members["submission_id"]) if s == owner]  # file rows (header = 1)
    broken = max(owner_lines) + 3
    lines[broken - 1] += ",zz"  # a cell too many: the readers refuse the file at that row
    landed = home.landing("households") / "members_refused.csv"
    landed.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    capsys.readouterr()
    main(["ingest"])
    cli = capsys.readouterr()
    in_copy = broken - len(owner_lines)
    assert f"rejected: members_refused.csv, row {in_copy}: row has" in cli.err
    assert landed.read_bytes().decode().split("\r\n")[in_copy - 1].endswith(",zz")  # that row in the landed copy
    assert "left out: members_refused.csv: lines of erased submissions (taken out of the landed and archived copies): " + str(len(owner_lines)) in cli.out
    others_names = set(members.filter(pl.col("submission_id") != owner)["member_name"])
    # Before: each in the archived and landed copies (names no other household has).
    assert [name for name in names if name not in others_names and _copies_naming(home, name)] == []
    assert UNLINKED_NAME not in _stored_text(home)
    archived = _query(home, "SELECT archived_as FROM ingestion_log WHERE file_name = 'members_refused.csv' AND status = 'rejected'")
    assert len(archived) == 1 and (home.archive / archived[0][0]).read_bytes() == landed.read_bytes()

    # The retry reads that copy: the same row is named, nothing stored, nothing of the household back.
    capsys.readouterr()
    main(["ingest", "--retry-rejected"])
    cli = capsys.readouterr()
    assert f"still rejected: members_refused.csv, row {in_copy}: row has" in cli.out + cli.err
    assert UNLINKED_NAME not in _stored_text(home) and _copies_naming(home, UNLINKED_NAME) == []


def test_an_export_equal_to_a_stored_file_without_its_erased_lines_keeps_its_households_held_out(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The tool's next members file is the first one with the erased household's person unlinked: without the
    erased lines (its linked rows, the unlinked row) it is byte for byte the erasure's copy of the first file, so it
    was `already_ingested`: no `left out` line and no record of the unlinked row taken, which may have been another
    household's person. Now the lines are counted and the stored file's households held out, as for a new file."""
    index, owner, unlinked = _erased_after_landing(home, sample, tmp_path, capsys)
    stored = _query(home, "SELECT DISTINCT file_sha256 FROM raw_members")
    assert len(stored) == 1
    before = _query(home, "SELECT count(*) FROM households")[0][0]
    assert before > 10
    next_file = home.landing("households") / "members_next.csv"
    next_file.write_bytes(unlinked.write_csv().encode())
    capsys.readouterr()
    assert main(["ingest"]) == 0
    cli = capsys.readouterr()
    taken = unlinked.filter((pl.col("submission_id") == owner) | pl.col("submission_id").is_null()).height
    assert f"left out: members_next.csv: lines of erased submissions (taken out of the landed and archived copies): {taken}" in cli.out
    # Recorded against the stored file whose rows that content is (before: nothing recorded, all valid).
    assert _query(home, "SELECT file_sha256, member_rows FROM erased_unlinked_members WHERE file_name = 'members_next.csv'") == [(stored[0][0], 1)]
    held = [line for line in cli.err.splitlines() if line.startswith("held out: ")]
    assert held and "members_next.csv" in held[0] and "erased with a household" in held[0]
    assert _query(home, "SELECT count(*) FROM households") == [(0,)]
    assert UNLINKED_NAME not in _stored_text(home) and _copies_naming(home, UNLINKED_NAME) == []
    # Landing those bytes again changes nothing: no second record.
    next_file.write_bytes(unlinked.write_csv().encode())
    assert main(["ingest"]) == 0
    assert _query(home, "SELECT count(*) FROM erased_unlinked_members WHERE file_name = 'members_next.csv'") == [(1,)]


def test_a_members_file_landing_before_its_households_file_keeps_the_new_households_persons_after_an_erasure(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The tool's next export, its members file landing first: the erased household's rows (one without its link)
    and a new household's persons, whose households file has not landed. The new persons' rows name a submission
    no households file has yet; they were taken as erased lines (the sheet lost a line), so the archived copy lost
    them. Now only an erased submission's rows and rows with an empty link go: the new persons stay (held out
    until their households file lands), the erased household's persons (linked or not) do not come back."""
    index, owner, unlinked = _erased_after_landing(home, sample, tmp_path, capsys)
    other = str(sample.households.filter(pl.col("submission_id") != owner)["submission_id"][0])
    new = "0f5e2a55-7d3b-4c1e-9a4f-2b8c6d1e3f70"
    persons = sample.members.filter(pl.col("submission_id") == other).with_columns(
        pl.lit(new).alias("submission_id"), (pl.lit("Neu-Person-Xw") + pl.int_range(pl.len()).cast(pl.Utf8)).alias("member_name")
    )
    (home.landing("households") / "members_new.csv").write_bytes(pl.concat([unlinked, persons]).write_csv().encode())
    capsys.readouterr()
    main(["ingest"])
    cli = capsys.readouterr()
    taken = unlinked.filter((pl.col("submission_id") == owner) | pl.col("submission_id").is_null()).height
    assert f"left out: members_new.csv: lines of erased submissions (taken out of the landed and archived copies): {taken}" in cli.out
    # The new persons: stored and in both copies (before: taken out of them).
    assert _query(home, "SELECT count(*) FROM raw_members WHERE submission_id = ?", [new]) == [(persons.height,)]
    assert len(_copies_naming(home, "Neu-Person-Xw0")) == 2
    # The erased household's persons: in no table or copy.
    assert _query(home, "SELECT count(*) FROM raw_members WHERE submission_id = ?", [owner]) == [(0,)]
    assert UNLINKED_NAME not in _stored_text(home) and _copies_naming(home, UNLINKED_NAME) == []
    assert UNLINKED_NAME not in cli.out + cli.err


@pytest.mark.parametrize("refused", ["by_a_reader_that_learns_it_later", "only_for_an_erased_line"])
def test_a_refused_export_without_its_erased_lines_is_stored_from_its_copy(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    """The copy left of a refused export is what is read from then on. Refused by this version's readers (as an
    older version refused Excel's padded CSV: the reading replaced here by one that refuses the file), the retry of
    a version that reads it stores the other households' rows from the copy. Refused only for a line of the erased
    household (a cell too many there), the copy reads and is ingested at once."""
    from rematch_pipeline.assets import ingest as ingest_asset
    from rematch_pipeline.formats.errors import InputFileError, Violation

    index, owner, unlinked = _erased_after_landing(home, sample, tmp_path, capsys)
    members = unlinked.with_columns(sample.members["submission_id"])
    lines = members.write_csv().splitlines()
    owner_lines = [i + 2 for i, s in enumerate(members["submission_id"]) if s == owner]
    landed = home.landing("households") / "members_refused.csv"
    reads = ingest_asset.read_export
    if refused == "only_for_an_erased_line":
        lines[owner_lines[0] - 1] += ",zz"
    else:
        def older(path: Path, data: bytes, as_landed: bool = False):  # noqa: ANN202 - read_export's
            raise InputFileError(Violation(path.name, 1, None, "header: not a format this version reads"))

        monkeypatch.setattr(ingest_asset, "read_export", older)
    landed.write_bytes(("\r\n".join(lines) + "\r\n").encode())  # CRLF: not the erasure's copy of the first file byte for byte
    capsys.readouterr()
    main(["ingest"])
    cli = capsys.readouterr()
    assert f"left out: members_refused.csv: lines of erased submissions (taken out of the landed and archived copies): {len(owner_lines)}" in cli.out
    assert _copies_naming(home, UNLINKED_NAME) == [] and UNLINKED_NAME not in _stored_text(home)
    others = members.filter(pl.col("submission_id") != owner).height
    if refused == "by_a_reader_that_learns_it_later":
        assert "rejected: members_refused.csv, row 1: header: not a format this version reads" in cli.err
        monkeypatch.setattr(ingest_asset, "read_export", reads)  # this version's reading (undo() would drop the home too)
        capsys.readouterr()
        assert main(["ingest", "--retry-rejected"]) == 0
        cli = capsys.readouterr()
        assert f"retried: members_refused.csv: ingested {counted(others, 'row')} (refused before)" in cli.out
        assert "of erased households left out" not in cli.out  # they had left the copy already
    else:
        assert "rejected" not in cli.err
    assert _query(home, "SELECT count(*) FROM raw_members WHERE file_name = 'members_refused.csv'") == [(others,)]
    # Stored rows are numbered as the copy's lines: row 2 of the copy is its first member.
    first = _query(home, "SELECT min(file_row) FROM raw_members WHERE file_name = 'members_refused.csv'")[0][0]
    assert first == 2 and UNLINKED_NAME not in _stored_text(home)


@pytest.mark.parametrize("label", ["in_the_link", "in_the_name"])
def test_a_sum_row_under_the_members_table_is_no_unlinked_member_for_erasure(
    home: RematchHome, sample: SampleRound, tmp_path: Path, capsys: pytest.CaptureFixture, label: str
) -> None:
    """A row under a members CSV holding no person's answers: "Summe" in column A, the link, or a name alone where
    an export's name is, the link empty (the two cannot be told apart without reading the cell). Validation says it
    once (NO_PERSON_RULE) and holds no household out. Erasure took it as an unlinked member that may be the erased
    household's person and recorded it (erased_unlinked_members), which held every household of the file out again;
    the tool's next export lost it the same way. It is still taken where it may be the household's (a name alone
    is erased with it), but not recorded: the file's other households stay matched."""
    from rematch_pipeline.validation import NO_PERSON_RULE

    out = tmp_path / "sample"
    write_round(sample, out, "csv")
    members_csv = out / "households" / f"members_{sample.period}.csv"
    total = {c: None for c in sample.members.columns} | ({"submission_id": "Summe"} if label == "in_the_link" else {"member_name": UNLINKED_NAME})
    pl.concat([sample.members, pl.DataFrame([total], schema=sample.members.schema)]).write_csv(members_csv)
    land(home, out)
    _ingest(capsys)
    valid = _query(home, "SELECT count(*) FROM households")[0][0]
    assert valid > 1 and _query(home, "SELECT count(*) FROM held_out") == [(0,)]
    _, owner = _person(sample)
    household = sample.households.filter(pl.col("submission_id") == owner).row(0, named=True)
    capsys.readouterr()
    assert main(["erase", household["household_ref"]]) == 0
    # Not said to hold the file's other households out (it said so of a name alone, the row taken but holding no person).
    assert "stay held out" not in capsys.readouterr().out

    err = _ingest(capsys)
    assert not [line for line in err.splitlines() if line.startswith("held out: ")]  # before: every household of the file
    assert _query(home, "SELECT count(*) FROM erased_unlinked_members") == [(0,)]
    assert _query(home, "SELECT count(*) FROM households") == [(valid - 1,)]
    # A name alone may be the erased household's person: gone from the copies and both stores.
    assert _copies_naming(home, UNLINKED_NAME) == [] and UNLINKED_NAME not in _stored_text(home)
    # The tool's next export still holds the erased household's lines and the row: the former are taken, the row too
    # where its link is empty (it may be the household's person), one naming no household stays (as any such link).
    again = home.landing("households") / "members_again.csv"
    again.write_bytes(members_csv.read_bytes().replace(b"\n", b"\r\n"))
    capsys.readouterr()
    assert main(["ingest"]) == 0
    cli = capsys.readouterr()
    persons = sample.members.filter(pl.col("submission_id") == owner).height
    taken = persons + (label == "in_the_name")
    assert f"left out: members_again.csv: lines of erased submissions (taken out of the landed and archived copies): {taken}" in cli.out
    assert not [line for line in cli.err.splitlines() if line.startswith("held out: ")]
    assert _query(home, "SELECT count(*) FROM erased_unlinked_members") == [(0,)]
    assert _query(home, "SELECT count(*) FROM households") == [(valid - 1,)]
    assert _copies_naming(home, UNLINKED_NAME) == [] and UNLINKED_NAME not in _stored_text(home)
    # The one line left is the next export's row naming no household, under its members (the erased lines out).
    assert _query(home, "SELECT file_name, file_row, rule FROM quarantine WHERE \"table\" = 'members' ORDER BY file_name") == (
        [(again.name, sample.members.height - persons + 2, NO_PERSON_RULE)] if label == "in_the_link" else []
    )
