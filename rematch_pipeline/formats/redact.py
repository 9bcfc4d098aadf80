"""Export files without some of their rows (or a linked reference): erasure rewrites the archived and landed copies.

Row numbers are the readers' (docs/formats.md): records of a CSV with the header as row 1 (row 2 below Excel's `sep=;`
line, which stays), rows
of an XLSX sheet as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from rematch_pipeline.formats.errors import InputFileError
from rematch_pipeline.formats.limits import check_xlsx, check_zip, container_of, is_csv_member
from rematch_pipeline.formats.text import MIXED_ENCODING, UTF8_BOM, decoded, sniff_delimiter
from rematch_pipeline.formats.workbook import Workbook, formula_texts_by_sheet, read_workbook

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
    rewritten by openpyxl, so only its cell values are kept (a formula as its saved result, or as its text where the
    workbook is to be recalculated when opened), not its byte layout. In a zip of
    CSVs (ODK Central) the sheet names are member names: each member is edited as a CSV and the
    zip is written again with the same members, order, dates and compression.
    """
    container = container_of(data)
    if container == "zip":
        return _zip_without(data, rows, file, unlink)
    if container == "xlsx":
        return _xlsx_without(data, rows, unlink)
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


def _xlsx_without(data: bytes, rows: Mapping[str | None, set[int]], unlink: Unlink | None) -> bytes:
    from openpyxl import load_workbook

    # The saved values, not the formulas: openpyxl writes no results, so a rewritten formula would read as
    # empty (and be refused: workbook.unsaved_formulas) where ingestion read its value.
    book = load_workbook(io.BytesIO(data), data_only=True)
    # In a workbook to be recalculated when opened the saved values are no results (xlsxwriter's 0): its formulas
    # are kept as text cells holding what the KoboToolbox reader reads (workbook.formula_text), so the copy reads
    # as the file did when it landed; as formulas openpyxl would write them without a value.
    for title, texts in formula_texts_by_sheet(data).items():
        for (number, column), text in texts.items():
            cell = book[title].cell(number, column + 1)
            cell.value = text
            cell.data_type = "s"  # openpyxl makes a formula of text starting with =
    for sheet in book.worksheets:
        # Rows are deleted below: a merged range of one column is unmerged first, its value in each of its rows, as the
        # readers see it (workbook.filled_down; openpyxl does not move merged ranges with deleted rows).
        for merged in [r for r in sheet.merged_cells.ranges if r.min_col == r.max_col and 1 < r.min_row < r.max_row]:
            value = sheet.cell(merged.min_row, merged.min_col).value
            sheet.unmerge_cells(str(merged))
            for number in range(merged.min_row + 1, merged.max_row + 1):
                if sheet.cell(number, merged.min_col).value is None:
                    sheet.cell(number, merged.min_col).value = value
        for number in sorted(unlink.rows.get(sheet.title, set())) if unlink is not None else []:
            for cell in sheet[number]:
                if isinstance(cell.value, str):
                    cell.value = unlink.cell(cell.value)
        for number in sorted(rows.get(sheet.title, set()), reverse=True):
            sheet.delete_rows(number)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
