"""One entry point for every accepted input file: limits first, then the reader chosen by content.

The file name never decides: an export renamed to ``households.csv`` is still read as what it is.

- XLSX (zip signature ``PK\\x03\\x04``): after the zip guards, a KoboToolbox workbook if any sheet's
  header carries Kobo metadata (``_uuid``, ``_index``, ``_submission_time``, ``_parent_index`` …),
  else a canonical template workbook.
- Anything else is text (CSV): a LimeSurvey export if the header has ``id`` plus LimeSurvey's
  ``submitdate``/``lastpage``/``startlanguage`` (or at least three of our LimeSurvey question
  codes); a Kobo export if it has Kobo metadata (``_uuid``, ``_submission_time``, ``__version__``,
  ``meta/instanceID`` …); else a canonical template.
"""

from __future__ import annotations

from pathlib import Path

from rematch_pipeline.formats.canonical import ParsedTable, read_canonical, read_canonical_records
from rematch_pipeline.formats.errors import InputFileError, Violation
from rematch_pipeline.formats.kobo import is_kobo_header, read_kobo_records, read_kobo_xlsx, xlsx_headers
from rematch_pipeline.formats.limesurvey import is_limesurvey_header, read_limesurvey_records
from rematch_pipeline.formats.limits import ZIP_SIGNATURE, check_file_size, check_xlsx, csv_records

# Formats read_export can tell apart (also what `detect_format` returns).
FORMATS: tuple[str, ...] = ("kobo-xlsx", "canonical-xlsx", "limesurvey-csv", "kobo-csv", "canonical-csv")
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _guard(data: bytes, file: str) -> bool:
    """Size and container checks; True for an XLSX (zip) file."""
    check_file_size(len(data), file)
    if data.startswith(_OLE_SIGNATURE):
        raise InputFileError(Violation(file, None, None, "format: legacy Excel .xls (or another OLE file); save as .xlsx or CSV"))
    if data.startswith(ZIP_SIGNATURE):
        check_xlsx(data, file)
        return True
    return False


def detect_format(path: Path, data: bytes) -> str:
    """Which of FORMATS a file is, by content (limits are checked first)."""
    file = path.name
    if _guard(data, file):
        headers = xlsx_headers(data)
        return "kobo-xlsx" if any(is_kobo_header(h) for h in headers) else "canonical-xlsx"
    header = csv_records(data, file).header
    if is_limesurvey_header(header):
        return "limesurvey-csv"
    if is_kobo_header(header):
        return "kobo-csv"
    return "canonical-csv"


def read_export(path: Path, data: bytes) -> list[ParsedTable]:
    """Read any accepted input file into canonical tables.

    Args:
        path: where the file lies; only its name is used (in error messages).
        data: the file's bytes.

    Returns:
        ParsedTables with the canonical columns (all text) and ``file_row``; a LimeSurvey file
        yields ``LimeSurveyTable``s that also count skipped incomplete responses.

    Raises:
        InputFileError: the file breaks a limit, is of no accepted format, or its header does not
            match the contract; the message names file, row, column and rule, never a value.
    """
    file = path.name
    if _guard(data, file):
        if any(is_kobo_header(h) for h in xlsx_headers(data)):
            return read_kobo_xlsx(data, file)
        return read_canonical(path, data)
    # Tokenising once enforces the row limit for every CSV, the canonical one included.
    records = csv_records(data, file)
    if is_limesurvey_header(records.header):
        return list(read_limesurvey_records(records, file))
    if is_kobo_header(records.header):
        return read_kobo_records(records, file)
    return read_canonical_records(records, file)
