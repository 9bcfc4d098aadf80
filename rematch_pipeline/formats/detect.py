"""One entry point for every accepted input file: limits first, then the reader chosen by content.

The file name never decides: an export renamed to ``households.csv`` is still read as what it is.

- XLSX (zip signature ``PK\\x03\\x04``): after the zip guards, a KoboToolbox workbook if any sheet's
  header carries Kobo metadata (``_uuid``, ``_index``, ``_submission_time``, ``_parent_index`` …),
  a LimeSurvey "Microsoft Excel" export if a sheet's header is a LimeSurvey one (as for CSV below),
  else a canonical template workbook.
- A zip without ``[Content_Types].xml`` is a zip of CSV exports (ODK Central's CSV zip: the main
  table and one file per repeat): each ``.csv`` member is read as a CSV below, and errors name
  the member.
- Anything else is text (CSV): a Kobo export if it has Kobo metadata (``_uuid``,
  ``_submission_time``, ``__version__``, ``meta/instanceID`` …), an ODK Central one if it has
  Central's (``SubmissionDate``, ``KEY``, ``PARENT_KEY`` …); a LimeSurvey export if the header has
  at least three of our LimeSurvey question texts, or ``id`` plus LimeSurvey's
  ``submitdate``/``lastpage``/``startlanguage`` (or at least three of our question codes); a LimeSurvey
  VV export (tab separated, those columns' codes in row 2 under the question texts); else a canonical
  template.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
import zlib
from pathlib import Path

import polars as pl

from rematch_pipeline.formats.canonical import (
    HIDDEN_SHEET,
    REPEATED_HEADER,
    ParsedTable,
    read_canonical_records,
    read_template_book,
    with_differing_copies,
    with_differing_copies_across,
    with_replaced_letters,
)
from rematch_pipeline.formats.errors import InputFileError, Violation, table_place
from rematch_pipeline.formats.kobo import (
    is_central_header,
    is_kobo_header,
    read_kobo_book,
    read_kobo_records,
    sheet_headers,
    xlsx_headers,
)
from rematch_pipeline.formats.limesurvey import is_limesurvey_header, read_limesurvey_book, read_limesurvey_records, read_limesurvey_vv, vv_records
from rematch_pipeline.formats.limits import (
    EXCEL_SEPARATOR_READ,
    CsvRecords,
    check_file_size,
    check_xlsx,
    check_zip,
    container_of,
    csv_records,
    is_csv_member,
    unended_last_row_read,
)
from rematch_pipeline.formats.workbook import Workbook, read_workbook

# Formats read_export can tell apart (also what `detect_format` returns).
FORMATS: tuple[str, ...] = (
    "kobo-xlsx",
    "limesurvey-xlsx",
    "canonical-xlsx",
    "csv-zip",
    "limesurvey-csv",
    "limesurvey-vv",
    "kobo-csv",
    "odk-central-csv",
    "canonical-csv",
)
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Excel saves a workbook with a password to open as an OLE file holding the encrypted .xlsx in a stream
# of this name (ECMA-376 encryption); it is no legacy .xls.
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_PASSWORD_RULE = (
    "format: password-protected workbook (encrypted, cannot be read); remove the password to open "
    "(Excel: File > Info > Protect Workbook > Encrypt with Password, clear it) and save again"
)
_ODF_MIMETYPE = b"application/vnd.oasis.opendocument"  # LibreOffice's .ods (and the other ODF files)


def _guard(data: bytes, file: str) -> str:
    """Size and container checks; the container: "xlsx", "zip" (of CSVs) or "text"."""
    check_file_size(len(data), file)
    if data.startswith(_OLE_SIGNATURE):
        if _ENCRYPTED_PACKAGE in data:
            raise InputFileError(Violation(file, None, None, _PASSWORD_RULE))
        raise InputFileError(Violation(file, None, None, "format: legacy Excel .xls (or another OLE file); save as .xlsx or CSV"))
    container = container_of(data)
    if container == "zip":
        check_zip(data, file)
    elif container == "xlsx":
        check_xlsx(data, file)
        _refuse_other_zips(data, file)
    return container


def _refuse_other_zips(data: bytes, file: str) -> None:
    """A readable zip that is no Office Open XML workbook (and holds no CSVs) is refused saying what it is:
    the workbook readers would fail on a missing part (`KeyError`), naming nothing a user can act on."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        if "[Content_Types].xml" in names:
            return
        try:
            odf = "mimetype" in names and archive.read("mimetype").startswith(_ODF_MIMETYPE)
        except (zipfile.BadZipFile, OSError, zlib.error):
            odf = False
        if odf:
            raise InputFileError(Violation(file, None, None, "format: OpenDocument spreadsheet (.ods); save as .xlsx or CSV"))
    raise InputFileError(Violation(file, None, None, "zip: neither a workbook nor CSV files; land the .xlsx or the CSVs themselves"))


def _xlsx_format(headers: list[list[str]]) -> str:
    if any(is_kobo_header(h) for h in headers):
        return "kobo-xlsx"
    if any(is_limesurvey_header(h) for h in headers):
        return "limesurvey-xlsx"
    return "canonical-xlsx"


def _csv_format(records: CsvRecords, file: str) -> str:
    header = records.header
    # LimeSurvey's VV export has its codes in row 2, under the question texts.
    if vv_records(records, file) is not None:
        return "limesurvey-vv"
    # Kobo first: its label exports carry our question texts too, LimeSurvey's exports no Kobo markers.
    if is_kobo_header(header):
        return "odk-central-csv" if is_central_header(header) else "kobo-csv"
    if is_limesurvey_header(header):
        return "limesurvey-csv"
    return "canonical-csv"


def detect_format(path: Path, data: bytes) -> str:
    """Which of FORMATS a file is, by content (limits are checked first)."""
    file = path.name
    container = _guard(data, file)
    if container == "xlsx":
        return _xlsx_format(xlsx_headers(data))
    if container == "zip":
        return "csv-zip"
    return _csv_format(csv_records(data, file), file)


def read_export(path: Path, data: bytes, as_landed: bool = False) -> list[ParsedTable]:
    """Read any accepted input file into canonical tables.

    Args:
        path: where the file lies; only its name is used (in error messages).
        data: the file's bytes.
        as_landed: read an archived copy of a file ingested already (erasure, restoring members) as an older
            version read it when it landed, instead of refusing it: a workbook's formula cells without a saved value
            as empty, and those of a workbook to be recalculated when opened as their saved value; a CSV that
            Windows-1252 decodes without the check for code page 850 and Mac Roman (text.refused_code_page).

    Returns:
        ParsedTables with the canonical columns (all text) and ``file_row``; rows the tools mark
        as not to be used (incomplete LimeSurvey responses, submissions rejected in Kobo or
        Central) carry the reason in ``left_out`` and are counted in ``ParsedTable.skipped``.
        Tables read from a zip of CSVs carry the member's name as their sheet.

    Raises:
        InputFileError: the file breaks a limit, is of no accepted format, or its header does not
            match the contract; the message names file, row, column and rule, never a value.
    """
    file = path.name
    container = _guard(data, file)
    if container == "xlsx":
        # One reading of the workbook for detection and tables (the sheets are parsed once).
        tables = read_workbook(data, file, lambda book: _read_xlsx(book, file), unsaved_formulas_empty=as_landed)
    elif container == "zip":
        tables = _read_csv_zip(data, file, as_landed)
    else:
        # Tokenising once enforces the row limit for every CSV, the canonical one included.
        records = csv_records(data, file, check_code_page=not as_landed)
        tables = _with_unended_last_row(_read_csv(records, file), records, as_landed)
    if not as_landed:  # an archived copy is read as an older version read it (erasure must still find its rows)
        _refuse_members_of_one_submission_in_two_tables(tables, file)
    # Copies of one submission that differ are said in every format (validation uses one of them).
    # Names a Windows-1252 save turned into "?" are said too (stored as read).
    # And copies in two households tables of one file (a second sheet, a second main CSV).
    return with_differing_copies_across([with_replaced_letters(with_differing_copies(table)) for table in tables])


def _refuse_members_of_one_submission_in_two_tables(tables: list[ParsedTable], file: str) -> None:
    """Refuse a file whose members of one submission lie in two members tables (a workbook's members sheet copied, a
    Central zip holding its repeat CSV twice, from two exports). A person is keyed by submission and position within
    its table, so both tables' rows would be one person each, the household's persons counted twice or its names
    mixed up. Members tables naming different submissions (a workbook's members split by household) are read."""
    seen: dict[str, str | None] = {}  # submission id -> the sheet or zip member whose table named it first
    for table in tables:
        if table.table != "members" or "submission_id" not in table.frame.columns:
            continue
        ids = table.frame.select("submission_id", "file_row").filter(pl.col("submission_id").is_not_null())
        clash = ids.filter(pl.col("submission_id").is_in(list(seen)))
        if not clash.is_empty():
            first = seen[clash["submission_id"][0]] or ""
            where = table_place(first) if first else "another table"
            rule = (
                f"members: this row's household has member rows in {where} of this file too (a copied"
                " sheet, or a second export zipped with the first?): keep each household's members in one members"
                " table, then land the file again"
            )
            raise InputFileError(Violation(file, int(clash["file_row"][0]), "submission_id", rule, "members", table.sheet))
        seen.update(dict.fromkeys(ids["submission_id"].unique(maintain_order=True).to_list(), table.sheet))


def _read_xlsx(book: Workbook, file: str) -> list[ParsedTable]:
    # Each sheet's first rows once: detection reads them, and they name hidden columns (its header, the first).
    per_sheet = {sheet.title: sheet_headers(sheet) for sheet in book.sheets}
    fmt = _xlsx_format([row for rows in per_sheet.values() for row in rows])
    headings = {title: rows[0] for title, rows in per_sheet.items() if rows}
    if fmt == "kobo-xlsx":
        tables = read_kobo_book(book, file)
    elif fmt == "limesurvey-xlsx":
        tables = read_limesurvey_book(book, file)
    else:
        tables = read_template_book(book, file)
    return _with_hidden_parts(tables, book, headings)


def _with_hidden_parts(tables: list[ParsedTable], book: Workbook, headings: dict[str, list[str]]) -> list[ParsedTable]:
    """Each table with what its sheet hides in the workbook: the rows it read that are hidden (by hand, or filtered
    out by an autofilter), whether the sheet hides its rows by default, and the headings of its hidden columns. They
    stay data (a hidden row or column is still data), and ingestion says so (canonical.read_anyway_lines)."""
    sheets = {
        sheet.title: sheet for sheet in book.sheets if sheet.hidden or sheet.hidden_columns or sheet.rows_hidden_by_default or sheet.sheet_state != "visible"
    }
    if not sheets:
        return tables
    marked = []
    for table in tables:
        sheet = sheets.get(table.sheet) if table.sheet is not None else None
        if sheet is not None:
            changes: dict[str, object] = {}
            if sheet.hidden:
                read = set(table.frame["file_row"].to_list())
                changes["hidden_rows"] = tuple(row for row in sheet.hidden if row in read)
            if sheet.rows_hidden_by_default and table.frame.height:
                changes["rows_hidden_by_default"] = True
            if sheet.sheet_state != "visible":
                # An older copy of a sheet hidden beside the new one is read too, its rows maybe used (the lower
                # copy of a submission wins a tie): said, as hidden rows are.
                changes["warnings"] = (HIDDEN_SHEET, *table.warnings)
            header = headings.get(sheet.title, [])
            # A hidden column without a heading holds nothing read (the readers read columns by their headings).
            names = [header[c] for c in sheet.hidden_columns if c < len(header) and header[c]]
            if names:
                changes["hidden_columns"] = tuple(names)
            table = dataclasses.replace(table, **changes)  # type: ignore[arg-type]
        marked.append(table)
    return marked


def _with_unended_last_row(tables: list[ParsedTable], records: CsvRecords, as_landed: bool) -> list[ParsedTable]:
    """The tables with the warning for a CSV (landing file or zip member) ending inside its last row; none for an
    archived copy read as it landed (an older version ingested it)."""
    if records.unended_last_row is None or as_landed:
        return tables
    said = unended_last_row_read(records.unended_last_row)
    return [dataclasses.replace(t, warnings=(*t.warnings, said)) for t in tables]


def _read_csv(records: CsvRecords, file: str) -> list[ParsedTable]:
    if records.header_row == 1:
        return _read_csv_records(records, file)
    # Below Excel's separator line: the readers name the header (and a VV export's codes row) by fixed numbers,
    # 1 and 2, where data rows carry their own record numbers (from 3 here); those are moved down with the header.
    try:
        tables = _read_csv_records(records, file)
    except InputFileError as exc:
        row = exc.violation.row
        if row is None or row > records.header_row:
            raise
        raise InputFileError(dataclasses.replace(exc.violation, row=row + records.header_row - 1)) from exc
    return [dataclasses.replace(t, warnings=(EXCEL_SEPARATOR_READ, *t.warnings)) for t in tables]


def _read_csv_records(records: CsvRecords, file: str) -> list[ParsedTable]:
    fmt = _csv_format(records, file)
    if fmt == "limesurvey-vv":
        return read_limesurvey_vv(records, file)
    if fmt == "canonical-csv":
        return read_canonical_records(records, file)  # leaves out repeated (also retyped) headers itself
    records, repeated = _without_repeated_headers(records)
    tables = list(read_limesurvey_records(records, file)) if fmt == "limesurvey-csv" else read_kobo_records(records, file)
    if repeated and tables:
        tables[0] = dataclasses.replace(tables[0], skipped={**tables[0].skipped, REPEATED_HEADER: repeated})
    return tables


def _without_repeated_headers(records: CsvRecords) -> tuple[CsvRecords, int]:
    """The records without rows that repeat the header (two downloads pasted into one file), and how
    many there were. As for the templates, such a row is no submission: read as one it would be a
    quarantine line per column, and an option column holding its own name stops the file."""
    width = len(records.header)

    def repeats(cells: list[str]) -> bool:
        return [c.strip().lstrip("\ufeff") for c in cells[:width]] == records.header and not any(c.strip() for c in cells[width:])

    rows = [(number, cells) for number, cells in records.rows if not repeats(cells)]
    return dataclasses.replace(records, rows=rows), len(records.rows) - len(rows)


def _read_csv_zip(data: bytes, file: str, as_landed: bool = False) -> list[ParsedTable]:
    """Every CSV member of a zip (Central: main table and repeat files); the join is validation's."""
    tables: list[ParsedTable] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            member = info.filename
            if not is_csv_member(member):
                continue
            try:
                records = csv_records(archive.read(info), file, check_code_page=not as_landed)
                # A member edited by hand and zipped again may end inside its last row as a plain CSV may: said alike
                # (the line names the zip and the member: the tables' sheet).
                parsed = _with_unended_last_row(_read_csv(records, file), records, as_landed)
            except InputFileError as exc:
                raise InputFileError(dataclasses.replace(exc.violation, sheet=exc.violation.sheet or member)) from exc
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise InputFileError(Violation(file, None, None, "zip: corrupt member", sheet=member)) from exc
            tables += [dataclasses.replace(t, sheet=member) for t in parsed]
    return tables
