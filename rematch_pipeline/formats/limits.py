"""Resource limits for uploaded files, and the bounded low-level reading the export readers share.

A landed file is untrusted: it may be huge, have millions of rows, or be an XLSX "zip bomb" whose
few kilobytes decompress to gigabytes. The guards here run before (size, zip directory, worksheet
row count) and while (row count) a file is parsed, and reject it with an InputFileError whose rule
says which limit was hit. Defaults are module constants; environment variables override them (read
at every call, so a running service picks up a change and tests can set them):

    REMATCH_MAX_FILE_MB          file size in MB (default 200)
    REMATCH_MAX_ROWS             data rows per file or sheet (default 1,000,000)
    REMATCH_MAX_XLSX_MB          total uncompressed size of an XLSX (or a zip of CSVs) in MB (default 500)
    REMATCH_MAX_XLSX_RATIO       compression ratio of one XLSX (or zip) member (default 200, i.e. 200:1)
    REMATCH_MAX_XLSX_MEMBERS     number of members of an XLSX (or zip) (default 1000)
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from rematch_pipeline.formats.errors import InputFileError, Violation
from rematch_pipeline.formats.text import decode_text, excel_separator, sniff_delimiter

MAX_FILE_MB: float = 200
MAX_ROWS: int = 1_000_000
MAX_XLSX_UNCOMPRESSED_MB: float = 500
MAX_XLSX_RATIO: float = 200
MAX_XLSX_MEMBERS: int = 1000
# Below this uncompressed size a high ratio is harmless (tiny XML parts compress very well).
RATIO_MIN_BYTES: int = 1 << 20

ENV_MAX_FILE_MB = "REMATCH_MAX_FILE_MB"
ENV_MAX_ROWS = "REMATCH_MAX_ROWS"
ENV_MAX_XLSX_MB = "REMATCH_MAX_XLSX_MB"
ENV_MAX_XLSX_RATIO = "REMATCH_MAX_XLSX_RATIO"
ENV_MAX_XLSX_MEMBERS = "REMATCH_MAX_XLSX_MEMBERS"

_MB = 1024 * 1024
ZIP_SIGNATURE = b"PK\x03\x04"


def _setting(env: str, default: float) -> float:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        # A broken setting must be loud, not silently fall back to "no limit".
        raise ValueError(f"{env} must be a positive number")
    return value


def max_file_bytes() -> int:
    """Largest accepted file in bytes (REMATCH_MAX_FILE_MB, default 200 MB)."""
    return int(_setting(ENV_MAX_FILE_MB, MAX_FILE_MB) * _MB)


def max_rows() -> int:
    """Most data rows accepted per file or sheet (REMATCH_MAX_ROWS, default 1,000,000)."""
    return int(_setting(ENV_MAX_ROWS, MAX_ROWS))


def check_file_size(size: int, file: str) -> None:
    """Reject a file above the size limit (call before reading it, e.g. with ``path.stat().st_size``)."""
    if size > max_file_bytes():
        megabytes = _setting(ENV_MAX_FILE_MB, MAX_FILE_MB)
        raise InputFileError(Violation(file, None, None, f"limit: file larger than {megabytes:g} MB"))


def check_path_size(path: Path) -> None:
    """Reject a file on disk above the size limit without reading it."""
    check_file_size(path.stat().st_size, path.name)


def check_row_count(rows: int, file: str, row: int | None, sheet: str | None = None) -> None:
    """Reject a file or sheet once its data rows exceed the row limit (call while parsing)."""
    limit = max_rows()
    if rows > limit:
        raise InputFileError(Violation(file, row, None, f"limit: more than {limit} data rows", sheet=sheet))


# What a workbook or zip cut short or garbled in transfer (a download stopped, a copy to a full disk) is refused with.
DAMAGED = "truncated or damaged: download or copy the file again"
# An XML row element, with or without a namespace prefix (<row …>, <x:row …>).
_ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,20}:)?row[\s>/]")
_WORKSHEET = re.compile(r"^xl/worksheets/[^/]+\.xml$")


def _open_zip(data: bytes, file: str, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        # A zip cut short does not say whether it held a workbook or CSVs (container_of calls it a workbook); its
        # name does: ODK Central's `….csv.zip` was refused as `xlsx: …`, naming a format the user never landed.
        shown = "zip" if file.lower().endswith(".zip") else label
        raise InputFileError(Violation(file, None, None, f"{shown}: not a readable zip archive ({DAMAGED})")) from exc


def _check_directory(archive: zipfile.ZipFile, file: str, label: str) -> None:
    infos = archive.infolist()
    members = int(_setting(ENV_MAX_XLSX_MEMBERS, MAX_XLSX_MEMBERS))
    if len(infos) > members:
        raise InputFileError(Violation(file, None, None, f"{label}: more than {members} zip members"))
    total_mb = _setting(ENV_MAX_XLSX_MB, MAX_XLSX_UNCOMPRESSED_MB)
    if sum(info.file_size for info in infos) > total_mb * _MB:
        raise InputFileError(Violation(file, None, None, f"{label}: uncompressed size above {total_mb:g} MB (zip bomb?)"))
    ratio = _setting(ENV_MAX_XLSX_RATIO, MAX_XLSX_RATIO)
    for info in infos:
        if info.file_size > RATIO_MIN_BYTES and info.file_size > ratio * max(info.compress_size, 1):
            raise InputFileError(
                Violation(file, None, None, f"{label}: decompression ratio above {ratio:g}:1 in member {info.filename} (zip bomb?)")
            )


def check_zip(data: bytes, file: str) -> None:
    """The zip-bomb guards of check_xlsx, for a zip of CSV exports (ODK Central's CSV zip);
    each CSV's rows are limited while it is tokenised."""
    with _open_zip(data, file, "zip") as archive:
        _check_directory(archive, file, "zip")


def check_xlsx(data: bytes, file: str) -> None:
    """Zip-bomb and size guards on an XLSX, from its zip directory, before any XML is parsed.

    Checks the number of members, the total uncompressed size and each member's compression
    ratio as declared in the directory, then streams every worksheet to count its rows.
    Python's zipfile never inflates more than a member's declared size, so a directory that
    understates sizes yields a CRC error, not a bomb.
    """
    with _open_zip(data, file, "xlsx") as archive:
        _check_directory(archive, file, "xlsx")
        for info in archive.infolist():
            if _WORKSHEET.match(info.filename):
                _check_worksheet_rows(archive, info, file)


def container_of(data: bytes) -> str:
    """What holds a file's content: "xlsx" (any zip but a zip of CSVs: the XLSX reader reports a
    broken one), "zip" (CSV files and no ``[Content_Types].xml``: ODK Central's CSV zip) or "text"."""
    if not data.startswith(ZIP_SIGNATURE):
        return "text"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "xlsx"
    return "zip" if "[Content_Types].xml" not in names and any(is_csv_member(n) for n in names) else "xlsx"


def is_csv_member(name: str) -> bool:
    """A CSV file in a zip of exports (Central's media/ folder and other files are not read).

    A zip made with macOS's Finder (Compress) holds, beside each file, its AppleDouble twin: ``__MACOSX/…/._name.csv``
    (and ``._name.csv`` from some other zip tools), binary metadata, no CSV; read as one it refused the whole export.
    """
    parts = name.split("/")
    if "__MACOSX" in parts[:-1] or parts[-1].startswith("._"):
        return False
    return name.lower().endswith(".csv") and not name.endswith("/")


def _check_worksheet_rows(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file: str) -> None:
    # Counting row tags in the raw stream is far cheaper than parsing the sheet, and does not
    # trust the sheet's own <dimension> element.
    limit = max_rows() + 1  # + header row
    count = 0
    tail = b""
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(1 << 20)
                buffer = tail + chunk
                cut = len(buffer) if not chunk else max(len(buffer) - 64, 0)
                count += sum(1 for m in _ROW_TAG.finditer(buffer) if m.start() < cut)
                if count > limit:
                    raise InputFileError(
                        Violation(file, None, None, f"limit: more than {limit - 1} data rows in worksheet {info.filename}")
                    )
                if not chunk:
                    return
                tail = buffer[cut:]
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise InputFileError(Violation(file, None, None, f"xlsx: corrupt zip member {info.filename} ({DAMAGED})")) from exc


@dataclass(frozen=True)
class CsvRecords:
    """A CSV split into its header (up to the last named column) and non-blank data records (record
    number as a spreadsheet shows it)."""

    header: list[str]
    rows: list[tuple[int, list[str]]]
    delimiter: str
    # The header's record number: 2 below Excel's separator line (`sep=;`), which keeps number 1, so that every row
    # is named by its own record number in the file (a text editor's line), as erasure's line rewriting counts them.
    header_row: int = 1
    # The last data row's number where the file ends inside it, outside quotes (unended_last_row_read), else None.
    unended_last_row: int | None = None


# A separator line naming another separator than the readers know (`sep=|`) still stops the file.
_EXCEL_SEPARATOR_LINE = re.compile(r"^sep=.$", re.IGNORECASE)
_EXCEL_SEPARATOR_RULE = (
    "csv: the first line is Excel's separator line (sep=…) naming a separator other than ';', ',' or tab; delete "
    "that line, or open the file in Excel and save it again as CSV UTF-8, and land it again"
)
EXCEL_SEPARATOR_READ = (
    "the first line is Excel's separator line (sep=…), read past with the separator it names; rows are numbered as"
    " the file's lines (the header is row 2; Excel, which hides that line, shows each row one number lower)"
)


def _empty_header_line_rule(number: int, separator_line: bool) -> str:
    """The rule for an empty line (or separators only) where the header belongs: row 1, or row 2 below `sep=;`."""
    where = "the line right below its sep= line" if separator_line else "the file's first line"
    return (
        f"csv: row {number} is empty; the header (the field names) must be {where}: delete the empty lines above it"
        " (or export the file again) and land it again"
    )


# Every exporter (KoboToolbox, ODK Central, LimeSurvey) and every spreadsheet ends each row with a line break, the last
# one too. A file that stops inside its last data row may have been cut off in transfer; where that row's cells are not
# quoted (a template, Central's and legacy Kobo's minimal quoting, any CSV Excel saved again) the cut can fall inside
# its last cell and leave a shorter value with the row's full count of cells, which no other rule sees: an excluded
# municipality's key dropped from "05974 08337". But Notepad and many editors save a hand-edited file without that
# line break too, and refusing it would stop a whole intake that is fine: the row is read, and said (a warning).
def unended_last_row_read(row: int) -> str:
    """The warning for a file that ends inside its data row `row` (CsvRecords.unended_last_row)."""
    return (
        f"csv: the file ends inside row {row}, without the line break every export and spreadsheet writes after its"
        " last row; read as it is, but if the file was cut off in transfer that row's last cell may be incomplete:"
        " compare the row with the source, or download or copy the file again (a file edited by hand: end it with a"
        " line break and this warning goes)"
    )


def _cut_inside_last_cell(text: str) -> bool:
    """Whether the text ends inside an unquoted cell of its last row: no line break after it and no closing quote
    (a quoted cell cut short is an unterminated quote, refused as malformed)."""
    return not text.endswith(("\n", "\r")) and not text.rstrip(" \t").endswith('"')


def csv_records(data: bytes, file: str, check_code_page: bool = True) -> CsvRecords:
    """Decode and tokenise a CSV under the row limit; row numbers count records, header = 1 (2 below Excel's `sep=;`
    line, read past with the separator it names). check_code_page: refuse a code page 850 or Mac Roman file that
    Windows-1252 decodes (off only for an archived copy read as it landed). A last data row that ends without a line
    break and outside quotes is marked (CsvRecords.unended_last_row)."""
    if not data:
        raise InputFileError(Violation(file, None, None, "empty file (0 bytes: did the download or copy finish? land the file again)"))
    text = decode_text(data, file, check_code_page)
    if not text.strip():
        raise InputFileError(Violation(file, None, None, "empty file"))
    delimiter = sniff_delimiter(text)
    separator_line = excel_separator(text) is not None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            if header is None:
                if separator_line and number == 1:
                    continue  # Excel's `sep=;`: its separator is the file's (sniff_delimiter); the header is next
                if _EXCEL_SEPARATOR_LINE.match(delimiter.join(cells).strip()):  # `sep=;` splits at its own `;`
                    # `sep=;` above the header tells Excel the separator (some scripts write it, some users add it);
                    # read as a header it was "two header rows (merged title row?)", which sent users looking for a title.
                    raise InputFileError(Violation(file, 1, None, _EXCEL_SEPARATOR_RULE))
                if not any(c.strip() for c in cells):
                    # An empty line (or separators only) above the header, the file's first or the one below `sep=;`:
                    # each reader took something else for the header and said "two header rows (merged title
                    # row?)", "not a template" or "malformed (unterminated quote?)".
                    raise InputFileError(Violation(file, number, None, _empty_header_line_rule(number, separator_line)))
                header = [c.strip() for c in cells]
                width = len(header)
                while width and not header[width - 1]:
                    width -= 1  # empty header cells at the end (a formatted column) need no value
                # Excel saves such columns as empty cells on every line (`…;notes;;`): the header is
                # the named columns, and a value beside it still stops the file in the reader.
                header = header[:width]
                continue
            if any(c.strip() for c in cells):
                if len(cells) < width:
                    # Every exporter writes a full record. A short one is a file cut off at a field
                    # boundary or a separator lost in an edit: padding it would shift every value after
                    # the gap into the wrong column (a name into a yes/no column, outside the identity
                    # store) or keep a household with some of its members silently missing.
                    raise InputFileError(
                        Violation(file, number, None, f"csv: row has {len(cells)} cells, header has {width} (file truncated, or a separator missing?)")
                    )
                rows.append((number, cells))
                check_row_count(len(rows), file, number)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            # No answer is this long (a spreadsheet cell holds at most 32,767 characters): text pasted into a cell
            # by mistake, or a quote opened and never closed that took in the lines after it. "Malformed or
            # truncated" sent the coordinator looking for a quote in a file that may have none.
            rule = f"csv: a cell longer than {csv.field_size_limit():,} characters (text pasted in by mistake, or a quote opened and never closed?)"
            raise InputFileError(Violation(file, number + 1, None, rule)) from exc
        # Typically a truncated file ending inside a quoted field.
        raise InputFileError(Violation(file, number + 1, None, "csv: malformed or truncated (unterminated quote?)")) from exc
    unended = rows[-1][0] if rows and rows[-1][0] == number and _cut_inside_last_cell(text) else None
    return CsvRecords(header or [], rows, delimiter, header_row=2 if separator_line else 1, unended_last_row=unended)
