"""Typing of template text cells: the encodings of the contract (yes/no, decimal comma, lists, ISO times).

A cell that cannot be typed becomes null and yields a violation naming row and column with the
rule "type: …"; value rules (ranges, code lists, required) are checked afterwards by pandera.
At ingestion, `withhold_unshaped` replaces cells that have not their column's shape before they
are stored (free text typed into a code, yes/no, number or date column stays out of the warehouse).
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl

from rematch_pipeline.ags_reference import AGS_RESTORED_COLUMN, DEVICE_DATE_SET_ASIDE_COLUMN, PERIOD_RESTORED_COLUMN, reference_ags
from rematch_pipeline.formats.canonical import SUBMITTED_ON_COLUMN
from rematch_pipeline.schemas.contract import TABLES, Field, Kind
from rematch_pipeline.schemas.models import DATE_CELL_RULES, TEXT_FORMATS

TRUE_WORDS: frozenset[str] = frozenset({"yes", "true", "1", "ja", "y", "wahr"})
FALSE_WORDS: frozenset[str] = frozenset({"no", "false", "0", "nein", "n", "falsch"})
# Digits 0-9 only, as the forms ask (forms_builder.AGS_REGEX): `\d` also matches other scripts' digits
# (fullwidth ０３２４１, Arabic-Indic ٢٠٢٦), which would pass as keys that match no municipality or period.
AGS_PATTERN = r"^([0-9]{5}|[0-9]{8})$"
INT_PATTERN = r"^[+-]?[0-9]+$"
DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"

TYPE_RULES: dict[Kind, str] = {
    Kind.INT: "type: whole number",
    Kind.DECIMAL: "type: decimal number",
    Kind.BOOL: "type: yes/no",
    Kind.TIMESTAMP: "type: ISO 8601 timestamp",
    Kind.DATE: "type: ISO 8601 date",
    Kind.AGS: "type: AGS of 5 or 8 digits kept as text (leading zeros lost?)",
    Kind.AGS_LIST: "type: space-separated AGS keys of 5 or 8 digits",
}

# An AGS typed as 09162 into a General cell is stored by Excel as the number 9162 (and 09162000 as
# 9162000). Such a key is restored where it is exactly one digit short and the key with a leading zero
# is in the reference lists (docs/decisions.md, "AGS keys that lost their leading zero").
SHORT_AGS_PATTERN = r"^([0-9]{4}|[0-9]{7})$"
# A key written as a decimal number (9162.0, 05315000.0): a script's or LibreOffice's CSV of a key column read as
# numbers (pandas writes a number column with an empty cell as floats). The ".0" part is no part of any key.
DECIMAL_AGS_PATTERN = r"^([0-9]{4,5}|[0-9]{7,8})\.0+$"
_RESTORABLE_AGS_PATTERN = f"{SHORT_AGS_PATTERN}|{DECIMAL_AGS_PATTERN}"


# A German Excel shows an ISO date it recognised as 22.10.1981 and saves a CSV so (a timestamp as
# 22.10.1981 08:15, without seconds). Day first with dots is the only reading in Germany; a two-digit
# year is not accepted (its century is a guess).
_GERMAN_DATE = re.compile(r"^(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})(?:[ T](?P<time>\d{1,2}:\d{2}(?::\d{2})?))?$")
# The same with a two-digit year (16.06.82): an Excel cell formatted TT.MM.JJ saves so. Not read, but told apart,
# so that the rule can say what to fix.
_GERMAN_DATE_SHORT_YEAR = re.compile(r"^\d{1,2}\.\d{1,2}\.\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")


def _iso(value: str) -> str:
    """A German Excel date (time) as ISO 8601 text; any other text unchanged."""
    match = _GERMAN_DATE.match(value)
    if match is None:
        return value
    iso = f"{match['y']}-{int(match['m']):02d}-{int(match['d']):02d}"
    if match["time"]:
        iso += "T" + ":".join(f"{int(p):02d}" for p in match["time"].split(":"))
    return iso


def parse_timestamp(value: str | None) -> dt.datetime | None:
    """ISO 8601 timestamp (date only, with T or space, with Z or offset; or a German Excel's
    22.10.1981 08:15) as naive UTC; None if invalid."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(_iso(value.strip()))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except OverflowError:
            # 0001-01-01T00:00+01:00 has no UTC time in the calendar; it is implausible either way
            # (submission_time_violations), and an offset of hours does not matter there.
            parsed = parsed.replace(tzinfo=None)
    return parsed


def written_date(value: str | None) -> dt.date | None:
    """The calendar date of a timestamp as written: in its own UTC offset where it carries one (the submitter's
    local date: 2026-07-10T00:30+02:00 is 10 July, though 9 July in UTC), else the date as it reads (a naive time,
    a German Excel's 10.07.2026 00:30); None if the text is no timestamp. Ages and the intake period go by it,
    latest-wins by the UTC time (parse_timestamp; docs/formats.md, "Which date a submission has")."""
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(_iso(value.strip())).date()
    except ValueError:
        return None


# A submitted_at outside these bounds is a placeholder (0001-01-01 of an empty date field, LimeSurvey's
# 1980-01-01) or a device clock set wrong: read as a time, it would decide latest-wins (a far-future copy
# winning over every later correction, a year-1 update losing to the offer it replaces) and the ages.
# The questionnaires serve people who fled since Russia's full-scale invasion of Ukraine (February
# 2022), so nothing was submitted before 2022; nothing was submitted after the file holding it landed,
# give or take a device clock a day off (docs/decisions.md, Validation).
EARLIEST_SUBMISSION = dt.datetime(2022, 1, 1)
CLOCK_SKEW = dt.timedelta(days=1)
SUBMITTED_AT_RULE = (
    f"range: submitted_at from {EARLIEST_SUBMISSION:%Y-%m-%d} to 1 day after the file landed"
    " (a placeholder date, or a device clock set wrong?)"
)


def utc_now() -> dt.datetime:
    """The current time as every stored time holds it: UTC, without a zone (DuckDB's now() in a TIMESTAMP
    column would be the machine's local time)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def submission_time_violations(typed: pl.DataFrame, landed: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed rows with an implausible submitted_at made null (so latest-wins places it by ingestion, as an
    unreadable one), and the violations (_row, column, rule).

    `landed` (file_sha256, ingested_at) gives each file's landing time, the latest plausible time of its
    rows (plus CLOCK_SKEW); a file not in it (or no `landed`) is bounded by the current time."""
    empty = pl.DataFrame(schema={"_row": pl.UInt32, "column": pl.Utf8, "rule": pl.Utf8})
    if "submitted_at" not in typed.columns or typed.is_empty():
        return typed, empty
    now = utc_now()
    if landed is None or "file_sha256" not in typed.columns:
        latest = pl.lit(now + CLOCK_SKEW)
        frame = typed
    else:
        bounds = landed.select("file_sha256", pl.col("ingested_at").cast(pl.Datetime("us")).alias("_landed")).unique("file_sha256")
        frame = typed.join(bounds, on="file_sha256", how="left", maintain_order="left")
        latest = pl.coalesce(pl.col("_landed"), pl.lit(now)) + pl.lit(CLOCK_SKEW)
    at = pl.col("submitted_at")
    off = (at < pl.lit(EARLIEST_SUBMISSION)) | (at > latest)
    flags = frame.select(off.fill_null(False).alias("_off"))["_off"]
    violations = (
        pl.DataFrame({"_off": flags}).with_row_index("_row").filter(pl.col("_off"))
        .select("_row", pl.lit("submitted_at").alias("column"), pl.lit(SUBMITTED_AT_RULE).alias("rule"))
    )
    # The date as written goes with the time it was read from: an implausible time dates nothing.
    dated = [c for c in ("submitted_at", SUBMITTED_ON_COLUMN) if c in typed.columns]
    return typed.with_columns(pl.when(flags).then(None).otherwise(pl.col(c)).alias(c) for c in dated), violations.cast(empty.schema)


def with_written_date(raw: pl.DataFrame, typed: pl.DataFrame) -> pl.DataFrame:
    """Typed rows with SUBMITTED_ON_COLUMN (a date): the submitter's date of each row's submitted_at, as written
    (written_date of the raw text), or the date the reader kept where it read the time from another column
    (formats.canonical.SUBMITTED_ON_COLUMN); null where submitted_at could not be read. Rows stored before the
    column existed have it null in the raw table: their date is the text's (docs/decisions.md, thirty-first session).

    A kept date is the device's (a form's start, today or offset-less end time) and is taken only where a device clock
    could show it: from EARLIEST_SUBMISSION to one day after submitted_at's UTC date (the device's date may be
    earlier, a form filled offline and sent later, but no more than a day later at any UTC offset); else the date
    of submitted_at is used, as where none was kept (a clock reset to 1970 must not date the household), and
    DEVICE_DATE_SET_ASIDE_COLUMN says so (validation warns)."""
    kept = raw[SUBMITTED_ON_COLUMN] if SUBMITTED_ON_COLUMN in raw.columns else pl.Series(SUBMITTED_ON_COLUMN, [None] * raw.height, dtype=pl.Utf8)
    device = kept.cast(pl.Utf8).map_elements(parse_date, return_dtype=pl.Date, skip_nulls=True)
    at = typed["submitted_at"].dt.date() if typed["submitted_at"].dtype == pl.Datetime else pl.Series([None] * raw.height, dtype=pl.Date)
    plausible = (device >= EARLIEST_SUBMISSION.date()) & (device <= at + CLOCK_SKEW)
    written = raw.select(
        pl.coalesce(
            pl.when(plausible).then(device),
            pl.col("submitted_at").map_elements(written_date, return_dtype=pl.Date, skip_nulls=True),
        ).alias(SUBMITTED_ON_COLUMN)
    )[SUBMITTED_ON_COLUMN]
    set_aside = (device.is_not_null() & ~plausible).fill_null(False)
    return typed.with_columns(
        pl.when(pl.col("submitted_at").is_not_null()).then(written).alias(SUBMITTED_ON_COLUMN),
        (set_aside & pl.col("submitted_at").is_not_null()).alias(DEVICE_DATE_SET_ASIDE_COLUMN),
    )


def submission_time_order(at: pl.Expr) -> pl.Expr:
    """A parsed submitted_at as latest-wins compares it: to the minute. A German Excel saves a
    timestamp as it shows it, without seconds (05.07.2026 10:48 for 10:48:45), so a copy corrected
    and saved there would otherwise count as older than the export it corrects; within one minute
    the later ingested copy wins (docs/decisions.md, Validation)."""
    return at.dt.truncate("1m")


def parse_date(value: str | None) -> dt.date | None:
    """ISO date (a timestamp's date part is accepted; so is a German Excel's 22.10.1981); None if invalid."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(_iso(value.strip())[:10])
    except ValueError:
        return None


def has_two_digit_year(value: str | None) -> bool:
    """True for a German date whose year has two digits (16.06.82), which parse_date does not read."""
    return value is not None and _GERMAN_DATE_SHORT_YEAR.match(value.strip()) is not None


def _restored_key(key: pl.Expr) -> pl.Expr:
    """One AGS key without a number's ".0" and with its lost leading zero back, where that makes it a reference
    AGS; else unchanged."""
    digits = pl.when(key.str.contains(DECIMAL_AGS_PATTERN)).then(key.str.replace(r"\.0+$", "")).otherwise(key)
    restored = pl.when(digits.str.contains(SHORT_AGS_PATTERN)).then(pl.lit("0") + digits).otherwise(digits)
    return pl.when(key.str.contains(_RESTORABLE_AGS_PATTERN) & restored.is_in(list(reference_ags()))).then(restored).otherwise(key)


def restored_ags(field: Field, col: pl.Expr) -> pl.Expr:
    """An AGS or AGS-list cell with every key that lost its leading zero (or was written as a decimal number)
    restored (other cells unchanged)."""
    text = col.str.strip_chars()
    if field.kind is Kind.AGS:
        return pl.when(text.str.contains(_RESTORABLE_AGS_PATTERN)).then(_restored_key(text)).otherwise(col)
    if field.kind is Kind.AGS_LIST:
        keys = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        short = keys.list.eval(pl.element().str.contains(_RESTORABLE_AGS_PATTERN)).list.any()
        return pl.when(short.fill_null(False)).then(keys.list.eval(_restored_key(pl.element())).list.join(" ")).otherwise(col)
    return col


def restore_ags_keys(table: str, raw: pl.DataFrame) -> pl.DataFrame:
    """Raw rows with AGS keys that lost their leading zero restored, and AGS_RESTORED_COLUMN naming
    the restored columns per row (null where none was). The raw tables keep the key as landed."""
    fields = [f for f in TABLES[table] if f.kind in (Kind.AGS, Kind.AGS_LIST) and f.name in raw.columns]
    if not fields or raw.is_empty():
        return raw.with_columns(pl.lit(None, dtype=pl.Utf8).alias(AGS_RESTORED_COLUMN))
    restored = raw.with_columns([restored_ags(f, pl.col(f.name)).alias(f.name) for f in fields])
    changed = [
        pl.when(pl.col(f.name).ne_missing(raw[f.name])).then(pl.lit(f.name)) for f in fields
    ]
    names = restored.select(pl.concat_list(changed).list.drop_nulls().list.join(",").alias("_names"))["_names"]
    return restored.with_columns(pl.when(names != "").then(names).alias(AGS_RESTORED_COLUMN))


# Excel reads an intake period typed as 2026-07 as the date 1 July 2026: a workbook stores a date cell
# (a serial number once the cell is formatted General), and a CSV it saves holds what the cell shows,
# "Jul 26" in a German Excel ("Jul-26" in an English one) or 01.07.2026. Only the first day of a month
# (at midnight) is what Excel makes of a month; any other date is not read as one (docs/decisions.md).
_MONTH_NAMES: dict[str, int] = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "januar", "january", "jän", "jänner"), ("feb", "februar", "february"), ("mrz", "mär", "märz", "mar", "march"),
            ("apr", "april"), ("mai", "may"), ("jun", "juni", "june"), ("jul", "juli", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("okt", "oktober", "oct", "october"), ("nov", "november"), ("dez", "dezember", "dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MIDNIGHT = r"(?:[T ]00:00(?::00(?:\.0+)?)?)?"
_FIRST_OF_MONTH = (
    re.compile(rf"^(?P<y>\d{{4}})-(?P<m>\d{{1,2}})-0?1{_MIDNIGHT}$"),
    re.compile(rf"^0?1\.(?P<m>\d{{1,2}})\.(?P<y>\d{{4}}){_MIDNIGHT}$"),
)
_MONTH_SHOWN = re.compile(r"^(?P<name>[^\W\d_]+)\.?[ -](?P<y>\d{2}|\d{4})$")


def period_from_excel_date(value: str | None) -> str | None:
    """The YYYY-MM an intake period was before Excel made a date of it (2026-07-01, 01.07.2026, "Jul 26",
    "Jul-26", "Juli 2026"); None for anything else, a date other than a month's first day included.
    A two-digit year is 20YY: Excel shows the month so, and intake periods are this century's."""
    text = (value or "").strip()
    for pattern in _FIRST_OF_MONTH:
        match = pattern.match(text)
        if match:
            year, month = int(match["y"]), int(match["m"])
            break
    else:
        match = _MONTH_SHOWN.match(text)
        if match is None or match["name"].lower() not in _MONTH_NAMES:
            return None
        year, month = int(match["y"]), _MONTH_NAMES[match["name"].lower()]
        year += 2000 if year < 100 else 0
    if not (2000 <= year <= 2099 and 1 <= month <= 12):
        return None
    return f"{year}-{month:02d}"


def restored_period(col: pl.Expr) -> pl.Expr:
    """An intake period cell with a month Excel had turned into a date back as YYYY-MM (others unchanged)."""
    return pl.coalesce(col.map_elements(period_from_excel_date, return_dtype=pl.Utf8, skip_nulls=True), col)


def restore_periods(raw: pl.DataFrame) -> pl.DataFrame:
    """Raw municipality rows with intake periods that Excel had made dates restored, and
    PERIOD_RESTORED_COLUMN true on those rows. The raw table keeps the cell as landed."""
    if "intake_period" not in raw.columns or raw.is_empty():
        return raw.with_columns(pl.lit(False).alias(PERIOD_RESTORED_COLUMN))
    restored = raw.with_columns(restored_period(pl.col("intake_period")).alias("intake_period"))
    return restored.with_columns(restored["intake_period"].ne_missing(raw["intake_period"]).alias(PERIOD_RESTORED_COLUMN))


# What Excel stores (XLSX, in English) or saves into a CSV (in its language) for a formula that broke.
SPREADSHEET_ERROR = (
    r"^#(NULL!|DIV/0!|VALUE!|REF!|NAME\?|NUM!|N/A|SPILL!|CALC!|GETTING_DATA|FIELD!|BLOCKED!|UNKNOWN!"
    r"|WERT!|BEZUG!|ZAHL!|NV|ÜBERLAUF!|KALK!|FELD!|BLOCKIERT!|UNBEKANNT!)$"
)
# Columns whose value identifies a submission or household: a spreadsheet error there is no key.
KEY_COLUMNS: tuple[str, ...] = ("submission_id", "household_ref")


def without_spreadsheet_errors(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with spreadsheet error values (#REF!, #N/A, #BEZUG! …) in its key columns made empty.

    A key column whose formula broke holds the same error in every row; read as a key, it would make
    all those rows one submission or household (one copy superseding the others, a refusal in one of
    them withdrawing all). Empty, each row is reported as missing its key (`required`).
    """
    return frame.with_columns(
        pl.when(pl.col(c).str.strip_chars().str.contains(SPREADSHEET_ERROR)).then(None).otherwise(pl.col(c)).alias(c)
        for c in KEY_COLUMNS
        if c in frame.columns
    )


FORMULA_RULE = "formula: cell starts with =, +, - or @ (spreadsheet formula)"
# A formula-like cell in a text field; "-" only counts when no number follows (negatives are range errors).
FORMULA_PATTERN = r"^([=+@]|-[^0-9.])"


def _typed(field: Field, col: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, cell-is-badly-typed flag) for one column."""
    text = col.str.strip_chars()
    present = text.is_not_null() & (text != "")
    match field.kind:
        case Kind.INT:
            # Digits beyond 64 bits fail the cast: a type error, not an empty cell (an optional one
            # would otherwise pass as null).
            value = text.cast(pl.Int64, strict=False)
            return value, present & (~text.str.contains(INT_PATTERN) | value.is_null())
        case Kind.DECIMAL:
            # A decimal comma comes from German Excel; thousands separators are not accepted.
            normal = pl.when(text.str.contains(r"^[+-]?\d+,\d+$")).then(text.str.replace(",", ".")).otherwise(text)
            return normal.cast(pl.Float64, strict=False), present & ~normal.str.contains(DECIMAL_PATTERN)
        case Kind.BOOL:
            lower = text.str.to_lowercase()
            value = pl.when(lower.is_in(list(TRUE_WORDS))).then(True).when(lower.is_in(list(FALSE_WORDS))).then(False)
            return value, present & ~lower.is_in(list(TRUE_WORDS | FALSE_WORDS))
        case Kind.TIMESTAMP:
            value = text.map_elements(parse_timestamp, return_dtype=pl.Datetime("us"), skip_nulls=True)
            return value, present & value.is_null()
        case Kind.DATE:
            value = text.map_elements(parse_date, return_dtype=pl.Date, skip_nulls=True)
            return value, present & value.is_null()
        case Kind.AGS:
            return text, present & ~text.str.contains(AGS_PATTERN)
        case Kind.AGS_LIST:
            items = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
            bad = items.list.eval(~pl.element().str.contains(AGS_PATTERN)).list.any()
            return items.fill_null(pl.lit([], dtype=pl.List(pl.Utf8))), present & bad
        case Kind.CODES:
            items = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
            return items.fill_null(pl.lit([], dtype=pl.List(pl.Utf8))), pl.lit(False)
        case _:
            return text, present & text.str.contains(FORMULA_PATTERN)


def type_table(table: str, raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed canonical columns of a raw table, and the type violations (row index, column, rule).

    Raw columns not in the contract (pseudonyms, provenance) pass through unchanged. Optional
    fields with a default get it where the cell is empty. Households gain SUBMITTED_ON_COLUMN
    (with_written_date).
    """
    typed_exprs: list[pl.Expr] = []
    flag_exprs: list[pl.Expr] = []
    for field in TABLES[table]:
        if field.name not in raw.columns:
            continue
        col = pl.col(field.name)
        if field.default is not None:
            col = pl.when(col.is_null() | (col.str.strip_chars() == "")).then(pl.lit(field.default)).otherwise(col)
        value, bad = _typed(field, col)
        typed_exprs.append(value.alias(field.name))
        flag_exprs.append(bad.fill_null(False).alias(field.name))
    flags = raw.select(flag_exprs).with_row_index("_row")
    typed = raw.with_columns(typed_exprs)
    if table == "households" and "submitted_at" in raw.columns:
        # A household's ages and intake period go by the date its submitter wrote, not the UTC one.
        typed = with_written_date(raw, typed)
    kinds = {f.name: f.kind for f in TABLES[table]}
    violations = (
        flags.unpivot(index="_row", variable_name="column", value_name="bad")
        .filter(pl.col("bad"))
        .select(
            "_row",
            "column",
            pl.col("column").replace_strict({c: TYPE_RULES.get(k, FORMULA_RULE) for c, k in kinds.items()}, default="type").alias("rule"),
        )
    )
    return typed, violations


# Stored instead of a landed cell without its column's shape. Neither is a code, number, yes/no,
# date or AGS, so validation still fails the cell on the rule the landed text failed.
WITHHELD = "#withheld"
WITHHELD_FORMULA = "=#withheld"  # for the formula rule of code and text columns
WITHHELD_DATE = "#withheld-date"  # for a text field held to a format that a spreadsheet made a date of
# Every placeholder ingestion stores instead of a landed cell.
WITHHELD_VALUES: tuple[str, ...] = (WITHHELD, WITHHELD_FORMULA, WITHHELD_DATE)
# Kinds whose cells have a closed shape (a code list, yes/no, a number, a date or an AGS).
SHAPED_KINDS: frozenset[Kind] = frozenset(
    {Kind.INT, Kind.DECIMAL, Kind.BOOL, Kind.TIMESTAMP, Kind.DATE, Kind.AGS, Kind.AGS_LIST, Kind.CODE, Kind.CODES}
)
# Text fields that validation holds to a format (models.py): their cells are shaped as well.
SHAPED_TEXT: dict[str, str] = {name: pattern for name, (pattern, _) in TEXT_FORMATS.items()}


def code_spelled(field: Field, col: pl.Expr) -> pl.Expr:
    """A code or code-list cell with each code spelled as the code list has it, whatever its letters' case
    (`Accept`, `ACCEPT`, `de-by`, `Uk Ru`: typed or tidied in a spreadsheet), and a word of the field's aliases
    (`Zusage`, `Familie`) as its code; other cells unchanged. No two codes of a list differ by case only, so
    the reading is certain."""
    if field.kind not in (Kind.CODE, Kind.CODES):
        return col
    # The field's other words for a code (German for contract D) are read the same way, in any case.
    spelled = {**dict(field.aliases), **{code.lower(): code for code in field.codes}}
    text = col.str.strip_chars()
    if field.kind is Kind.CODE:
        return text.str.to_lowercase().replace_strict(spelled, default=col)
    tokens = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    return tokens.list.eval(pl.element().str.to_lowercase().replace_strict(spelled, default=pl.element())).list.join(" ")


def spelled_code(field: Field, value: str) -> str:
    """One code typed outside a file (a run config's entry) read as a file's cell is (code_spelled): the code as
    the code list spells it, or the value unchanged where it is no code."""
    return pl.select(code_spelled(field, pl.lit(value, dtype=pl.Utf8))).item()


# What a workbook's date cell is read as (canonical._cell_text: a datetime's isoformat), or what Excel shows of a
# month it made a date of (period_from_excel_date: `Jul 26`, `Juli 2026`, 01.07.2026).
_DATE_CELL_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$")


def is_excel_date(value: str | None) -> bool:
    """Whether a cell's text is a date a spreadsheet made: a workbook's date cell, or a month Excel shows as a date."""
    text = (value or "").strip()
    return _DATE_CELL_TEXT.match(text) is not None or period_from_excel_date(text) is not None


# The serial numbers of 2000-01-01 and 2099-12-31 in Excel's 1900 date system (day 0 is 1899-12-30); a 1904-system
# workbook (older Mac Excel) counts 1462 days fewer: its dates from 2004 on are in the range too.
_EXCEL_DAY_ZERO = dt.date(1899, 12, 30)
_SERIALS_OF_THIS_CENTURY = range((dt.date(2000, 1, 1) - _EXCEL_DAY_ZERO).days, (dt.date(2099, 12, 31) - _EXCEL_DAY_ZERO).days + 1)


def is_date_serial(value: str | None) -> bool:
    """Whether a cell's text is a whole number that Excel shows as a date of 2000-2099 (46204 is 2026-07-01): what a
    date cell holds once its format is set to General or Number. Only a hint: such a number is also a round id's shape."""
    text = (value or "").strip()
    return text.isascii() and text.isdigit() and not text.startswith("0") and int(text) in _SERIALS_OF_THIS_CENTURY


def _withheld(field: Field, col: pl.Expr) -> pl.Expr | None:
    """The cell, or a placeholder failing the same rule where it has not the field's shape; None
    for identifying and free-text fields (they are not shaped). A code is stored as the code list
    spells it (code_spelled)."""
    if field.pii or (field.kind not in SHAPED_KINDS and field.name not in SHAPED_TEXT):
        return None
    col = code_spelled(field, col)
    text = col.str.strip_chars()
    present = text.is_not_null() & (text != "")
    # A key that lost its leading zero is kept as landed: validation restores it (restore_ags_keys).
    _, bad = _typed(field, restored_ags(field, col))  # the type rule; for code and text fields the formula rule
    if field.kind is Kind.CODE:
        off = present & ~text.is_in(list(field.codes))
    elif field.kind is Kind.CODES:
        tokens = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        off = present & tokens.list.eval(~pl.element().is_in(list(field.codes))).list.any()
    elif field.name in SHAPED_TEXT:
        # A month Excel made a date of is kept as landed: validation restores it (restore_periods).
        shaped = restored_period(text) if field.name == "intake_period" else text
        off = present & ~shaped.str.contains(SHAPED_TEXT[field.name])
    else:
        off = pl.lit(False)
    formula = field.kind in (Kind.CODE, Kind.TEXT)  # only there `bad` is the formula rule
    # A text field a spreadsheet made a date of (a round id typed as 2026-07) keeps that it was a date, not the
    # date: validation's rule then says so (models.DATE_CELL_RULES).
    dated = off & text.map_elements(is_excel_date, return_dtype=pl.Boolean, skip_nulls=True) if field.name in DATE_CELL_RULES else pl.lit(False)
    return (
        pl.when(bad.fill_null(False))
        .then(pl.lit(WITHHELD_FORMULA if formula else WITHHELD))
        .when(dated.fill_null(False))
        .then(pl.lit(WITHHELD_DATE))
        .when(off.fill_null(False))
        .then(pl.lit(WITHHELD))
        .otherwise(col)
    )


def withhold_unshaped(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Raw rows with every cell of a shaped column (code list, yes/no, number, date, AGS, intake
    period) that lacks its shape replaced by a placeholder failing the same validation rule.

    Such a cell may hold anything a person typed (a name in occupation_sector, a reason in a
    decision's code column): it is never stored as typed. Validation still quarantines the row
    naming file, row, column and rule. Cells with the shape are kept as landed (range and
    list-length rules are checked at validation).
    """
    exprs = []
    for field in TABLES[table]:
        if field.name in frame.columns:
            expr = _withheld(field, pl.col(field.name))
            if expr is not None:
                exprs.append(expr.alias(field.name))
    return frame.with_columns(exprs) if exprs else frame
