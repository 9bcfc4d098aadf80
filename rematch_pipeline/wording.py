"""Counts in words, the one place that puts a number before a noun: `1 person`, `2 persons`, `1 more Kita place`;
and a solve's status and the hard rules in a coordinator's words.

Used by the engine (diagnosis), the report, the run logs and the command line alike, so no text says
`1 more persons` or `1 file(s)`, and the log, the metadata and the report name a solve's outcome alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

# A resource key (features.RESOURCES) as one unit of it reads in a sentence.
RESOURCE_NOUNS: dict[str, str] = {
    "persons": "person",
    "housing_units": "housing unit",
    "accessible_units": "wheelchair-accessible unit",
    "kita_places": "Kita place",
    "school_places_primary": "primary school place",
    "school_places_secondary": "secondary school place",
    "integration_course_places": "integration course place",
}


def plural(noun: str) -> str:
    """The English plural of a noun or of a phrase ending in one (`household row` → `household rows`)."""
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "o", "u", ""):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def quiet(line: str) -> None:
    """Progress lines nobody reads: the default `say` of the steps that tell a waiting person what they do."""


def counted(n: int | float, one: str, many: str | None = None, number: Callable[[int], str] = str) -> str:
    """`n one` for 1, else `n many` (default: plural(one)); one and many may carry their verb (`row does`,
    `rows do`). number formats the count (the report: thousands separated)."""
    n = int(n)
    return f"{number(n)} {one if n == 1 else (many if many is not None else plural(one))}"


def number_runs(numbers: Sequence[int], through: str = "-", separator: str = ", ") -> str:
    """Sorted numbers as runs: `14-17, 30` (runs of three or more as `a{through}b`, two as `a{separator}b`), so a
    line naming many rows or entries stays one short line."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return separator.join(str(a) if a == b else f"{a}{separator}{b}" if b == a + 1 else f"{a}{through}{b}" for a, b in runs)


def in_file(file: str, sheet: str | None) -> str:
    """A file, and its sheet where it has one: `households.xlsx, sheet members` (never a value)."""
    return f"{file}, sheet {sheet}" if sheet else file


def first_rows(rows: Sequence[int], named: int = 3) -> str:
    """The first `named` of many rows, with ` …` where there are more: `rows 2, 3, 4 …`, or `row 2` alone (said beside
    their count, as a warning about many rows of one column stays one line)."""
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(str(r) for r in rows[:named]) + (" …" if len(rows) > named else "")


def resource_noun(resource: str) -> str:
    """One unit of a resource by its key (RESOURCE_NOUNS; an unknown key with spaces for underscores)."""
    return RESOURCE_NOUNS.get(resource, resource.replace("_", " "))


def resource_counted(n: int, resource: str, more: bool = False) -> str:
    """A count of a resource by its key: `1 Kita place`, `3 more housing units`."""
    noun = resource_noun(resource)
    return counted(n, f"more {noun}" if more else noun)


# The solver's status as a coordinator reads it ("feasible" read as "it works", not "not proven best").
SOLVED_WORDS: dict[str, str] = {
    "optimal": "optimal (proven best within relative_gap)",
    "feasible": "best found within the time limit (not proven best)",
    # A stage the time limit ended before it found any answer (the round keeps the stage before it); the report's
    # Solver table said the engine's `not_solved`.
    "not_solved": "no answer within the time limit",
}


def elapsed(seconds: float) -> str:
    """A duration as a person waiting reads it: `45 s`, `2 min 5 s` (whole seconds)."""
    whole = int(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def solved_words(status: str) -> str:
    """A solve's status in a coordinator's words, as the run's log, the round's metadata and report.html say it
    (a status without words of its own, e.g. infeasible, as the solver says it)."""
    return SOLVED_WORDS.get(status, status)


def gap_words(gap: float, digits: int = 4) -> str:
    """A solve's score gap as the run's log says it: `0.1007%`, or `unproven (no bound)` where the score stage found
    no answer and so no bound (the metadata's `gap_percent: unproven`), never `inf%`."""
    return f"{gap:.{digits}%}" if math.isfinite(gap) else "unproven (no bound)"


# The hard rules (engine.compatibility.RULES) in a reader's words, for the report's Municipalities table
# ("rule keeping most out"; the rule's name stays in the cell's tooltip: it is the name in the docs and round exports)
# and the refusal of a lock that breaks one (coordinator_pairs).
_RULE_WORDS: dict[str, str] = {
    "largest_unit": "household larger than the largest dwelling",
    "medical_care": "medical care needed is not offered",
    "pets": "pets not allowed",
    "excluded": "excluded by the household",
    "declined": "declined in an earlier round",
    "family_tie_must": "too far from a family tie marked must",
    # Only the distribution-key baseline breaks it (engine.distribution_key): the solver places link groups whole.
    "linked_split": "linked households split",
}


def rule_words(rule: str, offered: bool = True, accepted: bool = False) -> str:
    """A hard rule's name in a reader's words; for a resource rule, `none offered` where the municipality offers none
    of it (its row's "Full" lists only capacities offered, so nothing else says why nobody came), and `than left after
    accepted proposals` where proposals accepted earlier in the period hold some of it (the rule is judged on what
    they left: a household of 2 kept out of an offer of 23 that accepted proposals filled does not need more than 23)."""
    if rule.startswith("resource_"):
        # resource_<r>: the household alone needs more of r than the municipality has for this round.
        key = rule.removeprefix("resource_")
        resource = plural(resource_noun(key))
        if not offered:
            return f"no {resource} offered"
        return f"needs more {resource} than left after accepted proposals" if accepted else f"needs more {resource} than offered"
    return _RULE_WORDS.get(rule, rule)
