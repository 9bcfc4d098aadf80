"""Cell values of an XLSX workbook for the readers (Kobo, LimeSurvey, templates): openpyxl's, read fast.

The readers were written against openpyxl's read-only mode (``data_only``, ``values_only``): a
row is a tuple from column A, a cell is None, str, int, float, bool, a datetime/date/time/timedelta
(number cells with a date or duration format) or an error's text (``#REF!``). That stays the one
model of a cell. openpyxl parses in Python, though: a national Kobo export (50,000 households, 6 M
cells) took 51 s to ingest, nearly all of it there. calamine (Rust, ``python-calamine``) reads the same
workbook about ten times faster, but gives some cells differently:

- error cells (``t="e"``) as empty, and ISO 8601 date cells (``t="d"``) as dates;
- ``_xHHHH_`` escapes decoded (openpyxl keeps them as written, ``_x000D_``);
- the text of a ``<t>`` without ``xml:space="preserve"`` trimmed at both ends;
- an integer of more than 15 digits as a float (openpyxl: the exact int), a number cell holding
  something else than a number (`` 5``) as text;
- numbers with a date or duration format as dates by its own rules (type, rounding, which formats);
- empty cells as ``""``.

Both read cells beyond a sheet's ``<dimension>`` (openpyxl after ``reset_dimensions``): a writer that
understates it would otherwise lose rows without a word.

So a workbook is read by calamine only where that gives openpyxl's values exactly: openpyxl opens the
workbook without its shared strings (sheets, date system, which styles are dates: its own rules, so a
workbook it refuses is refused with the same error), the parts holding cell values are searched for
the shapes above (regular expressions over the inflated XML, a fraction of calamine's time), and
calamine's empty ``""`` become None. A date or duration calamine reports anyway stops it and the
workbook is read again by openpyxl. Everything else (a workbook with error cells, dates, escapes …)
is read by openpyxl as before. ``REMATCH_XLSX_READER=openpyxl`` reads every workbook with openpyxl.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from rematch_pipeline.formats.errors import InputFileError, Violation
from rematch_pipeline.wording import counted

if TYPE_CHECKING:
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet
    from python_calamine import CalamineSheet, CalamineWorkbook

T = TypeVar("T")

ENV_XLSX_READER = "REMATCH_XLSX_READER"
READERS: tuple[str, ...] = ("calamine", "openpyxl")

# The spreadsheet namespace, bound as the default one (then every cell and text element is unprefixed).
_MAIN_NAMESPACE = re.compile(rb"""xmlns\s*=\s*["']http://schemas\.openxmlformats\.org/spreadsheetml/2006/main["']""")
_PREFIXED_MAIN_NAMESPACE = re.compile(rb"""xmlns:[\w.-]+\s*=\s*["']http://schemas\.openxmlformats\.org/spreadsheetml/2006/main["']""")
# Error cells (calamine: empty) and ISO 8601 date cells (calamine: dates).
_ERROR_OR_DATE_CELL = re.compile(rb"""t\s*=\s*["'][ed]["']""")
_ESCAPE = re.compile(rb"_x[0-9A-Fa-f]{4}_")
# Text that starts or ends with XML whitespace or a character reference (calamine trims it unless preserved).
_EDGED_TEXT = re.compile(rb"<t(\s[^>]*)?>(?:[ \t\r\n&]|[^<]*[ \t\r\n;]</t>)")
_PRESERVED = re.compile(rb"""xml:space\s*=\s*["']preserve["']""")
# A cell value both read as the same number with the same text: an int of at most 15 digits (exact as a
# float), or a decimal or exponent notation (both parse it to the nearest float).
_PLAIN_NUMBER = rb"-?(?:\d{1,15}|\d*\.\d+(?:[eE][-+]?\d+)?|\d+\.?\d*[eE][-+]?\d+)"
_OTHER_VALUE = re.compile(rb"<v>(?!\d{1,15}</v>)(?!" + _PLAIN_NUMBER + rb"</v>)")
_STRING_FORMULA = re.compile(rb"""\st\s*=\s*["']str["']""")
_DATE_TYPES = frozenset({dt.datetime, dt.date, dt.time, dt.timedelta})
_SHARED_STRINGS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"


class SheetValues(Protocol):
    """One worksheet's rows of cell values, as openpyxl's read-only mode gives them."""

    title: str
    # Formula cells without a saved value (read as empty): (row, column from 0, or None where the cell has no reference).
    # Where the workbook is to be recalculated when opened (recalculated_on_load), every formula cell of the sheet:
    # the values saved there are no results (xlsxwriter's 0).
    unsaved_formulas: Sequence[tuple[int, int | None]]
    # Where the workbook is to be recalculated when opened: each formula cell's text (formula_text) by (row, column
    # from 0), for a reader whose formulas are answers (KoboToolbox); filled with unsaved_formulas_empty too.
    formula_texts: Mapping[tuple[int, int], str]
    # Merged cell ranges (merged_ranges): a range of one column below row 1 gives its value to each of its rows.
    merged: Sequence[tuple[int, int, int, int]]
    # Rows hidden in the sheet (hidden_rows: hidden by hand, filtered out by an autofilter, in a collapsed outline).
    # Read like any other row; the readers' callers say which of the rows read were hidden.
    hidden: Sequence[int]
    # Columns hidden in the sheet (hidden_columns, from 0), and whether it hides every row it does not set visible
    # (rows_hidden_by_default: <sheetFormatPr zeroHeight="1">). Read like the others; the callers say so.
    hidden_columns: Sequence[int]
    rows_hidden_by_default: bool
    # The sheet's own state as the workbook gives it: visible, hidden or veryHidden (not listed by Excel's Unhide).
    # A hidden sheet is read like the others, and said; erasure's rewrite keeps the state.
    sheet_state: str

    def rows(self, max_row: int | None = None) -> Iterator[Sequence[object]]:
        """The rows from row 1 (empty rows included, as tuples of None), up to max_row."""
        ...


@dataclass
class Workbook:
    """The worksheets of a workbook (chart sheets left out), in its order, and its date system."""

    sheets: list[SheetValues]
    epoch: dt.datetime
    reader: str  # "calamine" or "openpyxl": which one gives the values


class _NotOpenpyxlValues(Exception):
    """calamine met a cell it would give otherwise than openpyxl: the workbook is read again by openpyxl."""


def read_workbook(data: bytes, file: str, read: Callable[[Workbook], T], unsaved_formulas_empty: bool = False) -> T:
    """What ``read`` makes of the workbook's cell values (openpyxl's, read by calamine where exact).

    ``read`` may be called twice (once with calamine's values, then with openpyxl's when calamine
    meets a cell it gives otherwise); it must have no effect beyond its result. With
    ``unsaved_formulas_empty`` no sheet reports formulas without a saved value (they read as empty, as
    before such workbooks were refused) nor the saved values of a workbook to be recalculated when opened
    (they read as saved, as before): for copies of files already ingested, read again. The formula texts
    of a workbook to be recalculated (SheetValues.formula_texts) are given either way.

    Raises:
        InputFileError: openpyxl cannot open the workbook (``xlsx: cannot open workbook (<error>)``).
    """
    if os.environ.get(ENV_XLSX_READER, READERS[0]).strip().lower() != "openpyxl":
        book = _calamine_workbook(data, unsaved_formulas_empty)
        if book is not None:
            try:
                return read(book)
            except _NotOpenpyxlValues:
                pass
            finally:
                book.close()
    return _with_openpyxl(data, file, read, unsaved_formulas_empty)


def _with_openpyxl(data: bytes, file: str, read: Callable[[Workbook], T], unsaved_formulas_empty: bool = False) -> T:
    from openpyxl.reader.excel import ExcelReader

    try:
        # load_workbook(read_only=True, data_only=True), keeping the reader for the workbook part's name.
        reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
        reader.read()
    except Exception as exc:  # openpyxl raises many types for broken zips
        raise InputFileError(Violation(file, None, None, f"xlsx: cannot open workbook ({type(exc).__name__})")) from exc
    book = reader.wb
    try:
        recalculated = recalculated_on_load(reader.archive.read(reader.parser.workbook_part_name))
        sheets = []
        for s in book.worksheets:
            xml = book._archive.read(s._worksheet_path)  # noqa: SLF001 - openpyxl's own part name
            sheets.append(_OpenpyxlSheet(s, *_formulas(xml, recalculated, unsaved_formulas_empty), merged_ranges(xml), *hidden_parts(xml)))
        return read(Workbook(sheets, book.epoch, "openpyxl"))
    finally:
        book.close()


class _OpenpyxlSheet:
    def __init__(
        self,
        sheet: ReadOnlyWorksheet,
        unsaved: list[tuple[int, int | None]],
        texts: dict[tuple[int, int], str],
        merged: list[tuple[int, int, int, int]],
        hidden: list[int],
        hidden_columns: list[int],
        rows_hidden_by_default: bool,
    ) -> None:
        self.sheet = sheet
        self.title: str = sheet.title
        self.unsaved_formulas = unsaved
        self.formula_texts = texts
        self.merged = merged
        self.hidden = hidden
        self.hidden_columns = hidden_columns
        self.rows_hidden_by_default = rows_hidden_by_default
        self.sheet_state: str = sheet.sheet_state

    def rows(self, max_row: int | None = None) -> Iterator[Sequence[object]]:
        """The sheet's rows as openpyxl's read-only mode gives them, past the sheet's <dimension> too."""
        # Read-only mode stops at the <dimension> the writer declared: one that understates it lost rows silently.
        self.sheet.reset_dimensions()
        return filled_down(self.sheet.iter_rows(max_row=max_row, values_only=True), self.merged)


@dataclass
class _CalamineBook(Workbook):
    source: CalamineWorkbook | None = None

    def close(self) -> None:
        """Release calamine's workbook."""
        if self.source is not None:
            self.source.close()


@dataclass
class _CalamineSheet:
    book: CalamineWorkbook
    title: str
    unsaved_formulas: list[tuple[int, int | None]]
    formula_texts: dict[tuple[int, int], str]
    merged: list[tuple[int, int, int, int]]
    hidden: list[int]
    hidden_columns: list[int]
    rows_hidden_by_default: bool
    sheet_state: str
    _parsed: CalamineSheet | None = None  # kept from a first partial read (format detection) for the full one

    def rows(self, max_row: int | None = None) -> Iterator[Sequence[object]]:
        """The sheet's rows, each value as openpyxl gives it (raises _NotOpenpyxlValues where calamine cannot)."""
        return filled_down(self._rows(max_row), self.merged)

    def _rows(self, max_row: int | None = None) -> Iterator[Sequence[object]]:
        try:
            sheet = self._parsed if self._parsed is not None else self.book.get_sheet_by_name(self.title)
            end = sheet.end
        except Exception as exc:  # noqa: BLE001 - any failure of calamine's: openpyxl decides
            raise _NotOpenpyxlValues from exc
        # A full read drops the parsed sheet once done; a partial one (format detection) keeps it for the full one.
        self._parsed = sheet if max_row is not None else None
        if end is None:
            return
        left = sheet.start[1]
        pad = (None,) * left
        number = 0
        # iter_rows gives the rows from the first (empty ones for those above the data), cells from the data's first column.
        for number, row in enumerate(sheet.iter_rows(), start=1):
            if max_row is not None and number > max_row:
                return
            if not _DATE_TYPES.isdisjoint(map(type, row)):
                raise _NotOpenpyxlValues
            yield (*pad, *[None if v == "" else v for v in row])
        if number != end[0] + 1:
            raise _NotOpenpyxlValues


def _calamine_workbook(data: bytes, unsaved_formulas_empty: bool = False) -> _CalamineBook | None:
    """The workbook read by calamine, or None where openpyxl has to read it (see the module's docstring)."""
    import python_calamine

    try:
        reader = _openpyxl_without_strings(data)
    except Exception:  # noqa: BLE001 - openpyxl will say what is wrong
        return None
    try:
        worksheets = reader.wb.worksheets
        sheet_parts = [ws._worksheet_path for ws in worksheets]  # noqa: SLF001 - openpyxl's own part names
        parts: list[str] = []
        strings = reader.package.find(_SHARED_STRINGS_TYPE)
        if strings is not None:
            if strings.PartName[1:] not in reader.valid_files:
                return None
            parts.append(strings.PartName[1:])
        parts += [n for n in reader.valid_files if n.lower().endswith("sharedstrings.xml") and n not in parts]
        dated = set(reader.wb._date_formats) | set(reader.wb._timedelta_formats)  # noqa: SLF001
        if not all(_plain_values(reader.archive.read(part), dated) for part in parts):
            return None
        recalculated = recalculated_on_load(reader.archive.read(reader.parser.workbook_part_name))
        formulas: list[
            tuple[list[tuple[int, int | None]], dict[tuple[int, int], str], list[tuple[int, int, int, int]], list[int], list[int], bool]
        ] = []
        for part in sheet_parts:
            # Each sheet's XML once (a national export's is hundreds of MB): the value check, then its formulas.
            xml = reader.archive.read(part)
            if not _plain_values(xml, dated):
                return None
            formulas.append((*_formulas(xml, recalculated, unsaved_formulas_empty), merged_ranges(xml), *hidden_parts(xml)))
        epoch = reader.wb.epoch
        titles = [ws.title for ws in worksheets]
        states = [ws.sheet_state for ws in worksheets]
    except Exception:  # noqa: BLE001
        return None
    finally:
        reader.archive.close()
    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        names = [m.name for m in book.sheets_metadata if m.typ == python_calamine.SheetTypeEnum.WorkSheet]
    except Exception:  # noqa: BLE001 - openpyxl will say what is wrong
        return None
    if names != titles:
        book.close()
        return None
    sheets: list[SheetValues] = [_CalamineSheet(book, title, *cells, state) for title, cells, state in zip(titles, formulas, states)]
    return _CalamineBook(sheets, epoch, "calamine", book)


def _openpyxl_without_strings(data: bytes) -> ExcelReader:
    """openpyxl's load_workbook (read-only, data only) without reading the shared strings: the
    workbook's sheets, date system and date styles by openpyxl's rules, in milliseconds."""
    from openpyxl.reader.excel import ExcelReader

    reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
    reader.read_strings = lambda: None  # type: ignore[method-assign] - the one expensive part; calamine reads them
    reader.read()
    return reader


def _plain_values(xml: bytes, dated: set[int]) -> bool:
    """Whether calamine gives every cell value of this part (a worksheet or the shared strings) as openpyxl does."""
    head = xml[:4096]
    if not _MAIN_NAMESPACE.search(head) or _PREFIXED_MAIN_NAMESPACE.search(xml):
        return False
    # <! : a comment, CDATA or DTD; <v with attributes: a value the searches below do not see.
    if b"<!" in xml or b"<v " in xml or _ERROR_OR_DATE_CELL.search(xml) or _ESCAPE.search(xml):
        return False
    for match in _EDGED_TEXT.finditer(xml):
        if not _PRESERVED.search(match.group(1) or b""):
            return False
    for match in _OTHER_VALUE.finditer(xml):
        # Only a formula's text result (t="str") holds other values than numbers and string indexes.
        start = xml.rfind(b"<c", 0, match.start())
        if start < 0 or not _STRING_FORMULA.search(xml, start, xml.index(b">", start)):
            return False
    if dated:
        styles = b"|".join(str(i).encode() for i in sorted(dated))
        if re.search(rb"""s\s*=\s*["'](?:""" + styles + rb""")["']""", xml):
            return False
    return True


# A formula element (<f>, <f t="shared" …/>, prefixed or not); <filterColumn> and the like do not match.
_FORMULA = re.compile(rb"<(?:[\w.-]+:)?f[\s/>]")
_CELL_START = re.compile(rb"<(?:[\w.-]+:)?c[\s>]")
_CELL_END = re.compile(rb"</(?:[\w.-]+:)?c>")
_CELL_REFERENCE = re.compile(rb"""\sr\s*=\s*["']\$?([A-Za-z]{1,3})\$?(\d+)["']""")
_ROW_NUMBER = re.compile(rb"""<(?:[\w.-]+:)?row\s[^>]*?\br\s*=\s*["'](\d+)["']""")
_SAVED_VALUE = re.compile(rb"<(?:[\w.-]+:)?v(?:\s[^>]*)?>([^<]*)<")
_TEXT_RESULT = re.compile(rb"""\st\s*=\s*["']str["']""")


def unsaved_formulas(xml: bytes, recalculated: bool = False) -> list[tuple[int, int | None]]:
    """The formula cells of a worksheet's XML that hold no saved value, as (row, column from 0); with
    ``recalculated`` (the workbook is to be recalculated when opened: recalculated_on_load) every formula cell.

    A workbook written by a program (openpyxl, a script) and never opened in a spreadsheet has its
    formulas but not their results: ``<f>A2+B2</f><v/>``, or no ``<v>`` at all. Reading the saved
    values only (no formula is ever computed here), such a cell is empty, and a required column
    would be reported as empty though the coordinator sees a value in Excel. An empty text result is
    saved as ``t="str"`` with an empty ``<v>``: that one is a value. The column is None where the
    cell carries no reference (then its row is the enclosing row's). xlsxwriter (pandas' ``to_excel`` with
    it, KoboToolbox's XLSX export) saves ``0`` as every formula's value and says the workbook must be
    recalculated when opened: there the saved values are no results, and every formula cell counts.
    """
    return [(row, column) for row, column, _ in _formula_cells(xml, recalculated)]


def _formulas(
    xml: bytes, recalculated: bool, unsaved_formulas_empty: bool
) -> tuple[list[tuple[int, int | None]], dict[tuple[int, int], str]]:
    """A sheet's SheetValues.unsaved_formulas and formula_texts (see read_workbook)."""
    if unsaved_formulas_empty and not recalculated:
        return [], {}
    cells = _formula_cells(xml, recalculated)
    unsaved = [] if unsaved_formulas_empty else [(row, column) for row, column, _ in cells]
    texts = {(row, column): text for row, column, text in cells if column is not None and text is not None} if recalculated else {}
    return unsaved, texts


def _formula_cells(xml: bytes, recalculated: bool) -> list[tuple[int, int | None, str | None]]:
    """unsaved_formulas, each cell with its formula_text where ``recalculated`` (else None)."""
    # Nearly every workbook has none: one plain byte search unless the sheet binds the spreadsheet namespace to a
    # prefix (<x:f>), declared on its root element.
    prefixed = _PREFIXED_MAIN_NAMESPACE.search(xml, 0, 4096) is not None
    first = xml.find(b"<f")
    if first < 0 and not prefixed:
        return []
    cells: list[tuple[int, int | None, str | None]] = []
    end = 0
    for found, after in _formula_elements(xml, None if prefixed else first):
        if found < end:
            continue  # a second formula element of a cell already looked at
        window = max(0, found - 4096)
        starts = list(_CELL_START.finditer(xml, window, found))
        closing = _CELL_END.search(xml, after)
        if not starts or closing is None:
            continue  # not inside a cell (malformed XML): openpyxl reports the workbook
        start, end = starts[-1].start(), closing.end()
        cell = xml[start:end]
        tag = cell[: cell.index(b">") + 1]
        saved = _SAVED_VALUE.search(cell)
        if not recalculated and saved is not None and (saved.group(1) or _TEXT_RESULT.search(tag)):
            continue
        text = formula_text(cell) if recalculated else None
        reference = _CELL_REFERENCE.search(tag)
        if reference is not None:
            from openpyxl.utils import column_index_from_string

            cells.append((int(reference.group(2)), column_index_from_string(reference.group(1).decode().upper()) - 1, text))
        else:
            rows = list(_ROW_NUMBER.finditer(xml, max(0, start - 1_000_000), start))
            cells.append((int(rows[-1].group(1)) if rows else 0, None, text))
    return cells


def _formula_elements(xml: bytes, first: int | None) -> Iterator[tuple[int, int]]:
    """(start, end) of each formula element's opening (`<f>`, `<f `, `<f/`) in a worksheet's XML, from the first
    `<f` (None where the spreadsheet namespace has a prefix: `<x:f>`)."""
    if first is None:
        for match in _FORMULA.finditer(xml):
            yield match.start(), match.end()
        return
    # A byte search, not the regular expression (it stops at every `<`: 0.13 s over a 14 MB sheet).
    found = first
    while found >= 0:
        if xml[found + 2 : found + 3] in (b">", b"/", b" ", b"\t", b"\r", b"\n"):
            yield found, found + 3
        found = xml.find(b"<f", found + 2)


# A cell's formula element: its text (group 2), or none (<f t="shared" si="0"/>: a shared formula's dependent).
_FORMULA_ELEMENT = re.compile(rb"<((?:[\w.-]+:)?f)(?:\s[^>]*?)?(?:/>|>(.*?)</\1>)", re.DOTALL)


def formula_text(cell: bytes) -> str | None:
    """The formula of a cell's XML as typed: ``=`` and the ``<f>`` element's text, XML references resolved
    (``<f>A1&amp;" x"</f>`` is ``=A1&" x"``); ``=`` alone for a shared formula's dependent (``<f t="shared"
    si="0"/>``: its text is the first cell's, shifted), None without a formula element.

    xlsxwriter writes a text starting with ``=`` (KoboToolbox: a respondent's answer) as such a formula, the
    ``=`` dropped: ``=)`` is ``<f>)</f>``. The text is the cell's value, as sensitive as any answer.
    """
    found = _FORMULA_ELEMENT.search(cell)
    if found is None:
        return None
    text = (found.group(2) or b"").decode("utf-8", "replace")
    # XML's five entities and numeric references: the standard library's unescape resolves both.
    return "=" + html.unescape(text) if "&" in text else "=" + text


# <calcPr fullCalcOnLoad="1"/> (xsd:boolean: 1 or true) in the workbook part, prefixed or not.
_FULL_CALC_ON_LOAD = re.compile(rb"""<(?:[\w.-]+:)?calcPr\s[^>]*?\bfullCalcOnLoad\s*=\s*["']\s*(?:1|true)\s*["']""")


def recalculated_on_load(workbook_xml: bytes) -> bool:
    """Whether the workbook part asks the spreadsheet to recalculate every formula when the file is opened.

    Programs that write formulas without computing them say so: xlsxwriter (and pandas' ``to_excel`` through
    it) saves ``0`` as every formula's value, openpyxl saves none, and both write ``<calcPr …
    fullCalcOnLoad="1"/>``. Excel resets the flag when it has calculated and saves (ECMA-376 §18.2.2), and
    LibreOffice does not write it: there the saved values are the results. openpyxl's parsed ``calculation``
    cannot tell: it reports True where the attribute is missing (its default).
    """
    return _FULL_CALC_ON_LOAD.search(workbook_xml) is not None


# <mergeCell ref="F2:F5"/> (prefixed or not), in <mergeCells> after the sheet's data.
_MERGE_CELL = re.compile(rb"""<(?:[\w.-]+:)?mergeCell\s[^>]*?\bref\s*=\s*["']\$?([A-Za-z]{1,3})\$?(\d+)(?::\$?([A-Za-z]{1,3})\$?(\d+))?["']""")


def merged_ranges(xml: bytes) -> list[tuple[int, int, int, int]]:
    """The merged cell ranges of a worksheet's XML as (first row, first column from 0, last row, last column from 0)."""
    from openpyxl.utils import column_index_from_string

    # <mergeCells> follows <sheetData>: search only after it (a national export's sheet is hundreds of MB).
    end = xml.rfind(b"sheetData>")
    if xml.find(b"mergeCell", max(end, 0)) < 0:
        return []
    ranges = []
    for match in _MERGE_CELL.finditer(xml, max(end, 0)):
        first_column, first_row, last_column, last_row = match.group(1), match.group(2), match.group(3), match.group(4)
        last_column, last_row = last_column or first_column, last_row or first_row
        ranges.append(
            (
                int(first_row),
                column_index_from_string(first_column.decode().upper()) - 1,
                int(last_row),
                column_index_from_string(last_column.decode().upper()) - 1,
            )
        )
    return ranges


# A row's hidden attribute (hidden="1" or "true"), and the start of the element it is in.
_HIDDEN_ATTRIBUTE = re.compile(rb"""\shidden\s*=\s*["'](?:1|true)["']""")
_ROW_START = re.compile(rb"<(?:[\w.-]+:)?row[\s>/]")
_ROW_NUMBER = re.compile(rb"""\sr\s*=\s*["'](\d+)["']""")


# <sheetFormatPr … zeroHeight="1"/>: every row not set visible is hidden (ECMA-376 18.3.1.81), prefixed or not.
_ZERO_HEIGHT = re.compile(rb"""<(?:[\w.-]+:)?sheetFormatPr\s[^>]*?\bzeroHeight\s*=\s*["'](?:1|true)["']""")
_COLUMN_ELEMENT = re.compile(rb"<(?:[\w.-]+:)?col\s[^>]*>")
_COLUMN_BOUND = re.compile(rb"""\s(min|max)\s*=\s*["'](\d+)["']""")
# Excel's last column (XFD): a <col> range reaching it is not expanded further.
_LAST_COLUMN = 16384


def hidden_parts(xml: bytes) -> tuple[list[int], list[int], bool]:
    """A worksheet's hidden rows (hidden_rows), hidden columns (from 0) and whether it hides its rows by default
    (`<sheetFormatPr zeroHeight="1">`).

    Columns and the rows' default are set in the sheet's head, before `<sheetData>` (`<sheetFormatPr>`, `<cols>`):
    they are looked for there only, so a national export's sheet (hundreds of MB) still costs one byte search for
    `hidden` after its head, and finding `sheetData` near its start.
    """
    data = xml.find(b"sheetData")
    head = xml[: data if data >= 0 else len(xml)]
    return hidden_rows(xml, max(data, 0)), hidden_columns(head), _ZERO_HEIGHT.search(head) is not None


def hidden_columns(head: bytes) -> list[int]:
    """The hidden columns (from 0, sorted) of a worksheet's XML up to its `<sheetData>`: each `<col min max
    hidden="1">` range (a column hidden by hand, or in a collapsed outline)."""
    if head.find(b"hidden") < 0:
        return []
    found: set[int] = set()
    for match in _COLUMN_ELEMENT.finditer(head):
        tag = match.group(0)
        if not _HIDDEN_ATTRIBUTE.search(tag):
            continue
        bounds = {name: int(value) for name, value in _COLUMN_BOUND.findall(tag)}
        first = bounds.get(b"min", 0)
        last = min(bounds.get(b"max", first), _LAST_COLUMN)
        if first >= 1:
            found.update(range(first - 1, last))
    return sorted(found)


def hidden_rows(xml: bytes, start: int = 0) -> list[int]:
    """The numbers of a worksheet's hidden rows (`<row … hidden="1">`), sorted; ``start``: where its rows begin
    (the `<sheetData>` hidden_parts found), so a hidden column in the head costs no search of the rows.

    A row filtered out by an autofilter, hidden by hand or in a collapsed outline is saved so alike. One byte search
    when no row is hidden (a national export's sheet is hundreds of MB); otherwise only the hidden attributes are
    visited, unless a hidden row has no `r` (allowed, no writer we know leaves it out): then every row is counted.
    """
    if xml.find(b"hidden", start) < 0:
        return []
    found: list[int] = []
    for match in _HIDDEN_ATTRIBUTE.finditer(xml, start):
        start = xml.rfind(b"<", 0, match.start())
        if not _ROW_START.match(xml, start):
            continue  # a hidden column (<col>) or sheet element, not a row
        tag = xml[start : xml.find(b">", start) + 1]
        number = _ROW_NUMBER.search(tag)
        if number is None:
            return _hidden_rows_counted(xml)
        found.append(int(number.group(1)))
    return sorted(set(found))


def _hidden_rows_counted(xml: bytes) -> list[int]:
    """hidden_rows where a row has no `r`: such a row is the one after the previous row."""
    found, number = [], 0
    for match in _ROW_START.finditer(xml):
        tag = xml[match.start() : xml.find(b">", match.start()) + 1]
        given = _ROW_NUMBER.search(tag)
        number = int(given.group(1)) if given else number + 1
        if _HIDDEN_ATTRIBUTE.search(tag):
            found.append(number)
    return found


def filled_down(rows: Iterator[Sequence[object]], merged: Sequence[tuple[int, int, int, int]]) -> Iterator[Sequence[object]]:
    """The rows with the value of each merged range of one column below row 1 in every row of it, as the
    spreadsheet shows it.

    A spreadsheet saves a merged range's value in its first cell only; the others are empty. A coordinator who
    merges a column's cells over rows (one intake period for every offer, a household's id over its members' rows)
    sees the value on each row, and before, each row below the first was quarantined as `required`. Ranges over
    several columns are not filled (the value belongs to one of them: refuse_merged_across), nor a header cell
    merged over the rows below it (row 1).
    """
    down = [(first, column, last) for first, column, last, last_column in merged if column == last_column and 1 < first < last]
    if not down:
        yield from rows
        return
    starts: dict[int, list[tuple[int, int]]] = {}
    for first, column, last in down:
        starts.setdefault(first, []).append((column, last))
    active: dict[int, tuple[int, object]] = {}  # column -> (last row, value)
    for number, row in enumerate(rows, start=1):
        for column, last in starts.get(number, ()):
            active[column] = (last, row[column] if column < len(row) else None)
        if active:
            cells = list(row)
            for column, (last, value) in list(active.items()):
                if number > last:
                    del active[column]
                    continue
                if value is not None and (column >= len(cells) or cells[column] is None):
                    cells.extend([None] * (column + 1 - len(cells)))
                    cells[column] = value
            row = tuple(cells)
        yield row


MERGED_ACROSS_RULE = (
    "xlsx: cells merged across columns ({cells}): the value belongs to the first column only; unmerge them and give"
    " each column its own value"
)


def refuse_merged_across(sheet: SheetValues, file: str, header: Sequence[str], header_row: int = 1, table: str | None = None) -> None:
    """Stop a sheet that is read if cells below its header are merged across columns, naming the first range's
    first row and column (by its header) and the range; never the value.

    Raises:
        InputFileError: ``xlsx: cells merged across columns …``.
    """
    across = sorted((first, column, last, last_column) for first, column, last, last_column in sheet.merged if last > header_row and last_column > column)
    if not across:
        return
    from openpyxl.utils import get_column_letter

    first, column, last, last_column = across[0]
    row = max(first, header_row + 1)
    name = header[column] if column < len(header) and header[column] else get_column_letter(column + 1)
    cells = f"{get_column_letter(column + 1)}{first}:{get_column_letter(last_column + 1)}{last}"
    raise InputFileError(Violation(file, row, name, MERGED_ACROSS_RULE.format(cells=cells), table, sheet.title))


UNSAVED_FORMULA_RULE = (
    "xlsx: formula without a saved value (the workbook was written by a program and never opened in a spreadsheet:"
    " {cells}); open it in Excel or LibreOffice, save it and land it again"
)


def refuse_unsaved_formulas(
    sheet: SheetValues, file: str, header: Sequence[str], table: str | None = None, cells: Sequence[tuple[int, int | None]] | None = None
) -> None:
    """Stop a sheet that is read if a cell of it holds a formula without a saved value (unsaved_formulas: in
    a workbook to be recalculated when opened, any formula), naming the first such cell by its header (the
    column letter right of the header) and how many there are; never the value. ``cells``: those of the
    sheet's unsaved_formulas the reader cannot read otherwise (KoboToolbox reads the others as their text).

    Raises:
        InputFileError: ``xlsx: formula without a saved value …`` at the first such cell.
    """
    cells = sheet.unsaved_formulas if cells is None else cells
    if not cells:
        return
    from openpyxl.utils import get_column_letter

    row, column = min(cells, key=lambda cell: (cell[0], -1 if cell[1] is None else cell[1]))
    name = None
    if column is not None:
        name = header[column] if column < len(header) and header[column] else get_column_letter(column + 1)
    rule = UNSAVED_FORMULA_RULE.format(cells=counted(len(cells), "such cell"))
    raise InputFileError(Violation(file, row or None, name, rule, table, sheet.title))
