"""Files the project writes for people: CSV safe to open in a spreadsheet, stable bytes."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import polars as pl

from rematch_pipeline.formats.text import UTF8_BOM

# A cell starting with one of these is run as a formula by Excel or LibreOffice (CSV injection).
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """Cell text that a spreadsheet shows as text, never evaluates; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    if isinstance(value, int) or not text.startswith(FORMULA_PREFIXES):
        return text
    return "'" + text


def write_csv(frame: pl.DataFrame, path: Path, private: bool = False) -> Path:
    """Write a frame as UTF-8 CSV with neutralised cells; `private` files get mode 0600.

    The file starts with a UTF-8 byte order mark: without it Excel reads the file as the
    machine's ANSI code page and shows "MÃ¼nchen" for München (LimeSurvey writes one too)."""
    buffer = io.StringIO()
    buffer.write(UTF8_BOM.decode("utf-8"))
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(frame.columns)
    for row in frame.iter_rows():
        writer.writerow([neutralise(v) for v in row])
    return replace_file(path, buffer.getvalue().encode("utf-8"), 0o600 if private else None)


def replace_file(path: Path, data: bytes, mode: int | None = None) -> Path:
    """Give path this content in one step: written beside it as .tmp (which landing/ ignores), then renamed.
    mode sets its permissions (default: those of the file it replaces, if any)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None and path.exists():
        mode = path.stat().st_mode & 0o777
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    # A private file (proposals.csv, an archived export) is never readable by others, not even before the chmod.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None and not mode & 0o077 else 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    tmp.replace(path)
    return path
