"""Export files without some of their rows (or a linked reference): erasure rewrites the archived and landed copies.

Row numbers are the readers' (docs/formats.md): records of a CSV with the header as row 1 (row 2 below Excel's `sep=;`
line, which stays), rows
of an XLSX sheet as a spreadsheet shows them.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import io
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from rematch_pipeline.formats.errors import InputFileError
from rematch_pipeline.formats.limits import check_xlsx, check_zip, container_of, is_csv_member
from rematch_pipeline.formats.text import MIXED_ENCODING, UTF8_BOM, decoded, sniff_delimiter
from rematch_pipeline.formats.workbook import SheetValues, Workbook, read_workbook

if TYPE_CHECKING:
    from openpyxl.cell import Cell
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

# XLSX members whose text holds cell values: shared strings and the sheets' own (inline) cells.
_CELL_MEMBERS = re.compile(r"^xl/(sharedStrings\.xml|worksheets/[^/]+\.xml)$")


def without_rows(
    data: bytes, rows: Mapping[str | None, set[int]], file: str, unlink: Unlink | None = None
) -> bytes:
    """The file's bytes without the given rows, per sheet name (None for a CSV); file names it in errors.
    With unlink, the cells of its rows that list one of its tokens among whitespace-separated values
    (a linked household reference) lose that token.

    A CSV keeps every other byte as it was (encoding, BOM, separator, quoting, line ends; an
    unlinked record is written again with the same separator and line end); an XLSX is
    read as the readers read it and written again in constant memory (_xlsx_without), so its cells read back as
    they read before (a formula as its saved result, or as its text where the workbook is to be recalculated when
    opened), not its byte layout. In a zip of
    CSVs (ODK Central) the sheet names are member names: each member is edited as a CSV and the
    zip is written again with the same members, order, dates and compression.
    """
    container = container_of(data)
    if container == "zip":
        return _zip_without(data, rows, file, unlink)
    if container == "xlsx":
        return _xlsx_without(data, rows, unlink, file)
    return _csv_without(data, rows.get(None, set()), file, unlink)


@dataclass(frozen=True)
class Unlink:
    """Tokens to take out of the cells of some rows, per sheet name (None for a CSV)."""

    tokens: frozenset[str]
    rows: Mapping[str | None, set[int]]

    def cell(self, value: str) -> str:
        """The cell without the tokens (the other values joined by one space), or as it was."""
        values = value.split()
        return " ".join(v for v in values if v not in self.tokens) if self.tokens.intersection(values) else value


def holds_cell(data: bytes, values: Sequence[str], file: str) -> bool | None:
    """Whether some cell of an export (CSV, XLSX or a zip of CSVs) holds one of the values as a
    whole token: alone, among space-separated values (a linked reference) or after a prefix such
    as Central's ``uuid:`` (neither a letter, digit, ``_`` nor ``-`` may touch it). None if the
    file cannot be inspected (neither encoding, or an XLSX over the readers' limits).

    For files that loaded no rows (rejected ones): it reads no records, only text, so a
    malformed file is inspected too.
    """
    wanted = [v for v in values if v]
    container = container_of(data)
    try:
        if container == "zip":
            check_zip(data, file)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                texts = [decoded(archive.read(n), file)[0] for n in archive.namelist() if is_csv_member(n)]
        elif container == "xlsx":
            check_xlsx(data, file)  # the zip-bomb guards before anything is inflated
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                # Cell text is XML-escaped there, so the values are searched escaped.
                texts = [archive.read(n).decode("utf-8", "replace") for n in archive.namelist() if _CELL_MEMBERS.match(n)]
            wanted = [escape(v) for v in wanted]
        else:
            texts = [_any_text(data, file)]
    except (InputFileError, zipfile.BadZipFile, OSError, EOFError, zlib.error):
        return None
    if not wanted:
        return False
    token = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(v) for v in wanted) + r")(?![\w-])")
    return any(token.search(text) for text in texts)


def rows_holding(data: bytes, file: str, wanted: Callable[[str], bool]) -> dict[str | None, set[int]] | None:
    """Per sheet (None for a CSV, a member's name in a zip of CSVs), the rows with a cell for which `wanted` holds
    of the cell (trimmed) or of one of its tokens (runs of letters, digits, `_` and `-`: a value among space-separated
    ones, or after a prefix such as Central's ``uuid:``), numbered as without_rows numbers them; None if the file
    cannot be inspected (neither encoding, a malformed CSV record, an XLSX over the readers' limits).

    For files the readers refuse (no columns are known): it reads records, not a table, so a file refused for its
    header or a row's cell count is inspected too.
    """
    container = container_of(data)
    found: dict[str | None, set[int]] = {}
    try:
        if container == "zip":
            check_zip(data, file)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    if is_csv_member(name):
                        found[name] = _csv_rows_holding(archive.read(name), file, wanted)
        elif container == "xlsx":
            check_xlsx(data, file)  # the zip-bomb guards before anything is inflated
            # Streamed as the readers read it (calamine, else openpyxl read-only), not loaded in full: openpyxl's full
            # mode took 2.3 GiB and 95 s on a 50,000-household Kobo export, for every refused workbook after an
            # erasure. rows() gives every row from row 1, so the numbers are the sheet's own, which _xlsx_without
            # deletes by; a one-column merged range's value is in each of its rows, as _xlsx_without unmerges it.
            found.update(read_workbook(data, file, lambda book: _sheet_rows_holding(book, wanted), unsaved_formulas_empty=True))
        else:
            found[None] = _csv_rows_holding(data, file, wanted)
    except (InputFileError, csv.Error, zipfile.BadZipFile, OSError, EOFError, zlib.error):
        return None
    return {sheet: rows for sheet, rows in found.items() if rows}


def _sheet_rows_holding(book: Workbook, wanted: Callable[[str], bool]) -> dict[str | None, set[int]]:
    # No effect beyond the result: read_workbook may call it again with openpyxl's values.
    return {
        sheet.title: {number for number, cells in enumerate(sheet.rows(), start=1) if _holds(cells, wanted)} for sheet in book.sheets
    }


def _csv_rows_holding(data: bytes, file: str, wanted: Callable[[str], bool]) -> set[int]:
    # Decoded and tokenised as _csv_without does, so that the numbers are its numbers.
    text = decoded(data, file)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text), strict=True)
    return {number for number, cells in enumerate(reader, start=1) if _holds(cells, wanted)}


def _holds(cells: Sequence[object], wanted: Callable[[str], bool]) -> bool:
    for cell in cells:
        if cell is None:
            continue
        text = str(cell).strip()
        if text and (wanted(text) or any(wanted(token) for token in _TOKEN.findall(text))):
            return True
    return False


_TOKEN = re.compile(r"[\w-]+")


def _any_text(data: bytes, file: str) -> str:
    """A text file's text as the readers decode it; a file they refuse for mixing encodings (a refused
    file is what holds_cell inspects) as UTF-8 and as Windows-1252 at once, so either spelling is found."""
    try:
        return decoded(data, file)[0]
    except InputFileError as exc:
        if not exc.violation.rule.startswith(MIXED_ENCODING):
            raise
        return data.decode("utf-8", "replace") + "\n" + data.decode("cp1252", "replace")


def _csv_without(data: bytes, drop: set[int], file: str, unlink: Unlink | None) -> bytes:
    # Decoded as the readers decode it; both encodings round-trip exactly.
    text, encoding, bom = decoded(data, file)
    delimiter = sniff_delimiter(text)
    edit = unlink.rows.get(None, set()) if unlink is not None else set()
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    # Tokenised as the readers do, so that a quoted line break stays inside its record.
    reader = csv.reader(lines(), delimiter=delimiter, strict=True)
    kept: list[str] = []
    for number, cells in enumerate(reader, start=1):
        edited = [unlink.cell(c) for c in cells] if unlink is not None and number in edit else cells
        if number in drop:
            pass
        elif edited != cells:
            last = consumed[-1]
            end = last[len(last.rstrip("\r\n")) :]
            # Tools that quote every cell (LimeSurvey, Kobo) start their records with a quote.
            quoting = csv.QUOTE_ALL if consumed[0].startswith('"') else csv.QUOTE_MINIMAL
            out = io.StringIO()
            csv.writer(out, delimiter=delimiter, lineterminator=end, quoting=quoting).writerow(edited)
            kept.append(out.getvalue())
        else:
            kept.extend(consumed)
        consumed.clear()
    kept.extend(consumed)
    return (UTF8_BOM if bom else b"") + "".join(kept).encode(encoding)


def _zip_without(data: bytes, rows: Mapping[str | None, set[int]], file: str, unlink: Unlink | None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            edit = unlink.rows.get(info.filename, set()) if unlink is not None else set()
            drop = rows.get(info.filename, set())
            if drop or edit:
                member_unlink = Unlink(unlink.tokens, {None: edit}) if unlink is not None else None
                content = _csv_without(content, drop, file, member_unlink)
            target.writestr(info, content)  # the member's own name, date and compression
    return out.getvalue()


def _xlsx_without(data: bytes, rows: Mapping[str | None, set[int]], unlink: Unlink | None, file: str) -> bytes:
    """The workbook without the rows, read as the readers read it and written again in constant memory.

    openpyxl's full load took 3.07 GiB and 208 s on a 50,000-household Kobo export (every erasure that met one, every
    refused workbook after an erasure). The rows are streamed through read_workbook (calamine, else openpyxl read-only)
    and written by openpyxl's write-only mode (rows go to a temporary file, owner-only, removed when the zip is
    written), so the readers read the copy's cells back as they read the original's: the formulas as their saved
    values, or as their text where the workbook is to be recalculated when opened (workbook.formula_text: what the
    KoboToolbox reader reads, not xlsxwriter's saved 0); a one-column merged range below row 1 filled down into each
    of its rows (workbook.filled_down), other merged ranges, hidden rows and columns kept, moved up past the deleted
    rows. Not kept: what no reader reads (styles, column widths, chart sheets, comments, defined names).
    """
    check_xlsx(data, file)  # the zip-bomb guards before anything is inflated
    from openpyxl import Workbook as WriteOnlyWorkbook

    def rewritten(book: Workbook) -> bytes:
        # No effect beyond the result: read_workbook may call it again with openpyxl's values.
        target = WriteOnlyWorkbook(write_only=True)
        try:
            for sheet in book.sheets:
                edit = unlink.rows.get(sheet.title, set()) if unlink is not None else set()
                _write_sheet(target.create_sheet(sheet.title), sheet, rows.get(sheet.title, set()), unlink, edit)
            # A workbook must show a sheet: where only chart sheets were visible (not kept), the first one is shown.
            if target.worksheets and all(ws.sheet_state != "visible" for ws in target.worksheets):
                target.worksheets[0].sheet_state = "visible"
            out = io.BytesIO()
            target.save(out)
            return out.getvalue()
        finally:
            _discard_unsaved(target)

    return read_workbook(data, file, rewritten, unsaved_formulas_empty=True)


def _write_sheet(target: WriteOnlyWorksheet, sheet: SheetValues, drop: set[int], unlink: Unlink | None, edit: set[int]) -> None:
    """Write the sheet's rows but `drop` into a write-only sheet, the tokens of `unlink` out of the rows `edit`."""
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.cell_range import CellRange

    dropped = sorted(drop)

    def moved(number: int) -> int:
        """A kept row's number once the dropped rows above it are gone."""
        return number - bisect.bisect_left(dropped, number)

    # Row and column attributes and merged ranges are given before the rows: a write-only sheet writes them as it goes.
    for first, column, last, last_column in sheet.merged:
        if column == last_column and 1 < first < last:
            continue  # filled down into each of its rows by sheet.rows() (workbook.filled_down), as the readers see it
        kept = _kept_bounds(first, last, drop)
        if not kept:
            continue  # every row of the range dropped
        top, bottom = moved(kept[0]), moved(kept[-1])
        if top != bottom or column != last_column:
            target.merged_cells.add(CellRange(min_col=column + 1, min_row=top, max_col=last_column + 1, max_row=bottom))
    for number in sheet.hidden:
        if number not in drop:
            target.row_dimensions[moved(number)].hidden = True
    for column in sheet.hidden_columns:
        target.column_dimensions[get_column_letter(column + 1)].hidden = True
    if sheet.rows_hidden_by_default:
        target.sheet_format.zeroHeight = True
    # As the workbook had it: a veryHidden sheet (not listed by Excel's Unhide) must not come back merely hidden.
    target.sheet_state = sheet.sheet_state
    texts: dict[int, list[tuple[int, str]]] = {}
    for (row, column), text in sheet.formula_texts.items():
        texts.setdefault(row, []).append((column, text))
    for number, cells in enumerate(sheet.rows(), start=1):
        if number in drop:
            continue
        values = list(cells)
        # A formula of a workbook to be recalculated when opened: its text, as the KoboToolbox reader reads it.
        for column, text in texts.get(number, ()):
            values.extend([None] * (column + 1 - len(values)))
            values[column] = text
        if unlink is not None and number in edit:
            values = [unlink.cell(v) if isinstance(v, str) else v for v in values]
        target.append([_written(target, v) for v in values])


def _kept_bounds(first: int, last: int, drop: set[int]) -> list[int]:
    """The first and last rows of first..last that are not dropped (empty if none is)."""
    top = next((n for n in range(first, last + 1) if n not in drop), None)
    if top is None:
        return []
    bottom = next(n for n in range(last, top - 1, -1) if n not in drop)
    return [top, bottom]


def _written(sheet: WriteOnlyWorksheet, value: object) -> object:
    """The value, or a cell that the readers read back as that value where openpyxl would write it otherwise.

    openpyxl makes a formula of text starting with `=` and an error of `#REF!` and the like (text cells here, read as
    the same text), and writes numbers to 16 significant digits (`%.16g`: 0.1 + 0.2 would read back as 0.3, an
    integer of 17 digits as a float); those are written as the readers parse them: Python's exact text of the number.
    A whole float is written as an integer, as spreadsheets save it (`<v>41</v>`): calamine gives every number cell
    as a float, so 41.0 is how it reads such a cell, which openpyxl reads as 41."""
    if isinstance(value, str):
        if value[:1] == "=" or value in _ERROR_CODES or len(value) > _MAX_TEXT:
            return _raw_cell(sheet, value, "s")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value  # dates, times and durations: openpyxl writes them with a date or duration format, read back alike
    if isinstance(value, int):
        return value if -_EXACT_INT < value < _EXACT_INT else _raw_cell(sheet, str(value), "n")
    if not math.isfinite(value):
        return value
    if value.is_integer() and abs(value) < _EXACT_INT:
        return int(value)
    return _raw_cell(sheet, repr(value), "n")


def _raw_cell(sheet: WriteOnlyWorksheet, text: str, kind: str) -> Cell:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet)
    # Set past openpyxl's typing of the value (see _written); its cell writer writes a text's value as it is.
    cell._value = text  # noqa: SLF001
    cell.data_type = kind
    return cell


# Texts openpyxl writes as error cells (openpyxl.cell.cell.ERROR_CODES), and the longest text it writes uncut.
_ERROR_CODES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})
_MAX_TEXT = 32767
# Integers "%.16g" writes exactly (and calamine reads as written: at most 15 digits).
_EXACT_INT = 10**15


def _discard_unsaved(book: object) -> None:
    """Remove the temporary files of a write-only workbook's sheets not yet saved (a read given up half-way, an
    error): they hold the copy's rows. openpyxl removes them when it saves, and the rest when the process ends."""
    from openpyxl.worksheet._writer import ALL_TEMP_FILES

    for sheet in getattr(book, "worksheets", []):
        writer = getattr(sheet, "_writer", None)
        if writer is None or getattr(writer, "out", None) not in ALL_TEMP_FILES:
            continue  # never started, or saved (openpyxl removed it)
        with contextlib.suppress(Exception):
            writer.close()
        with contextlib.suppress(OSError, ValueError):
            writer.cleanup()
