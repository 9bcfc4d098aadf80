"""KoboToolbox exports of our forms: KPI XLSX with a repeat sheet, KPI CSV, legacy CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from openpyxl import load_workbook

from rematch_pipeline import forms_builder
from rematch_pipeline.formats.kobo import read_kobo_csv, read_kobo_xlsx
from rematch_pipeline.schemas.contract import field_names
from tests.formats.fixtures.exports import (
    HERE,
    HOUSEHOLDS,
    LEGACY_DEVICE_DATE,
    MUNICIPALITIES,
    SECRET,
    error_of,
    expected_households,
    expected_members,
    kobo_kpi_households_xlsx,
    kobo_kpi_households_xlsx_typed_end,
    kobo_label_households_xlsx,
    kobo_label_municipalities_csv,
    kobo_legacy_households_csv,
    rows_read,
)

KPI_CSV = HERE / "kobo_kpi_municipalities.csv"
LEGACY_CSV = HERE / "kobo_legacy_households.csv"


def _kpi_rewrite(data: bytes, change) -> bytes:
    """Edit a KPI CSV as a list of rows and write it back in KPI's layout (`;`, all quoted, CRLF)."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=";"))
    rows = change(rows)
    lines = [";".join('"' + c.replace('"', '""') + '"' for c in row) for row in rows]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _drop_columns(rows: list[list[str]], keep) -> list[list[str]]:
    positions = [i for i, name in enumerate(rows[0]) if keep(name)]
    return [[row[i] for i in positions] for row in rows]


# ------------------------------------------------------------------ KPI XLSX


def test_kpi_xlsx_main_sheet_and_members_repeat_sheet_are_joined(tmp_path: Path) -> None:
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")
    households, members = read_kobo_xlsx(path.read_bytes(), path.name)
    assert (households.table, households.sheet) == ("households", "Haushalte Fragebogen 2026")
    assert (members.table, members.sheet) == ("members", "members")
    # The form's own submitted_at wins over Kobo's _submission_time (set to 2030 in the fixture).
    assert rows_read(households) == expected_households()
    # Members get their household's _uuid through _parent_index -> _index; codes from the summary column.
    assert rows_read(members) == expected_members()
    assert households.frame["file_row"].to_list() == [2, 3]
    assert members.frame["file_row"].to_list() == [2, 3, 4]
    assert households.frame.columns == field_names("households") + ["file_row"]


def test_kpi_xlsx_without_own_submitted_at_takes_submission_time(tmp_path: Path) -> None:
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx", own_submitted_at=False)
    households, _ = read_kobo_xlsx(path.read_bytes(), path.name)
    assert households.frame["submitted_at"].to_list() == [h["submitted_at"] for h in HOUSEHOLDS]
    # The device's date, from the form's `end` (KoboToolbox's default name, 10:14+02:00 on 2 July), dates them.
    assert households.frame["submitted_on"].to_list() == ["2026-07-02"] * len(HOUSEHOLDS)


def test_kpi_xlsx_with_the_end_time_as_date_time_cells_reads_the_server_time(tmp_path: Path) -> None:
    """Without "Store date and number responses as text", KPI writes the form's end time (our submitted_at) as a
    date-time cell without the device's UTC offset (formpack + xlsxwriter's remove_timezone, verified in their
    code). Before, that local time was read as UTC: 10:15 in German summer time became 10:15 UTC, two hours late.
    Now `_submission_time` (the server's receipt, UTC) is read instead, and the file says so once; without that
    column the device time stays, read as UTC, and the line says it may be off by the device's offset."""
    from rematch_pipeline.formats.canonical import read_anyway_lines
    from rematch_pipeline.formats.detect import read_export

    device = ["2026-07-02T10:15:11.000+02:00", "2026-07-03T19:40:02.000+02:00"]
    server = ["2026-07-02T08:15:18", "2026-07-03T17:40:09"]
    data = kobo_kpi_households_xlsx_typed_end(tmp_path / "typed.xlsx", device, server)
    cells = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    header = [c.value for c in next(cells.iter_rows(max_row=1))]
    typed = [row[header.index("submitted_at")] for row in cells.iter_rows(min_row=2, values_only=True)]
    assert typed[0] == dt.datetime(2026, 7, 2, 10, 15, 11)  # the wall clock, offset gone
    households, members = read_export(Path("typed.xlsx"), data)
    assert households.frame["submitted_at"].to_list() == server
    assert rows_read(members) == expected_members()
    assert read_anyway_lines("typed.xlsx", [households, members]) == [
        "typed.xlsx [sheet Haushalte Fragebogen 2026]: 2 submissions: submitted_at (the form's end time) without its UTC"
        " offset, as KoboToolbox's XLSX export writes it without 'Store date and number responses as text' (the"
        " device's offset dropped); read from _submission_time (server time, UTC) instead; export with that option on"
        " to keep the device's time"
    ]
    # Without _submission_time: the device's time as before, and the line says what that costs.
    households, _ = read_export(Path("typed.xlsx"), kobo_kpi_households_xlsx_typed_end(tmp_path / "bare.xlsx", device, None))
    assert households.frame["submitted_at"].to_list() == ["2026-07-02T10:15:11", "2026-07-03T19:40:02"]
    [line] = read_anyway_lines("typed.xlsx", [households])
    assert "2 submissions: submitted_at (the form's end time) without its UTC offset and no _submission_time" in line
    # Stored as text (KPI's option on), the device's time with its offset is read as before, without a word.
    path = kobo_kpi_households_xlsx(tmp_path / "text.xlsx")
    households, _ = read_export(Path("text.xlsx"), path.read_bytes())
    assert households.warnings == () and households.frame["submitted_at"].to_list() == [h["submitted_at"] for h in HOUSEHOLDS]


def _edit_xlsx(path: Path, sheet: str, edit) -> bytes:
    book = load_workbook(path)
    edit(book[sheet])
    book.save(path)
    return path.read_bytes()


def _column(sheet, name: str) -> int:
    return next(cell.column for cell in sheet[1] if cell.value == name)


def test_kpi_xlsx_option_columns_alone_give_the_codes(tmp_path: Path) -> None:
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")

    def drop_summaries(sheet) -> None:
        for name in ("members/medical_needs", "members/languages"):
            sheet.delete_cols(_column(sheet, name))

    data = _edit_xlsx(path, "members", drop_summaries)
    _, members = read_kobo_xlsx(data, path.name)
    assert rows_read(members) == expected_members()


def test_kpi_xlsx_repeat_row_without_its_household_stops_the_file(tmp_path: Path) -> None:
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")
    data = _edit_xlsx(path, "members", lambda s: s.cell(4, _column(s, "_parent_index"), 99))
    message = error_of(lambda: read_kobo_xlsx(data, path.name))
    assert "export.xlsx [sheet members], row 4, column _parent_index" in message
    assert "repeat row refers to no row of the main sheet" in message


NOT_APPROVED = "submissions not approved in KoboToolbox"


def _left_out(table) -> list[str | None]:  # noqa: ANN001 - a ParsedTable
    return table.frame["left_out"].to_list()


@pytest.mark.parametrize("status", ["validation_status_not_approved", "Not Approved"])
def test_kpi_xlsx_not_approved_submission_is_read_with_its_reason(tmp_path: Path, status: str) -> None:
    first, second = HOUSEHOLDS
    statuses = {first["submission_id"]: status, second["submission_id"]: "validation_status_on_hold"}
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx", statuses=statuses)
    households, members = read_kobo_xlsx(path.read_bytes(), path.name)
    # Stored with the reason (validation leaves it and earlier copies of it out); "on hold" is no rejection.
    assert [{k: v for k, v in r.items() if k != "left_out"} for r in rows_read(households)] == expected_households()
    assert _left_out(households) == [NOT_APPROVED, None]
    assert rows_read(members) == expected_members()
    assert households.skipped == {NOT_APPROVED: 1}
    assert members.skipped == {}


def test_kpi_xlsx_with_every_submission_rejected_is_read(tmp_path: Path) -> None:
    # It may withdraw what an earlier export loaded: nothing to refuse.
    statuses = {h["submission_id"]: "validation_status_not_approved" for h in HOUSEHOLDS}
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx", statuses=statuses)
    households, _ = read_kobo_xlsx(path.read_bytes(), path.name)
    assert _left_out(households) == [NOT_APPROVED, NOT_APPROVED] and households.skipped == {NOT_APPROVED: 2}


def test_kpi_xlsx_without_rejections_has_no_left_out_column(tmp_path: Path) -> None:
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx", statuses={HOUSEHOLDS[0]["submission_id"]: "validation_status_approved"})
    households, _ = read_kobo_xlsx(path.read_bytes(), path.name)
    assert "left_out" not in households.frame.columns and households.skipped == {}


def test_legacy_csv_status_object_not_approved_is_counted_once_per_household() -> None:
    first = HOUSEHOLDS[0]
    status = '{"timestamp": 1785307200, "uid": "validation_status_not_approved", "by_whom": "coordinator"}'
    header, *rows = kobo_legacy_households_csv(slots=1, statuses={first["submission_id"]: status}).decode().splitlines()
    second_member = kobo_legacy_households_csv([{**first, "members": first["members"][1:]}], slots=1, statuses={first["submission_id"]: status})
    # One row per member: the rejected household fills rows 2 and 3 and is counted once.
    text = "\n".join([header.replace("members[1]/", "members/"), rows[0], second_member.decode().splitlines()[1], rows[1]]) + "\n"
    households, members = read_kobo_csv(text.encode(), "flat.csv")
    assert households.frame["file_row"].to_list() == [2, 4]
    assert _left_out(households) == [NOT_APPROVED, None]
    assert members.frame["file_row"].to_list() == [2, 3, 4]
    assert households.skipped == {NOT_APPROVED: 1}


def test_kpi_xlsx_unknown_repeat_column_names_sheet_and_column(tmp_path: Path) -> None:
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")
    data = _edit_xlsx(path, "members", lambda s: s.cell(1, _column(s, "members/german_level"), "members/german_level_v2"))
    message = error_of(lambda: read_kobo_xlsx(data, path.name))
    assert "[sheet members], row 1" in message
    assert "missing columns german_level" in message
    assert "unexpected columns members/german_level_v2" in message



def test_kpi_xlsx_notes_and_hidden_sheets_added_in_excel_are_left_out_and_counted(tmp_path: Path) -> None:
    """A coordinator's notes sheet or a hidden pivot beside the export's sheets is no data of ours, as beside
    a template; a sheet naming our fields without Kobo's columns must still be a Kobo sheet."""
    from openpyxl import load_workbook as open_workbook

    from rematch_pipeline.formats.canonical import OTHER_SHEETS

    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")
    book = open_workbook(path)
    notes = book.create_sheet("Notizen", 0)
    notes["A1"] = "Export geprüft"
    notes["A2"] = SECRET
    pivot = book.create_sheet("Pivot")
    pivot.append(["Anzahl", "Summe"])
    pivot.append([3, 7])
    pivot.sheet_state = "hidden"
    book.save(path)
    households, members = read_kobo_xlsx(path.read_bytes(), path.name)
    assert rows_read(households) == expected_households()
    assert rows_read(members) == expected_members()
    assert households.skipped == {OTHER_SHEETS: 2}

    copy = book.create_sheet("Kopie")
    copy.append(["household_ref", "pets"])
    book.save(path)
    message = error_of(lambda: read_kobo_xlsx(path.read_bytes(), path.name))
    assert "[sheet Kopie], row 1: header: not a KoboToolbox export" in message and SECRET not in message


def test_kpi_xlsx_with_a_sheet_copied_names_the_copy_and_the_sheet_copied(tmp_path: Path) -> None:
    """A members sheet copied in Excel stopped the file without naming a sheet: now both are named."""
    from openpyxl import load_workbook as open_workbook

    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")
    book = open_workbook(path)
    repeat = book.worksheets[1].title
    book.copy_worksheet(book.worksheets[1]).title = "Kopie"
    book.save(path)
    message = error_of(lambda: read_kobo_xlsx(path.read_bytes(), path.name))
    assert message == f"export.xlsx [sheet Kopie]: kobo: more than one repeat sheet (this and sheet {repeat}: a copied sheet, or nested repeats?); keep one"


# ------------------------------------------------------------------ KPI CSV


def test_kpi_csv_semicolon_all_quoted_crlf_with_hxl_row() -> None:
    data = KPI_CSV.read_bytes()
    assert data.startswith(b'"start";"end";') and b"\r\n" in data and b'"#adm2+code"' in data
    [table] = read_kobo_csv(data, KPI_CSV.name)
    assert table.table == "municipalities"
    assert rows_read(table) == MUNICIPALITIES
    assert table.frame["file_row"].to_list() == [3, 4]  # row 2 is the HXL tag row
    assert table.frame["municipality_id"].to_list() == ["09162", "01001"]  # leading zeros kept


def test_kpi_csv_under_excels_separator_line_still_skips_its_hxl_row() -> None:
    """Below a `sep=;` line the HXL tag row is row 3, not 2: it was read as a municipality (`#adm2+code` as its AGS,
    quarantine lines for a row that is no offer)."""
    from rematch_pipeline.formats.detect import read_export

    [table] = read_export(Path("m.csv"), b"sep=;\r\n" + KPI_CSV.read_bytes())
    assert rows_read(table) == MUNICIPALITIES
    assert table.frame["file_row"].to_list() == [4, 5]  # row 1 `sep=;`, row 2 the header, row 3 the HXL tag row


def test_kpi_csv_municipality_not_approved_is_read_with_its_reason() -> None:
    def reject_second(rows: list[list[str]]) -> list[list[str]]:
        rows[3][rows[0].index("_validation_status")] = "validation_status_not_approved"
        return rows

    [table] = read_kobo_csv(_kpi_rewrite(KPI_CSV.read_bytes(), reject_second), KPI_CSV.name)
    assert table.frame["left_out"].to_list() == [None, NOT_APPROVED]
    assert table.skipped == {NOT_APPROVED: 1}


def test_kpi_csv_per_option_one_zero_columns_without_summary() -> None:
    summaries = {"services/medical_care", "shortage_sectors"}
    data = _kpi_rewrite(KPI_CSV.read_bytes(), lambda rows: _drop_columns(rows, lambda n: n not in summaries))
    [table] = read_kobo_csv(data, "m.csv")
    assert table.frame["medical_care"].to_list() == [m["medical_care"] for m in MUNICIPALITIES]
    assert table.frame["shortage_sectors"].to_list() == [m["shortage_sectors"] for m in MUNICIPALITIES]


def test_kpi_csv_without_hxl_row_and_other_group_separators() -> None:
    def no_hxl_dotted(rows: list[list[str]]) -> list[list[str]]:
        return [[h.replace("/", ".") for h in rows[0]], *rows[2:]]

    [table] = read_kobo_csv(_kpi_rewrite(KPI_CSV.read_bytes(), no_hxl_dotted), "m.csv")
    assert rows_read(table) == MUNICIPALITIES
    assert table.frame["file_row"].to_list() == [2, 3]


def test_kpi_csv_renamed_and_missing_columns_are_named() -> None:
    def change(rows: list[list[str]]) -> list[list[str]]:
        rows = _drop_columns(rows, lambda n: n != "pets_allowed")
        rows[0] = [("capacity/capacity_persons_v2" if h == "capacity_persons" else h) for h in rows[0]]
        return rows

    message = error_of(lambda: read_kobo_csv(_kpi_rewrite(KPI_CSV.read_bytes(), change), "m.csv"))
    assert message.startswith("m.csv, row 1: header:")
    assert "missing columns capacity_persons, pets_allowed" in message
    assert "unexpected columns capacity/capacity_persons_v2" in message


def test_kpi_csv_unknown_option_is_a_form_change() -> None:
    def change(rows: list[list[str]]) -> list[list[str]]:
        rows[0] = [("services/medical_care/homeopathy" if h == "services/medical_care/general" else h) for h in rows[0]]
        return rows

    message = error_of(lambda: read_kobo_csv(_kpi_rewrite(KPI_CSV.read_bytes(), change), "m.csv"))
    assert "unexpected columns services/medical_care/homeopathy" in message


def test_kpi_csv_option_column_given_twice_is_a_duplicated_column() -> None:
    def change(rows: list[list[str]]) -> list[list[str]]:
        column = rows[0].index("shortage_sectors/it")
        return [[*row, row[column]] for row in rows]

    message = error_of(lambda: read_kobo_csv(_kpi_rewrite(KPI_CSV.read_bytes(), change), "m.csv"))
    assert "duplicated columns shortage_sectors" in message


def test_kpi_csv_bad_option_cell_names_row_and_column_not_the_value() -> None:
    def change(rows: list[list[str]]) -> list[list[str]]:
        column = rows[0].index("shortage_sectors/it")
        rows[3][column] = SECRET
        return _drop_columns(rows, lambda n: n != "shortage_sectors")

    message = error_of(lambda: read_kobo_csv(_kpi_rewrite(KPI_CSV.read_bytes(), change), "m.csv"))
    assert "m.csv, row 4, column shortage_sectors/it: kobo: option column is not 1/0 or True/False" in message


def test_label_export_of_another_form_is_refused() -> None:
    # KPI's own test export under its default language: labels that are not our forms' labels.
    real = HERE / "real" / "test_csv_export_default_options.csv"
    message = error_of(lambda: read_kobo_csv(real.read_bytes(), real.name))
    assert "XML values and headers" in message


# ------------------------------------------------------------------ KPI exports under a language (labels)


@pytest.mark.parametrize("language", [0, 1, 2], ids=["de", "en", "uk"])
@pytest.mark.parametrize("groups_in_headers", [False, True])
def test_label_xlsx_reads_like_the_xml_export(tmp_path: Path, language: int, groups_in_headers: bool) -> None:
    path = kobo_label_households_xlsx(tmp_path / "labels.xlsx", language, groups_in_headers=groups_in_headers)
    households, members = read_kobo_xlsx(path.read_bytes(), path.name)
    xml = kobo_kpi_households_xlsx(tmp_path / "xml.xlsx")
    xml_households, xml_members = read_kobo_xlsx(xml.read_bytes(), xml.name)
    assert rows_read(households) == rows_read(xml_households) == expected_households()
    assert rows_read(members) == rows_read(xml_members) == expected_members()
    assert households.frame["file_row"].to_list() == [2, 3] and members.frame["file_row"].to_list() == [2, 3, 4]


@pytest.mark.parametrize("summary_only", [False, True])
def test_label_csv_in_german_gives_the_codes(summary_only: bool) -> None:
    # Summary alone: the labels joined by spaces are split into known labels ("Kinder- und Jugendmedizin" …).
    [table] = read_kobo_csv(kobo_label_municipalities_csv(0, summary_only=summary_only), "kommunen.csv")
    assert rows_read(table) == MUNICIPALITIES
    assert table.frame["file_row"].to_list() == [3, 4]


def test_label_csv_answer_that_is_no_label_is_passed_on_for_validation() -> None:
    data = kobo_label_municipalities_csv(1).decode().replace('"Large"', '"Quite large"', 1).encode()
    [table] = read_kobo_csv(data, "m.csv")
    assert table.frame["ukrainian_community"].to_list()[0] == "Quite large"


def test_label_xlsx_not_approved_label_leaves_the_household_out(tmp_path: Path) -> None:
    statuses = {HOUSEHOLDS[1]["submission_id"]: "Not Approved"}
    path = kobo_label_households_xlsx(tmp_path / "labels.xlsx", 2, statuses=statuses)
    households, _ = read_kobo_xlsx(path.read_bytes(), path.name)
    assert _left_out(households) == [None, NOT_APPROVED]


def test_label_xlsx_with_reworded_question_names_the_column(tmp_path: Path) -> None:
    path = kobo_label_households_xlsx(tmp_path / "labels.xlsx", 1)
    label = forms_builder.field_label("households", "german_level")[1]
    data = _edit_xlsx(path, "members", lambda s: s.cell(1, _column(s, label), "German skills"))
    message = error_of(lambda: read_kobo_xlsx(data, path.name))
    assert "[sheet members], row 1" in message
    assert "missing columns german_level" in message and "unexpected columns German skills" in message


# ------------------------------------------------------------------ legacy CSV


def test_legacy_csv_group_paths_true_false_options_and_member_slots() -> None:
    data = LEGACY_CSV.read_bytes()
    assert b"members[2]/languages/uk" in data and b",True," in data and b"n/a" in data
    households, members = read_kobo_csv(data, LEGACY_CSV.name)
    assert rows_read(households) == expected_households(LEGACY_DEVICE_DATE)
    assert rows_read(members) == expected_members()
    # A member row points at the household's row: that is where its cells are.
    assert members.frame["file_row"].to_list() == [2, 2, 3]


def test_legacy_csv_one_row_per_member_layout() -> None:
    # Like the real "flattened" export: household answers repeated on each member's row.
    header, *rows = kobo_legacy_households_csv(slots=1).decode().splitlines()
    flat_header = header.replace("members[1]/", "members/")
    second = kobo_legacy_households_csv([{**HOUSEHOLDS[0], "members": HOUSEHOLDS[0]["members"][1:]}], slots=1)
    text = "\n".join([flat_header, rows[0], second.decode().splitlines()[1], rows[1]]) + "\n"
    households, members = read_kobo_csv(text.encode(), "flat.csv")
    assert rows_read(households) == expected_households(LEGACY_DEVICE_DATE)
    assert households.frame["file_row"].to_list() == [2, 4]
    assert rows_read(members) == expected_members()
    assert members.frame["file_row"].to_list() == [2, 3, 4]


def test_legacy_csv_missing_member_field_is_named() -> None:
    text = kobo_legacy_households_csv().decode()
    text = text.replace("members[1]/sex,", "members[1]/gender,")
    message = error_of(lambda: read_kobo_csv(text.encode(), "h.csv"))
    assert "unexpected columns members[1]/gender" in message


def test_legacy_csv_without_any_sex_column_reports_the_member_field_missing() -> None:
    rows = list(csv.reader(io.StringIO(kobo_legacy_households_csv().decode())))
    keep = [i for i, h in enumerate(rows[0]) if not h.endswith("/sex")]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[r[i] for i in keep] for r in rows])
    message = error_of(lambda: read_kobo_csv(out.getvalue().encode(), "h.csv"))
    assert "h.csv, row 1: header: missing columns sex" in message


@pytest.mark.parametrize("prefix", ["household/", "hh:"])
def test_legacy_csv_repeat_inside_a_group(prefix: str) -> None:
    text = LEGACY_CSV.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    header = header.replace("members[", prefix + "members[")
    if prefix.endswith(":"):
        header = header.replace("/", ":")
    households, members = read_kobo_csv((header + "\n" + rest).encode(), "h.csv")
    assert rows_read(households) == expected_households(LEGACY_DEVICE_DATE)
    assert rows_read(members) == expected_members()


def test_legacy_csv_saved_by_a_german_excel_reads_its_true_false_options() -> None:
    # Exploratory testing: a legacy KoboCAT CSV opened in a German Excel and saved comes back with WAHR/FALSCH
    # (Excel's TRUE/FALSE in German) in its option columns, `;` and Windows-1252; it was refused as
    # "option column is not 1/0 or True/False".
    rows = list(csv.reader(io.StringIO(LEGACY_CSV.read_text(encoding="utf-8"), newline="")))
    german = {"True": "WAHR", "False": "FALSCH"}
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows([rows[0]] + [[german.get(c, c) for c in row] for row in rows[1:]])
    data = out.getvalue().encode("cp1252")
    assert b";WAHR;" in data and b";FALSCH;" in data
    households, members = read_kobo_csv(data, LEGACY_CSV.name)
    assert rows_read(households) == expected_households(LEGACY_DEVICE_DATE)
    assert rows_read(members) == expected_members()


@pytest.mark.parametrize("cell", ["text", "date-time"])
def test_kpi_xlsx_submission_time_is_read_as_text_or_as_a_date_time_cell(tmp_path: Path, cell: str) -> None:
    """`_submission_time` is a text cell in the stored real export (legacy exporter, transportation_export.xlsx: inline
    strings `2013-02-14T15:37:21`); a workbook saved again by Excel or LibreOffice, or KPI without "Store date and
    number responses as text", may hold it as a date-time cell. Where the form has no end time of its own, it is the
    submission time: read alike either way, to the second, without a warning."""
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx", own_submitted_at=False)
    written: list[str] = []

    def as_cells(main) -> None:  # noqa: ANN001 - an openpyxl worksheet
        column = _column(main, "_submission_time")
        for r in range(2, main.max_row + 1):
            written.append(main.cell(r, column).value)
            if cell == "date-time":
                main.cell(r, column).value = dt.datetime.fromisoformat(written[-1])
                main.cell(r, column).number_format = "yyyy-mm-dd hh:mm:ss"

    data = _edit_xlsx(path, load_workbook(path).sheetnames[0], as_cells)
    assert all(isinstance(v, str) for v in written)
    households, _ = read_kobo_xlsx(data, path.name)
    assert households.frame["submitted_at"].to_list() == [h["submitted_at"] for h in HOUSEHOLDS] == written
    assert households.warnings == ()


def test_kpi_xlsx_sum_row_under_the_members_sheet_is_read_without_a_link(tmp_path: Path) -> None:
    """A "Summe" row under the repeat sheet (totals under the 1/0 option columns of an export without summary columns,
    `_parent_index` empty) refused the file, as an option cell not 1/0 or as a row of no household. It is read as a
    member row naming no household and holding no answers (validation: one NO_PERSON_RULE line); the rows above
    are read as before. A row holding a person without its household still stops the file (the test above)."""
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")

    def add_sum_row(sheet) -> None:
        for name in ("members/medical_needs", "members/languages"):
            sheet.delete_cols(_column(sheet, name))
        header = [cell.value for cell in sheet[1]]
        sheet.append(["Summe" if i == 0 else 2 if h.count("/") == 2 else None for i, h in enumerate(header)])  # members/languages/uk

    data = _edit_xlsx(path, "members", add_sum_row)
    _, members = read_kobo_xlsx(data, path.name)
    *persons, total = rows_read(members)
    assert persons == expected_members()
    assert int(members.frame["file_row"][-1]) == len(expected_members()) + 2  # the sheet's own row, under the header
    assert total["submission_id"] is None and all(total[f] is None for f in ("date_of_birth", "sex", "relation", "languages"))


def test_kpi_xlsx_sum_row_whose_parent_index_total_names_a_main_row_is_read_without_a_link(tmp_path: Path) -> None:
    """AutoSum under the members sheet totals `_parent_index` too; where the total equals a main row's `_index` (2
    here) the sum row joined that household, which validation then held out for a member without answers. KoboToolbox
    writes `_submission__uuid` on every repeat row: a row holding no person, with that cell empty under a main row that
    has a `_uuid`, is read without a link as any sum row. A person's row is joined as before."""
    path = kobo_kpi_households_xlsx(tmp_path / "export.xlsx")

    def add_sum_row(sheet) -> None:
        for name in ("members/medical_needs", "members/languages"):
            sheet.delete_cols(_column(sheet, name))
        header = [cell.value for cell in sheet[1]]
        total = {"_parent_index": 2, "_index": 10}
        sheet.append([total.get(h, "Summe" if i == 0 else 2 if h.count("/") == 2 else None) for i, h in enumerate(header)])

    data = _edit_xlsx(path, "members", add_sum_row)
    _, members = read_kobo_xlsx(data, path.name)
    *persons, total = rows_read(members)
    assert persons == expected_members()
    assert total["submission_id"] is None and all(total[f] is None for f in ("date_of_birth", "sex", "relation", "languages"))
