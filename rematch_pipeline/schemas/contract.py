"""The questionnaire data contract (shared/spec/questionnaires.md), declared once.

Readers, validation, features, forms and the sample generator all take field names,
types and code lists from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """How a canonical field is encoded in a template cell."""

    TEXT = "text"
    UUID = "uuid"
    TIMESTAMP = "timestamp"
    DATE = "date"
    AGS = "ags"  # 5 or 8 digits, text, leading zeros significant
    AGS_LIST = "ags_list"  # space-separated AGS keys
    INT = "int"
    DECIMAL = "decimal"
    BOOL = "bool"
    CODE = "code"  # one of a code list
    CODES = "codes"  # space-separated codes of a code list (multi-select)
    REF_LIST = "ref_list"  # space-separated household_refs (PII, pseudonymised)


MEDICAL: tuple[str, ...] = (
    "general",
    "pediatrics",
    "psychotherapy",
    "gynecology",
    "oncology",
    "dialysis",
    "diabetology",
    "cardiology",
    "disability_support",
)
SECTOR: tuple[str, ...] = (
    "healthcare",
    "elderly_care",
    "education",
    "it",
    "engineering",
    "construction",
    "manufacturing",
    "logistics",
    "hospitality",
    "retail",
    "agriculture",
    "public_admin",
    "other",
)
STATES: tuple[str, ...] = (
    "DE-BW",
    "DE-BY",
    "DE-BE",
    "DE-BB",
    "DE-HB",
    "DE-HH",
    "DE-HE",
    "DE-MV",
    "DE-NI",
    "DE-NW",
    "DE-RP",
    "DE-SL",
    "DE-SN",
    "DE-ST",
    "DE-SH",
    "DE-TH",
)
# AGS Land prefix (first two digits) -> ISO 3166-2 state code.
STATE_BY_LAND: dict[str, str] = {
    "01": "DE-SH",
    "02": "DE-HH",
    "03": "DE-NI",
    "04": "DE-HB",
    "05": "DE-NW",
    "06": "DE-HE",
    "07": "DE-RP",
    "08": "DE-BW",
    "09": "DE-BY",
    "10": "DE-SL",
    "11": "DE-BE",
    "12": "DE-BB",
    "13": "DE-MV",
    "14": "DE-SN",
    "15": "DE-ST",
    "16": "DE-TH",
}
COMMUNITY: tuple[str, ...] = ("none", "small", "large")
SETTLEMENT: tuple[str, ...] = ("big_city", "city", "town", "rural")
TRANSPORT: tuple[str, ...] = ("good", "medium", "poor")
TIE_IMPORTANCE: tuple[str, ...] = ("none", "nice", "must")
SEX: tuple[str, ...] = ("female", "male", "diverse")
RELATION: tuple[str, ...] = ("head", "spouse", "child", "parent", "sibling", "other")
LANGUAGES: tuple[str, ...] = ("uk", "ru", "pl", "en", "de", "other")
GERMAN_LEVEL: tuple[str, ...] = ("none", "A1", "A2", "B1", "B2", "C1")
EDUCATION: tuple[str, ...] = ("none", "school", "vocational", "university")
OCCUPATION: tuple[str, ...] = SECTOR + ("none", "student")
DECISION: tuple[str, ...] = ("accept", "decline")
DECISION_REASON: tuple[str, ...] = ("housing", "family", "work", "health", "other")

# German levels below which an adult needs an integration course (contract section C).
COURSE_LEVELS: tuple[str, ...] = ("none", "A1", "A2")

IMPORTANCE_FIELDS: tuple[str, ...] = (
    "imp_jobs",
    "imp_schools_childcare",
    "imp_medical_care",
    "imp_community",
    "imp_big_city",
    "imp_quiet_rural",
    "imp_family_nearby",
)


@dataclass(frozen=True)
class Field:
    """One canonical column of a questionnaire table."""

    name: str
    kind: Kind
    required: bool
    pii: bool = False
    codes: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_items: int | None = None
    default: str | None = None
    # Other words read as a code, lower case -> the code (a closed list, docs/formats.md): German for contract D.
    aliases: tuple[tuple[str, str], ...] = ()


MUNICIPALITY_FIELDS: tuple[Field, ...] = (
    Field("submission_id", Kind.UUID, True),
    Field("submitted_at", Kind.TIMESTAMP, True),
    Field("municipality_id", Kind.AGS, True),
    Field("municipality_name", Kind.TEXT, True),
    Field("state", Kind.CODE, True, codes=STATES),
    Field("intake_period", Kind.TEXT, True),
    Field("latitude", Kind.DECIMAL, True, minimum=47.0, maximum=55.5),
    Field("longitude", Kind.DECIMAL, True, minimum=5.5, maximum=15.5),
    Field("capacity_persons", Kind.INT, True, minimum=0),
    Field("min_persons", Kind.INT, False, minimum=0, default="0"),
    Field("housing_units", Kind.INT, True, minimum=0),
    Field("largest_unit_persons", Kind.INT, True, minimum=1),
    Field("accessible_units", Kind.INT, True, minimum=0),
    Field("pets_allowed", Kind.BOOL, True),
    Field("kita_places", Kind.INT, True, minimum=0),
    Field("school_places_primary", Kind.INT, True, minimum=0),
    Field("school_places_secondary", Kind.INT, True, minimum=0),
    Field("integration_course_places", Kind.INT, True, minimum=0),
    Field("medical_care", Kind.CODES, False, codes=MEDICAL),
    Field("shortage_sectors", Kind.CODES, False, codes=SECTOR),
    Field("ukrainian_community", Kind.CODE, True, codes=COMMUNITY),
    Field("settlement_type", Kind.CODE, True, codes=SETTLEMENT),
    Field("public_transport", Kind.CODE, True, codes=TRANSPORT),
    Field("contact_name", Kind.TEXT, True, pii=True),
    Field("contact_email", Kind.TEXT, True, pii=True),
    Field("contact_phone", Kind.TEXT, True, pii=True),
    Field("notes", Kind.TEXT, False, pii=True),
)

HOUSEHOLD_FIELDS: tuple[Field, ...] = (
    Field("submission_id", Kind.UUID, True),
    Field("submitted_at", Kind.TIMESTAMP, True),
    Field("household_ref", Kind.TEXT, True, pii=True),
    Field("consent_processing", Kind.BOOL, True),
    Field("consent_followup", Kind.BOOL, False),
    Field("contact_name", Kind.TEXT, True, pii=True),
    Field("contact_phone", Kind.TEXT, False, pii=True),
    Field("contact_email", Kind.TEXT, False, pii=True),
    Field("current_address", Kind.TEXT, False, pii=True),
    Field("pets", Kind.BOOL, True),
    Field("linked_household_refs", Kind.REF_LIST, False, pii=True),
    Field("family_ties_municipality_id", Kind.AGS, False),
    Field("family_ties_importance", Kind.CODE, False, codes=TIE_IMPORTANCE, default="none"),
    *(Field(name, Kind.INT, True, minimum=0, maximum=3) for name in IMPORTANCE_FIELDS),
    Field("preferred_municipality_ids", Kind.AGS_LIST, False, max_items=3),
    Field("excluded_municipality_ids", Kind.AGS_LIST, False),
)

MEMBER_FIELDS: tuple[Field, ...] = (
    Field("submission_id", Kind.UUID, True),
    Field("member_name", Kind.TEXT, True, pii=True),
    Field("date_of_birth", Kind.DATE, True, pii=True),
    Field("sex", Kind.CODE, True, codes=SEX),
    Field("relation", Kind.CODE, True, codes=RELATION),
    Field("languages", Kind.CODES, True, codes=LANGUAGES),
    Field("german_level", Kind.CODE, True, codes=GERMAN_LEVEL),
    Field("education", Kind.CODE, True, codes=EDUCATION),
    Field("occupation_sector", Kind.CODE, True, codes=OCCUPATION),
    Field("wants_work", Kind.BOOL, True),
    Field("medical_needs", Kind.CODES, False, codes=MEDICAL),
    Field("wheelchair", Kind.BOOL, True),
)

# German coordinators at a state authority write contract D in German: these words are read as its codes and
# stored as the code list spells them (docs/formats.md, "Decisions in German"; docs/decisions.md, thirty-first
# session). A closed list: no word of it is another code of the same list, so the reading is certain.
DECISION_ALIASES: tuple[tuple[str, str], ...] = (
    ("annehmen", "accept"), ("angenommen", "accept"), ("zusage", "accept"),
    ("ablehnen", "decline"), ("abgelehnt", "decline"), ("absage", "decline"),
)
DECISION_REASON_ALIASES: tuple[tuple[str, str], ...] = (
    ("wohnung", "housing"), ("familie", "family"), ("arbeit", "work"), ("gesundheit", "health"), ("sonstiges", "other"),
)

DECISION_FIELDS: tuple[Field, ...] = (
    Field("round_id", Kind.TEXT, True),
    Field("household_ref", Kind.TEXT, False, pii=True),
    Field("household_pseudonym", Kind.TEXT, False),
    Field("municipality_id", Kind.AGS, True),
    Field("decision", Kind.CODE, True, codes=DECISION, aliases=DECISION_ALIASES),
    Field("reason", Kind.CODE, False, codes=DECISION_REASON, aliases=DECISION_REASON_ALIASES),
)

# The German headings of contract D's columns (the same closed list), as written in docs/formats.md. Compared as our
# names are (case, spaces and hyphens do not matter: canonical.template_header); read only in a decisions file.
DECISION_COLUMN_ALIASES: dict[str, str] = {
    "Runde": "round_id",
    "Haushalt": "household_ref",
    "Haushalts-Nr.": "household_ref",
    "Haushalts-Nr": "household_ref",
    "Haushaltsnummer": "household_ref",
    "Pseudonym": "household_pseudonym",
    "AGS": "municipality_id",
    "Kommune": "municipality_id",
    "Gemeinde": "municipality_id",
    "Entscheidung": "decision",
    "Grund": "reason",
}

# The columns of a round's proposals.csv that a decisions file does not take: coordinators add round_id and
# decision to proposals.csv and land it as their decisions file, so these are read past (docs/decisions.md,
# thirtieth session). assets.matching writes proposals.csv; a test holds the two together.
PROPOSALS_ONLY_COLUMNS: tuple[str, ...] = ("municipality_name", "persons", "score", "locked")

TABLES: dict[str, tuple[Field, ...]] = {
    "municipalities": MUNICIPALITY_FIELDS,
    "households": HOUSEHOLD_FIELDS,
    "members": MEMBER_FIELDS,
    "decisions": DECISION_FIELDS,
}


def field_names(table: str) -> list[str]:
    """Canonical column names of a questionnaire table, in template order."""
    return [f.name for f in TABLES[table]]


def pii_fields(table: str) -> list[str]:
    """Columns of a table that must stay in the identity store."""
    return [f.name for f in TABLES[table] if f.pii]
