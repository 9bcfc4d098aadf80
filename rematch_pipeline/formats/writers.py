"""Files the project writes for people: CSV safe to open in a spreadsheet, stable bytes."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import polars as pl

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
    """Write a frame as UTF-8 CSV with neutralised cells; `private` files get mode 0600."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(frame.columns)
    for row in frame.iter_rows():
        writer.writerow([neutralise(v) for v in row])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    if private:
        os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path
