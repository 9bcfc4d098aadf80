"""Lines of a newly landed export that bring an erased household back.

Kobo, Central and LimeSurvey export every submission each time, so the export after an erasure
still holds the erased submission unless someone deleted it in the tool too. Such lines are the
same submission again, not a new one: they are taken out of the file before it is stored. A
household that submits again after its erasure sends a new submission (a new id) and is kept.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import polars as pl

from rematch_pipeline.formats.canonical import PERSON_FIELDS, ParsedTable
from rematch_pipeline.formats.landing import pseudonyms
from rematch_pipeline.formats.redact import Unlink, rows_holding
from rematch_pipeline.resources.identity import pseudonym
from rematch_pipeline.validation import members_naming_no_household


# How ingestion_log's `skipped` (and `rematch ingest`'s "left out:") names the lines taken out.
ERASED_LINES = "lines of erased submissions (taken out of the landed and archived copies)"
# The file key of this export's lines where they meet validation.members_naming_no_household (stored rows have none).
_EXPORT = "this export"


@dataclass(frozen=True)
class Erased:
    """What erasure recorded (keyed pseudonyms), and the households and submissions still stored."""

    households: frozenset[str]  # household pseudonyms in `erasures`
    submissions: frozenset[str]  # submission pseudonyms in `erased_submissions`
    stored_households: frozenset[str]  # household pseudonyms of stored household rows
    stored_submissions: frozenset[str]  # submission ids of stored household rows


@dataclass(frozen=True)
class ErasedLines:
    """Lines to take out of an export (per sheet, None for a CSV), and erased references to take out
    of the link lists of the households it keeps."""

    rows: dict[str | None, set[int]]
    unlink: Unlink | None
    # Per members sheet, the lines taken out that named no household and held a person (may be an erased
    # household's persons; a sum row is not counted): ingestion records their count (erased_unlinked_members) so
    # that the sheet's households stay held out.
    unlinked: dict[str | None, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Lines taken out."""
        return sum(len(numbers) for numbers in self.rows.values())


def erased_lines(parsed: list[ParsedTable], secret: bytes, erased: Erased) -> ErasedLines | None:
    """The lines of a parsed export that belong to erased submissions (None: there are none).

    A household line goes when both its submission and its household were erased; a member line
    when its household line goes, or when its submission was erased and no household line (in this
    file or stored) carries that submission: a members file has no reference, and a bare submission
    id of another tool or survey could be equal by chance. A member line whose link is empty
    (validation.members_naming_no_household, the one definition: not on a household's own line) goes from any sheet:
    it names no one, so it may be an erased household's person whose only line in this export it is (a members file
    of that row alone, an export that lost the household's other lines in the tool). One whose link names a
    submission no household line has stays, whatever the sheet lost: its households file may land later (a
    members file landing first), and validation holds it out until it does. A link to an erased household that has no household line left is taken out of the households kept, as erasure does: validation would
    otherwise hold them out for a missing partner.
    """
    if not erased.households and not erased.submissions:
        return None
    rows: dict[str | None, set[int]] = defaultdict(set)
    gone: set[str] = set()
    kept_submissions: set[str] = set()
    kept_households: set[str] = set()
    households = [p for p in parsed if p.table == "households"]
    for table in households:
        frame = table.frame.with_columns(
            pseudonyms(secret, "submission", table.frame["submission_id"]).alias("_submission"),
            pseudonyms(secret, "household", table.frame["household_ref"]).alias("_household"),
        )
        drop = pl.col("_submission").is_in(sorted(erased.submissions)) & pl.col("_household").is_in(sorted(erased.households))
        frame = frame.with_columns(drop.fill_null(False).alias("_drop"))
        dropped, kept = frame.filter(pl.col("_drop")), frame.filter(~pl.col("_drop"))
        rows[table.sheet].update(dropped["file_row"].cast(pl.Int64).to_list())
        gone.update(dropped["submission_id"].drop_nulls())
        kept_submissions.update(kept["submission_id"].drop_nulls())
        kept_households.update(kept["_household"].drop_nulls())
    carried = kept_submissions | erased.stored_submissions
    # Every household row that a member link may name: this export's (kept or going), and the stored ones (no line here).
    known = pl.concat(
        [
            *(_lines(h.frame, h.sheet) for h in households),
            pl.DataFrame({"submission_id": sorted(erased.stored_submissions)}, schema={"submission_id": pl.Utf8}).with_columns(
                pl.lit(None, dtype=pl.Utf8).alias("file_sha256"), pl.lit(None, dtype=pl.Utf8).alias("sheet"), pl.lit(None, dtype=pl.Int64).alias("file_row")
            ),
        ]
    )
    unlinked: dict[str | None, int] = {}
    for table in (p for p in parsed if p.table == "members"):
        frame = table.frame.with_columns(pseudonyms(secret, "submission", table.frame["submission_id"]).alias("_submission"))
        orphan = pl.col("_submission").is_in(sorted(erased.submissions)) & ~pl.col("submission_id").is_in(sorted(carried))
        drop = (pl.col("submission_id").is_in(sorted(gone)) | orphan).fill_null(False)
        dropped = frame.filter(drop)["file_row"].cast(pl.Int64).to_list()
        # An empty link names no one: the person may be any erased household's (its only line in this export). A
        # link naming a submission no households file has stays, even where the sheet lost erased lines: it is not
        # an erased submission (those went above), and its households file may land later (a members file landing
        # first); validation holds it out until then. Only a mistyped link of an erased person escapes this.
        # A row holding no person goes too (a name alone cannot be told from a "Summe" label without reading it) but
        # is not counted: it holds no household out.
        loose = members_naming_no_household(_lines(frame.filter(~drop), table.sheet, PERSON_FIELDS), known).filter(pl.col("submission_id").is_null())
        if loose["holds_person"].any():
            unlinked[table.sheet] = int(loose["holds_person"].sum())
        dropped += loose["file_row"].to_list()
        rows[table.sheet].update(dropped)
    unlink = _erased_links(households, secret, erased.households - kept_households - erased.stored_households, rows)
    rows = {sheet: numbers for sheet, numbers in rows.items() if numbers}
    if not rows and unlink is None:
        return None
    return ErasedLines(rows, unlink, unlinked)


def refused_file_lines(data: bytes, file: str, secret: bytes, erased: Erased) -> ErasedLines | None:
    """The lines of an export the readers refuse that name an erased submission (None: none, or the file cannot be
    inspected): its household line and its member lines, in any format, as a cell or a token of one (Central's
    ``uuid:…``, a repeat's ``KEY``), compared by keyed pseudonym. A refused file has no columns to go by, so less
    is found than erased_lines finds in a file that reads: member lines with an empty link, an erased reference in
    a kept household's link list, and LimeSurvey's lines (its export holds the response number, not the
    submission id) stay. The contract's submission ids are UUIDs: no other cell is equal by chance."""
    if not erased.submissions:
        return None
    seen: dict[str, bool] = {}

    def names_erased(value: str) -> bool:
        if value not in seen:
            seen[value] = value not in erased.stored_submissions and pseudonym(secret, "submission", value) in erased.submissions
        return seen[value]

    rows = rows_holding(data, file, names_erased)
    return ErasedLines(rows, None) if rows else None


def _lines(frame: pl.DataFrame, sheet: str | None, cells: tuple[str, ...] = ()) -> pl.DataFrame:
    """A parsed table's lines keyed as validation keys stored rows (file_sha256, sheet, file_row), with their link
    and `cells`."""
    return frame.select(
        "submission_id", pl.lit(_EXPORT).alias("file_sha256"), pl.lit(sheet, dtype=pl.Utf8).alias("sheet"), pl.col("file_row").cast(pl.Int64), *cells
    )


def _erased_links(households: list[ParsedTable], secret: bytes, absent: frozenset[str], dropped: dict[str | None, set[int]]) -> Unlink | None:
    """The references of erased households without a line left, in the kept households' link lists."""
    tokens: set[str] = set()
    edit: dict[str | None, set[int]] = defaultdict(set)
    for table in households:
        for row, refs in table.frame.select("file_row", "linked_household_refs").iter_rows():
            if refs is None or int(row) in dropped.get(table.sheet, set()):
                continue
            named = {ref for ref in refs.split() if pseudonym(secret, "household", ref) in absent}
            if named:
                tokens |= named
                edit[table.sheet].add(int(row))
    return Unlink(frozenset(tokens), dict(edit)) if tokens else None
