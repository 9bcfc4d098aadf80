"""ODK Central exports of our household form: its CSV zip, and its CSVs one by one."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from rematch_pipeline.formats.detect import detect_format, read_export
from rematch_pipeline.formats.limits import ENV_MAX_XLSX_RATIO
from rematch_pipeline.schemas.contract import field_names
from tests.formats.fixtures.exports import (
    CENTRAL_FORM_ID,
    HOUSEHOLDS,
    SECRET,
    error_of,
    expected_households,
    expected_members,
    odk_central_households,
    rows_read,
    zipped,
)

MAIN = f"{CENTRAL_FORM_ID}.csv"
MEMBERS = f"{CENTRAL_FORM_ID}-members.csv"


def _edit(data: bytes, old: str, new: str) -> bytes:
    text = data.decode()
    assert old in text
    return text.replace(old, new, 1).encode()


@pytest.mark.parametrize(("split", "groups"), [(True, True), (False, False)])
def test_central_zip_reads_households_and_members_joined_by_parent_key(split: bool, groups: bool) -> None:
    data = zipped(odk_central_households(split=split, groups=groups))
    assert detect_format(Path("submissions.csv.zip"), data) == "csv-zip"
    households, members = read_export(Path("submissions.csv.zip"), data)
    assert (households.table, households.sheet) == ("households", MAIN)
    assert (members.table, members.sheet) == ("members", MEMBERS)
    # submission_id is KEY without "uuid:"; the form's own submitted_at beats SubmissionDate (2030).
    assert rows_read(households) == expected_households()
    assert rows_read(members) == expected_members()
    assert households.frame.columns == field_names("households") + ["file_row"]
    assert households.frame["file_row"].to_list() == [2, 3]
    assert members.frame["file_row"].to_list() == [2, 3, 4]


def test_central_zip_in_a_folder_is_read_and_its_members_csv_twice_is_refused() -> None:
    # Zipped again by hand: the CSVs inside a folder are read as Central's own zip.
    exported = odk_central_households()
    foldered = zipped({f"export/{name}": data for name, data in exported.items()})
    assert [(t.table, t.frame.height) for t in read_export(Path("e.csv.zip"), foldered)] == [("households", 2), ("members", 3)]
    # The repeat CSV twice (an older export zipped with the new one): its persons would each be two, so refused.
    twice = zipped(exported, {f"old/{MEMBERS}": exported[MEMBERS]})
    message = error_of(lambda: read_export(Path("e.csv.zip"), twice))
    assert message == (
        f"e.csv.zip [member old/{MEMBERS}], row 2, column submission_id: members: this row's household has member rows in"
        f" member {MEMBERS} of this file too (a copied sheet, or a second export zipped with the first?): keep each"
        " household's members in one members table, then land the file again"
    )


REJECTED = "submissions rejected in ODK Central"


def test_central_rejected_submission_is_read_with_its_reason() -> None:
    first, second = HOUSEHOLDS
    review = {first["submission_id"]: "rejected", second["submission_id"]: "hasIssues"}
    households, members = read_export(Path("submissions.csv.zip"), zipped(odk_central_households(review=review)))
    assert households.frame["left_out"].to_list() == [REJECTED, None]  # "has issues" is no rejection
    assert households.skipped == {REJECTED: 1}
    # The repeat file has no review state: its rows are stored; validation drops them with their household.
    assert rows_read(members) == expected_members()


def test_central_csvs_one_by_one() -> None:
    files = odk_central_households()
    assert detect_format(Path(MAIN), files[MAIN]) == "odk-central-csv"
    [households] = read_export(Path(MAIN), files[MAIN])
    [members] = read_export(Path(MEMBERS), files[MEMBERS])
    assert (households.sheet, members.sheet) == (None, None)
    assert rows_read(households) == expected_households()
    assert rows_read(members) == expected_members()


def test_central_key_wins_over_an_edited_instance_id_and_submission_date_fills_in() -> None:
    first = HOUSEHOLDS[0]
    files = odk_central_households(rows=[{**first, "submitted_at": None}])
    # An edit gives the submission a new meta-instanceID; KEY keeps the first one.
    header, row = files[MAIN].decode().splitlines()
    cells = row.split(",")
    cells[header.split(",").index("meta-instanceID")] = "uuid:11111111-2222-4333-8444-555555555555"
    cells[header.split(",").index("submission_id")] = ""
    [households] = read_export(Path(MAIN), f"{header}\n{','.join(cells)}\n".encode())
    assert households.frame["submission_id"].to_list() == [first["submission_id"]]
    assert households.frame["submitted_at"].to_list() == ["2030-01-01T00:00:00.000Z"]


def test_central_zip_ignores_media_and_other_files() -> None:
    data = zipped(odk_central_households(), {"media/1712345678.jpg": b"\xff\xd8\xff" + SECRET.encode(), "README.txt": b"x"})
    tables = read_export(Path("export.zip"), data)
    assert [t.table for t in tables] == ["households", "members"]


def test_central_zip_compressed_again_on_a_mac_is_read_past_its_finder_metadata() -> None:
    # Finder's "Compress" puts the unzipped folder in the zip and an AppleDouble twin of each file under __MACOSX/
    # (binary, NUL bytes): before, that twin was read as a CSV and refused the export ("encoding: NUL bytes").
    files = odk_central_households()
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 40
    members = {f"submissions/{name}": data for name, data in files.items()}
    extra = {f"__MACOSX/submissions/._{name}": apple_double for name in files} | {"submissions/._extra.csv": apple_double}
    data = zipped(members, {**extra, "submissions/.DS_Store": b"\x00\x00\x00\x01Bud1"})
    households, members_table = read_export(Path("submissions.zip"), data)
    assert (households.table, households.sheet) == ("households", f"submissions/{MAIN}")
    assert (members_table.table, members_table.sheet) == ("members", f"submissions/{MEMBERS}")
    assert households.frame.height == len(HOUSEHOLDS)
    assert rows_read(members_table) == rows_read(read_export(Path("export.zip"), zipped(files))[1])


def test_central_unknown_column_names_zip_member_and_column() -> None:
    files = odk_central_households()
    files[MEMBERS] = _edit(files[MEMBERS], "wheelchair,", "wheelchair_new,")
    message = error_of(lambda: read_export(Path("export.zip"), zipped(files)))
    assert message.startswith(f"export.zip [member {MEMBERS}], row 1")
    assert "wheelchair_new" in message


def test_central_zip_bomb_is_stopped_before_inflating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MAX_XLSX_RATIO, "5")
    files = odk_central_households()
    files[MAIN] += b"\n" * (2 << 20)  # 2 MB of blank lines compress far above 5:1
    message = error_of(lambda: read_export(Path("export.zip"), zipped(files)))
    assert message == f"export.zip: zip: decompression ratio above 5:1 in member {MAIN} (zip bomb?)"


def test_a_corrupt_central_zip_member_is_named() -> None:
    data = bytearray(zipped(odk_central_households()))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(MEMBERS)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5 : start + 25] = b"\x00" * 20  # damage the deflated stream
    message = error_of(lambda: read_export(Path("export.zip"), bytes(data)))
    assert message.startswith(f"export.zip [member {MEMBERS}]")


def test_a_sum_row_under_centrals_repeat_csv_is_read_without_a_link() -> None:
    """A "Summe" row added under the members CSV of a Central zip (PARENT_KEY and KEY empty, totals under the option
    columns) is read as a row naming no household, which validation says once (NO_PERSON_RULE) without holding any
    household out. Pins the path the KoboToolbox workbook's repeat sheet now shares (it passed before: Central's
    summary column beats its option columns, and an empty PARENT_KEY was already read as no link)."""
    files = odk_central_households(split=True, groups=True)
    header = files[MEMBERS].decode().splitlines()[0].split(",")
    total = ",".join("Summe" if i == 0 else "3" if "/" in name else "" for i, name in enumerate(header))
    files[MEMBERS] += (total + "\n").encode()
    households, members = read_export(Path("submissions.csv.zip"), zipped(files))
    assert rows_read(households) == expected_households()
    assert members.frame["file_row"].to_list() == [2, 3, 4, 5]
    last = members.frame.row(3, named=True)
    assert last["submission_id"] is None and all(last[f] is None for f in ("date_of_birth", "sex", "relation", "languages"))


def test_a_central_zip_member_ending_inside_its_last_row_is_read_and_said() -> None:
    """A Central zip whose repeat CSV ends inside its last row (edited by hand and zipped again, or cut before it was
    zipped): a plain CSV gets a warning naming the row (limits.unended_last_row_read), a zip's member got none. Now the
    same line, naming the zip and the member; the other member, which ends with its line break, gets none."""
    from rematch_pipeline.formats.canonical import read_anyway_lines
    from rematch_pipeline.formats.limits import unended_last_row_read

    files = odk_central_households()
    whole = read_export(Path("export.zip"), zipped(files))
    files[MEMBERS] = files[MEMBERS].rstrip(b"\r\n")
    last = len(files[MEMBERS].splitlines())
    households, members = read_export(Path("export.zip"), zipped(files))
    said = unended_last_row_read(last)
    assert members.warnings == (said,) and households.warnings == ()
    assert rows_read(members) == rows_read(whole[1])
    assert read_anyway_lines("export.zip", [households, members]) == [f"export.zip [member {MEMBERS}]: {said}"]
    assert SECRET not in said
    # An archived copy read as it landed is not checked (an older version ingested it), as for a plain CSV.
    assert read_export(Path("export.zip"), zipped(files), as_landed=True)[1].warnings == ()
