"""Input errors that name file, row, column and rule — never a cell value."""

from __future__ import annotations

from dataclasses import dataclass


def table_place(sheet: str) -> str:
    """Where a table lies in its file: `sheet S` in a workbook, `member S.csv` in a zip of CSV exports."""
    return f"{'member' if sheet.lower().endswith('.csv') else 'sheet'} {sheet}"


@dataclass(frozen=True)
class Violation:
    """One broken rule at one place of an input file. Carries no cell value by design."""

    file: str
    row: int | None
    column: str | None
    rule: str
    table: str | None = None
    sheet: str | None = None

    def describe(self) -> str:
        """One line for logs and error messages."""
        where = self.file + (f" [{table_place(self.sheet)}]" if self.sheet else "")
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.rule}"


class InputFileError(Exception):
    """A whole file cannot be read; the file is rejected and nothing of it is stored."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.describe())
        self.violation = violation
