"""The tool-format writers (formats/tool_exports.py) against real exports in fixtures/real: a writer that
drifted from what KoboToolbox or LimeSurvey write (separator, quoting, line ends, BOM, KPI's metadata
columns and their order, LimeSurvey's system columns) fails here, before a reader would get used to it."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from rematch_pipeline.formats import tool_exports
from rematch_pipeline.sample import generate_round, write_round

REAL = Path(__file__).parent / "fixtures" / "real"


def _records(data: bytes, bom: bool) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf") is bom
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))


def _all_quoted_crlf(data: bytes) -> bool:
    lines = data.decode("utf-8-sig").split("\r\n")
    return all(line == "" or (line.startswith('"') and line.endswith('"')) for line in lines) and b"\n" not in data.replace(b"\r\n", b"")


def test_kpi_csv_is_written_as_kpi_writes_it(tmp_path: Path) -> None:
    real = (REAL / "test_csv_export_default_options.csv").read_bytes()
    sample = generate_round(20, 4, seed=3)
    ours = tool_exports.kobo_kpi_csv(sample.municipalities, tool_exports.kobo_form("municipalities"))
    assert _all_quoted_crlf(real) and _all_quoted_crlf(ours) and ours.endswith(b'"\r\n') and real.endswith(b'"\r\n')
    real_header, ours_header = _records(real, bom=False)[0], _records(ours, bom=False)[0]
    tail = len(tool_exports.KPI_MAIN_META)
    assert ours_header[-tail:] == real_header[-tail:]  # KPI's metadata columns, in KPI's order
    rows = _records(ours, bom=False)
    assert len(rows) == 1 + 4  # our forms carry no HXL tags: no tag row
    # A select_multiple: the summary of codes and "1"/"0" per choice.
    care = rows[0].index("medical_care")
    first = dict(zip(rows[0], rows[1]))
    assert all(first[c] == ("1" if c.split("/")[1] in first["medical_care"].split() else "0") for c in rows[0][care + 1 : care + 10])
    assert first["meta/rootUuid"] == "uuid:" + first["_uuid"] and first["_status"] == "submitted_via_web"


def test_kpi_xlsx_sheets_cells_and_members(tmp_path: Path) -> None:
    sample = generate_round(20, 4, seed=3)
    [_, households] = write_round(sample, tmp_path, "kobo-xlsx")
    with zipfile.ZipFile(households) as book:
        names = book.namelist()
        workbook = book.read("xl/workbook.xml").decode()
        main = book.read("xl/worksheets/sheet1.xml").decode()
    assert "xl/sharedStrings.xml" not in names and 't="inlineStr"' in main  # formpack's constant_memory mode
    # The form title with Excel's forbidden characters as _ and cut to 31 characters with "...".
    assert 'name="Rematch_ Haushalte _ Househo..."' in workbook and 'name="members"' in workbook
    from openpyxl import load_workbook

    book = load_workbook(households, read_only=True)
    members = list(book["members"].iter_rows(values_only=True))
    header = members[0]
    assert header[-len(tool_exports.KPI_REPEAT_META) :] == tool_exports.KPI_REPEAT_META
    assert len(members) - 1 == sample.members.height
    parent = header.index("_parent_index")
    assert all(isinstance(r[parent], int) for r in members[1:])
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    submitted = rows[0].index("submitted_at")
    assert rows[1][submitted].endswith("+02:00")  # the device's time with its offset (July in Germany)
    book.close()


def test_limesurvey_csv_is_written_as_limesurvey_writes_it() -> None:
    real = (REAL / "pulsemanager_rc2_export_responses.csv").read_bytes()
    sample = generate_round(20, 4, seed=3)
    ours = tool_exports.limesurvey_csv("households", sample.households, sample.members)
    for data in (real, ours):
        assert _all_quoted_crlf(data) and data.endswith(b'"\r\n\r\n')
    real_header, header = _records(real, bom=True)[0], _records(ours, bom=True)[0]
    assert header[:5] == real_header[:5] == ["id", "submitdate", "lastpage", "startlanguage", "seed"]
    assert header[-1] == "m10wheelchair"  # every member slot of the survey, filled or not
    rows = [dict(zip(header, r)) for r in _records(ours, bom=True)[1:] if r]
    assert len(rows) == 20 and all(r["submitdate"] for r in rows)


def test_odk_central_csv_zip_is_written_as_central_writes_it(tmp_path: Path) -> None:
    sample = generate_round(20, 4, seed=3)
    [municipalities, households] = write_round(sample, tmp_path, "odk-central")
    assert households.name == "rematch_household.csv.zip"
    with zipfile.ZipFile(households) as archive:
        assert archive.namelist() == ["rematch_household.csv", "rematch_household-members.csv"]  # main table first
        main, people = (archive.read(n) for n in archive.namelist())
    for data in (main, people):  # csv-stringify: no BOM, LF, quotes only where needed
        assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data and data.endswith(b"\n")
        assert not data.split(b"\n", 1)[0].startswith(b'"')
    header, *rows = list(csv.reader(io.StringIO(main.decode(), newline="")))
    assert header[0] == "SubmissionDate" and header[-10:] == list(tool_exports.CENTRAL_MAIN_META)
    assert "intro_note" in header and header[header.index("KEY") - 1] == "meta-instanceID"
    first = dict(zip(header, rows[0]))
    assert first["KEY"] == first["meta-instanceID"] == "uuid:" + first["submission_id"]
    assert first["SubmissionDate"].endswith(".000Z") and first["submitted_at"].endswith("+02:00")
    member_header, *member_rows = list(csv.reader(io.StringIO(people.decode(), newline="")))
    assert member_header[-2:] == ["PARENT_KEY", "KEY"] and len(member_rows) == sample.members.height
    assert member_rows[0][-1] == member_rows[0][-2] + "/members[1]"
    # Split choices: 1 where chosen, 0 otherwise, also where the question was not answered.
    split = tool_exports.odk_central_csvs(sample.municipalities.with_columns(medical_care=None), tool_exports.central_form("municipalities"), "m", split=True)
    header, *rows = list(csv.reader(io.StringIO(split["m.csv"].decode(), newline="")))
    care = header.index("medical_care")
    assert header[care + 1] == "medical_care/general" and {r[care + 1] for r in rows} == {"0"}
    with zipfile.ZipFile(municipalities) as archive:
        assert archive.namelist() == ["rematch_municipality.csv"]


def test_limesurvey_excel_texts_and_vv_exports_are_written_as_limesurvey_writes_them(tmp_path: Path) -> None:
    sample = generate_round(20, 4, seed=3)
    [_, households] = write_round(sample, tmp_path / "xlsx", "limesurvey-xlsx")
    assert households.name == "results-survey461002.xlsx"
    from openpyxl import load_workbook

    book = load_workbook(households, read_only=True)
    # ExcelWriter: the survey title with *:/\?[] as blanks, cut to 31 characters; numbers as number cells.
    assert book.sheetnames == ["Rematch  Haushalte   Households"]
    header, first = list(book.worksheets[0].iter_rows(max_row=2, values_only=True))
    row = dict(zip(header, first))
    assert row["id"] == 1 and isinstance(row["impjobs"], (int, float)) and isinstance(row["submitdate"], str)
    book.close()
    [_, texts] = write_round(sample, tmp_path / "texts", "limesurvey-texts")
    header = tool_exports.limesurvey_records(texts.read_bytes())[0]
    assert header[:2] == ["Response ID", "Date submitted"] and "householdref" not in header
    assert texts.read_bytes().startswith(b"\xef\xbb\xbf") and _all_quoted_crlf(texts.read_bytes())
    [_, vv] = write_round(sample, tmp_path / "vv", "limesurvey-vv")
    assert vv.name == "vvexport_461002.csv"
    lines = vv.read_bytes().decode().split("\n")
    assert lines[1].split("\t")[:2] == ["id", "submitdate"] and "m1languages_uk" in lines[1].split("\t")
    assert "{question_not_shown}" in lines[2]
