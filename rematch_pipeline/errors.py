"""Errors reported to people as one line (file, row, column, rule or a run's reason — never a cell value)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class UserFacingError(Exception):
    """An expected failure whose message is meant for the user as it is.

    details: where it is, as the one line says it (`file`, `row`, `column`, `rule`, or a config field and its
    rule); a failing Dagster step shows them as its failure's metadata (assets.failures.reason_first). Never
    a cell value or anything typed.
    """

    def __init__(self, reason: str, details: Mapping[str, str | int] | None = None) -> None:
        super().__init__(reason)
        self.details: dict[str, str | int] = dict(details or {})


def field_details(problems: Sequence[str]) -> dict[str, str]:
    """`field: rule` lines (a run config's problems) as {field: rule}; a line without a field goes under `rule`."""
    details: dict[str, str] = {}
    for line in problems:
        field, sep, rule = line.partition(": ")
        key, text = (field, rule) if sep and " " not in field else ("rule", line)
        details[key] = f"{details[key]}; {text}" if key in details else text
    return details
