"""Errors reported to people as one line (file, row, column, rule or a run's reason — never a cell value)."""


class UserFacingError(Exception):
    """An expected failure whose message is meant for the user as it is."""
