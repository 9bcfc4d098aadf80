"""Seeded sample rounds in the canonical templates (shared/spec/questionnaires.md).

`generate_round` draws a plausible intake round: real German districts (Kreise) as offering
municipalities, with capacities scaled by population and calibrated against the round's demand,
and synthetic refugee households with their members. All personal data is fake (small name
lists, example.org addresses, fictional phone numbers). `write_round` writes the canonical CSV
or XLSX templates. Same arguments give byte-identical files.

Every value is a string in the template encoding, so the frames can be written as they are and
read back by the canonical readers like any submitted file.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import io
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
import xlsxwriter

from rematch_pipeline.formats.writers import FORMULA_PREFIXES
from rematch_pipeline.wording import counted, quiet
from rematch_pipeline.schemas.contract import (
    COMMUNITY,
    COURSE_LEVELS,
    EDUCATION,
    GERMAN_LEVEL,
    HOUSEHOLD_FIELDS,
    LANGUAGES,
    MEDICAL,
    MEMBER_FIELDS,
    MUNICIPALITY_FIELDS,
    RELATION,
    SECTOR,
    SETTLEMENT,
    SEX,
    STATE_BY_LAND,
    TRANSPORT,
)

__all__ = ["SampleRound", "generate_round", "write_round", "load_kreise"]


MUNICIPALITY_COLUMNS: list[str] = [f.name for f in MUNICIPALITY_FIELDS]
HOUSEHOLD_COLUMNS: list[str] = [f.name for f in HOUSEHOLD_FIELDS]
MEMBER_COLUMNS: list[str] = [f.name for f in MEMBER_FIELDS]


@dataclass(frozen=True)
class SampleRound:
    """One generated intake round: three all-string frames with the canonical columns, and its period."""

    municipalities: pl.DataFrame
    households: pl.DataFrame
    members: pl.DataFrame
    period: str


# --------------------------------------------------------------------------------------------
# Reference districts
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def load_kreise() -> pl.DataFrame:
    """The 401 reference Kreise with population, density, largest Gemeinde and settlement type.

    Columns: ags, name, land_code, population, area_km2, lat, lon, largest_gemeinde, density,
    settlement_type. Sorted by AGS.
    """
    ref = resources.files("rematch_pipeline.reference")
    kreise = pl.read_csv(
        io.BytesIO(ref.joinpath("kreise_2020_derived.csv").read_bytes()),
        schema_overrides={"ags": pl.Utf8, "land_code": pl.Utf8, "kreis_type_code": pl.Utf8},
    )
    gemeinden = pl.read_csv(
        io.BytesIO(ref.joinpath("gemeinden_2020_clean.csv").read_bytes()),
        columns=["kreis_ags", "population"],
        schema_overrides={"kreis_ags": pl.Utf8, "population": pl.Int64},
    )
    # The largest Gemeinde tells a Landkreis around a big city (Region Hannover) from a rural one.
    largest = gemeinden.group_by("kreis_ags").agg(pl.col("population").max().alias("largest_gemeinde"))
    density = pl.col("population") / pl.col("area_km2")
    return (
        kreise.join(largest, left_on="ags", right_on="kreis_ags", how="left")
        .select(
            "ags",
            "name",
            "land_code",
            "population",
            "area_km2",
            pl.col("lat_popweighted").alias("lat"),
            pl.col("lon_popweighted").alias("lon"),
            pl.col("largest_gemeinde").fill_null(0),
            density.alias("density"),
        )
        .with_columns(
            pl.when(pl.col("largest_gemeinde") >= 200_000)
            .then(pl.lit("big_city"))
            .when(pl.col("largest_gemeinde") >= 50_000)
            .then(pl.lit("city"))
            .when((pl.col("largest_gemeinde") >= 30_000) | (pl.col("density") >= 200))
            .then(pl.lit("town"))
            .otherwise(pl.lit("rural"))
            .alias("settlement_type")
        )
        .sort("ags")
    )


# --------------------------------------------------------------------------------------------
# Small fake-name lists (Ukrainian names in the official 2010 transliteration, no apostrophes)
# --------------------------------------------------------------------------------------------

_GIVEN_FEMALE = (
    "Olena", "Olha", "Tetiana", "Nataliia", "Iryna", "Svitlana", "Oksana", "Yuliia", "Kateryna",
    "Anastasiia", "Mariia", "Viktoriia", "Halyna", "Liudmyla", "Nadiia", "Valentyna", "Larysa",
    "Alina", "Daryna", "Sofiia", "Anna", "Yana", "Khrystyna", "Inna", "Zoriana", "Polina",
)  # fmt: skip
_GIVEN_MALE = (
    "Oleksandr", "Andrii", "Serhii", "Volodymyr", "Dmytro", "Mykola", "Ivan", "Vasyl", "Yurii",
    "Petro", "Bohdan", "Taras", "Maksym", "Artem", "Denys", "Yaroslav", "Mykhailo", "Oleh",
    "Roman", "Ihor", "Danylo", "Matvii", "Nazar", "Kyrylo",
)  # fmt: skip
_FAMILY = (
    "Shevchenko", "Kovalenko", "Bondarenko", "Tkachenko", "Kravchenko", "Oliinyk", "Shevchuk",
    "Polishchuk", "Kovalchuk", "Melnyk", "Boiko", "Tkachuk", "Marchenko", "Lysenko", "Rudenko",
    "Savchenko", "Petrenko", "Moroz", "Pavlenko", "Kharchenko", "Levchenko", "Klymenko",
    "Honcharuk", "Savchuk", "Hnatiuk", "Ostapenko", "Zinchenko", "Yurchenko", "Didenko", "Kushnir",
)  # fmt: skip
_PL_STREETS = (
    "Polna", "Le\u015bna", "S\u0142oneczna", "Kr\u00f3tka", "Szkolna", "Ogrodowa", "Lipowa",
    "Brzozowa", "\u0141\u0105kowa", "Kwiatowa", "Ko\u015bcielna", "Sosnowa", "Zielona",
    "Parkowa", "Akacjowa", "Kolejowa", "Cicha", "Mickiewicza", "Pi\u0142sudskiego", "Wiejska",
)  # fmt: skip
# (city, first two postcode digits range) -- postcodes are drawn at random inside the range.
_PL_CITIES = (
    ("Warszawa", 0, 4), ("Krak\u00f3w", 30, 31), ("Wroc\u0142aw", 50, 54), ("Pozna\u0144", 60, 61),
    ("Gda\u0144sk", 80, 80), ("\u0141\u00f3d\u017a", 90, 94), ("Lublin", 20, 20),
    ("Rzesz\u00f3w", 35, 35), ("Przemy\u015bl", 37, 37), ("Katowice", 40, 40),
    ("Bia\u0142ystok", 15, 15), ("Che\u0142m", 22, 22),
)  # fmt: skip
# Drama number blocks the German regulator keeps free for fiction; with the 0049 prefix the
# numbers are visibly fake. (A leading "+" is avoided: it starts a formula in spreadsheets.)
_DE_FICTION_BLOCKS = ("30 23125", "40 66969", "69 90009", "89 99998", "221 4710")
_UA_OPERATORS = ("50", "63", "66", "67", "68", "73", "93", "95", "96", "97", "98", "99")
_MUNICIPALITY_NOTES = (
    "Wohnungen \u00fcberwiegend in Mehrfamilienh\u00e4usern.",
    "Kita-Pl\u00e4tze teilweise erst ab September.",
    "Integrationskurse auch abends.",
    "Bitte Ankunft zwei Wochen vorher ank\u00fcndigen.",
    "Barrierefreie Wohnungen im Erdgeschoss.",
    "Unterbringung zun\u00e4chst in Gemeinschaftsunterkunft m\u00f6glich.",
)


# --------------------------------------------------------------------------------------------
# Vectorised random helpers
# --------------------------------------------------------------------------------------------


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per component, so changing one part does not shift the others."""
    return np.random.default_rng([seed, *stream.encode("ascii")])


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of an (n, k) table of (unnormalised) probabilities; returns column indices."""
    probs = np.asarray(probs, dtype=float)
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(probs))
    return (cdf <= u[:, None]).sum(axis=1)


def _choose(rng: np.random.Generator, n: int, probs: tuple[float, ...] | list[float]) -> np.ndarray:
    """n draws from one categorical distribution."""
    p = np.asarray(probs, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _clipped_normal(rng: np.random.Generator, mean: np.ndarray | float, sd: float, lo: np.ndarray | float, hi: np.ndarray | float, n: int) -> np.ndarray:
    """Whole-number ages from a normal distribution clipped to [lo, hi]."""
    return np.clip(np.rint(rng.normal(mean, sd, n)), lo, hi).astype(np.int64)


def _mask_strings(codes: tuple[str, ...]) -> np.ndarray:
    """Lookup table: bit mask -> space-separated codes in code-list order (multi-select encoding)."""
    return np.array(
        [" ".join(c for i, c in enumerate(codes) if m >> i & 1) for m in range(1 << len(codes))],
        dtype=object,
    )


def _top_k(rng: np.random.Generator, weights: np.ndarray, k: np.ndarray, forbid: np.ndarray | None = None) -> list[list[int]]:
    """Per row, k[i] distinct column indices drawn without replacement with the given weights.

    Gumbel-top-k: adding Gumbel noise to log-weights and taking the largest keys is equivalent
    to successive weighted draws without replacement, and vectorises over rows.
    """
    n, m = len(k), len(weights)
    if n == 0:
        return []
    keys = np.log(np.maximum(weights, 1e-300))[None, :] + rng.gumbel(size=(n, m))
    if forbid is not None:
        keys[forbid] = -np.inf
    kmax = int(min(k.max(), m))
    if kmax < m:
        part = np.argpartition(-keys, kmax - 1, axis=1)[:, :kmax]
    else:
        part = np.tile(np.arange(m), (n, 1))
    part_keys = np.take_along_axis(keys, part, axis=1)
    order = np.argsort(-part_keys, axis=1, kind="stable")
    ranked = np.take_along_axis(part, order, axis=1)
    ranked_keys = np.take_along_axis(part_keys, order, axis=1)
    return [
        [int(c) for c, key in zip(row[:ki], rk[:ki]) if key > -np.inf]
        for row, rk, ki in zip(ranked.tolist(), ranked_keys.tolist(), k.tolist())
    ]


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split an integer total across weights exactly (largest remainder), deterministically."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    raw = total * weights / weights.sum()
    base = np.floor(raw).astype(np.int64)
    rest = total - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return base


def _yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, "yes", "no").astype(object)


def _timestamps(rng: np.random.Generator, n: int, period: str, days: tuple[int, int], hours: tuple[int, int]) -> np.ndarray:
    """Sorted datetime64[s] within the period's month (day range inclusive, hour range half-open)."""
    day = rng.integers(days[0], days[1] + 1, n)
    sec = rng.integers(hours[0] * 3600, hours[1] * 3600, n)
    start = np.datetime64(f"{period}-01T00:00:00", "s")
    return np.sort(start + ((day - 1) * 86400 + sec).astype("timedelta64[s]"))


def _iso(ts: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(ts, unit="s").astype(object)


# --------------------------------------------------------------------------------------------
# Municipalities (static attributes first; capacities once demand is known)
# --------------------------------------------------------------------------------------------

# Specialised care offered, probability per code by settlement type (order of MEDICAL).
# Oncology and dialysis are handled separately (population-based) and left at 0 here.
_CARE_P = {
    #            general pedi  psych gyn   onco dial diab  card  disab
    "big_city": (1.00, 1.00, 0.95, 1.00, 0.0, 0.0, 0.95, 0.95, 0.90),
    "city":     (1.00, 0.95, 0.80, 0.90, 0.0, 0.0, 0.70, 0.70, 0.70),
    "town":     (1.00, 0.80, 0.50, 0.70, 0.0, 0.0, 0.40, 0.45, 0.50),
    "rural":    (0.95, 0.60, 0.30, 0.50, 0.0, 0.0, 0.25, 0.25, 0.35),
}  # fmt: skip
_COMMUNITY_P = {"big_city": (0.0, 0.2, 0.8), "city": (0.1, 0.6, 0.3), "town": (0.35, 0.55, 0.10), "rural": (0.6, 0.38, 0.02)}
_TRANSPORT_P = {"big_city": (0.9, 0.1, 0.0), "city": (0.6, 0.35, 0.05), "town": (0.15, 0.55, 0.30), "rural": (0.02, 0.38, 0.60)}
# Weights of shortage sectors (order of SECTOR) by settlement type.
_SHORTAGE_W = {
    #            health eldc  educ  it    eng   constr manuf logist hosp  retail agri  admin other
    "big_city": (3.0,  3.0,  2.5,  2.0,  1.5,  2.0,  0.8,  2.0,  2.0,  1.2,  0.1,  1.2,  0.5),
    "city":     (3.0,  3.0,  2.0,  1.2,  1.5,  2.0,  1.5,  1.8,  1.8,  1.2,  0.3,  1.0,  0.5),
    "town":     (3.0,  3.0,  1.5,  0.5,  1.2,  2.0,  2.0,  1.5,  1.5,  1.0,  1.0,  0.8,  0.5),
    "rural":    (2.5,  3.0,  1.2,  0.2,  0.8,  2.0,  1.5,  1.2,  1.5,  0.8,  2.5,  0.6,  0.5),
}  # fmt: skip
_MEDICAL_BIT = {c: 1 << i for i, c in enumerate(MEDICAL)}
_ALL_CARE = (1 << len(MEDICAL)) - 1


@dataclass
class _Offers:
    """Chosen districts and the attributes that do not depend on the round's demand."""

    ags: np.ndarray  # object array of 5-digit strings
    name: np.ndarray
    land: np.ndarray
    population: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    settlement: np.ndarray  # object array of SETTLEMENT codes
    care_mask: np.ndarray  # bit mask over MEDICAL
    pets_allowed: np.ndarray
    largest_unit: np.ndarray


def _choose_offers(seed: int, m: int) -> _Offers:
    rng = _rng(seed, "districts")
    kreise = load_kreise()
    pop = kreise["population"].to_numpy().astype(float)
    # population^0.5: big cities come up often, small districts still appear.
    p = np.sqrt(pop) / np.sqrt(pop).sum()
    idx = np.sort(rng.choice(len(pop), size=m, replace=False, p=p))
    chosen = kreise[idx]
    settlement = chosen["settlement_type"].to_numpy().astype(object)
    population = chosen["population"].to_numpy().astype(np.int64)

    rng = _rng(seed, "offers")
    care_p = np.array([_CARE_P[s] for s in settlement])
    care = (rng.random((m, len(MEDICAL))) < care_p).astype(np.int64)
    # Dialysis and oncology only in bigger districts.
    big_p = np.select([population >= 500_000, population >= 250_000, population >= 150_000], [1.0, 0.75, 0.35], 0.0)
    big_p = np.where(settlement == "rural", big_p * 0.5, big_p)
    care[:, MEDICAL.index("oncology")] = rng.random(m) < big_p
    care[:, MEDICAL.index("dialysis")] = rng.random(m) < big_p * 0.8
    care_mask = (care << np.arange(len(MEDICAL))).sum(axis=1)
    pets = rng.random(m) < 0.6
    largest_unit = 3 + _choose(rng, m, (0.10, 0.25, 0.30, 0.18, 0.09, 0.08))  # 3..8
    # The most populous district can take anyone: every round stays feasible for most households.
    top = int(np.argmax(population))
    care_mask[top] = _ALL_CARE
    pets[top] = True
    largest_unit[top] = 8
    return _Offers(
        ags=chosen["ags"].to_numpy().astype(object),
        name=chosen["name"].to_numpy().astype(object),
        land=chosen["land_code"].to_numpy().astype(object),
        population=population,
        lat=chosen["lat"].to_numpy(),
        lon=chosen["lon"].to_numpy(),
        settlement=settlement,
        care_mask=care_mask,
        pets_allowed=pets,
        largest_unit=largest_unit,
    )


def _municipality_frame(seed: int, period: str, offers: _Offers, demand: dict[str, int]) -> pl.DataFrame:
    rng = _rng(seed, "capacities")
    m = len(offers.ags)
    settle = offers.settlement
    pop = offers.population.astype(float)

    # Persons: proportional to population^0.9 with noise, total 1.1-1.3 x demand.
    cap_w = pop**0.9 * rng.lognormal(0.0, 0.3, m)
    capacity = _allocate(int(np.ceil(demand["persons"] * rng.uniform(1.1, 1.3))), cap_w)
    housing = np.rint(capacity / 2.3 * rng.uniform(0.9, 1.1, m)).astype(np.int64)
    housing = np.where(capacity > 0, np.maximum(housing, 1), 0)

    def scarce(key: str, lo: float, hi: float, sigma: float, factor: dict[str, float]) -> np.ndarray:
        # Totals only just cover demand and are spread unevenly: tight in places, not everywhere.
        total = int(np.ceil(demand[key] * rng.uniform(lo, hi)))
        w = (capacity + 0.5) * rng.lognormal(0.0, sigma, m) * np.array([factor[s] for s in settle])
        return _allocate(total, w)

    flat = dict.fromkeys(SETTLEMENT, 1.0)
    kita = scarce("kita", 1.0, 1.15, 0.5, {"big_city": 0.7, "city": 0.9, "town": 1.1, "rural": 1.2})
    primary = scarce("primary", 1.15, 1.4, 0.35, flat)
    secondary = scarce("secondary", 1.15, 1.4, 0.35, flat)
    courses = scarce("courses", 1.0, 1.15, 0.45, {"big_city": 1.3, "city": 1.1, "town": 0.9, "rural": 0.7})
    accessible_total = max(int(np.ceil(demand["accessible"] * rng.uniform(1.1, 1.4))), 1)
    accessible = _allocate(accessible_total, (housing + 0.1) * rng.lognormal(0.0, 0.8, m))
    top = int(np.argmax(offers.population))
    accessible[top] = max(accessible[top], 1)
    accessible = np.minimum(accessible, housing)

    # A minimum intake (the pilots asked for 8) only where it leaves room for several households.
    min_persons = np.where((capacity >= 16) & (rng.random(m) < 0.15), 8, 0)

    n_short = 1 + _choose(rng, m, (0.10, 0.25, 0.30, 0.20, 0.15))
    picks: list[list[int]] = [[] for _ in range(m)]
    for s in SETTLEMENT:  # sector weights differ by settlement type
        rows = np.flatnonzero(settle == s)
        if len(rows):
            sub = _top_k(rng, np.array(_SHORTAGE_W[s]), n_short[rows])
            for r, pick in zip(rows.tolist(), sub):
                picks[r] = pick
    sector_str = _mask_strings(SECTOR)
    shortage = [sector_str[sum(1 << c for c in pick)] for pick in picks]

    community = _categorical(rng, np.array([_COMMUNITY_P[s] for s in settle]))
    transport = _categorical(rng, np.array([_TRANSPORT_P[s] for s in settle]))
    submitted = rng.permutation(_timestamps(rng, m, period, (1, 10), (8, 17)))
    ids = _uuids(seed, "municipalities", m)
    blocks = rng.integers(0, len(_DE_FICTION_BLOCKS), m)
    lines = rng.integers(0, 1000, m)
    has_note = rng.random(m) < 0.25
    note_idx = rng.integers(0, len(_MUNICIPALITY_NOTES), m)
    short_names = [str(n).split(",")[0] for n in offers.name]
    care_str = _mask_strings(MEDICAL)

    def text(values: np.ndarray) -> list[str]:
        return [str(v) for v in values.tolist()]

    return pl.DataFrame(
        {
            "submission_id": ids,
            "submitted_at": _iso(submitted).tolist(),
            "municipality_id": offers.ags.tolist(),
            "municipality_name": offers.name.tolist(),
            "state": [STATE_BY_LAND[c] for c in offers.land],
            "intake_period": [period] * m,
            "latitude": [f"{v:.5f}" for v in offers.lat],
            "longitude": [f"{v:.5f}" for v in offers.lon],
            "capacity_persons": text(capacity),
            "min_persons": text(min_persons),
            "housing_units": text(housing),
            "largest_unit_persons": text(offers.largest_unit),
            "accessible_units": text(accessible),
            "pets_allowed": _yes_no(offers.pets_allowed).tolist(),
            "kita_places": text(kita),
            "school_places_primary": text(primary),
            "school_places_secondary": text(secondary),
            "integration_course_places": text(courses),
            "medical_care": care_str[offers.care_mask].tolist(),
            "shortage_sectors": shortage,
            "ukrainian_community": [COMMUNITY[i] for i in community],
            "settlement_type": offers.settlement.tolist(),
            "public_transport": [TRANSPORT[i] for i in transport],
            "contact_name": [f"Integrationsb\u00fcro {n}" for n in short_names],
            "contact_email": [f"integration.{a}@example.org" for a in offers.ags],
            "contact_phone": [f"0049 {_DE_FICTION_BLOCKS[b]} {line:03d}" for b, line in zip(blocks, lines)],
            "notes": [_MUNICIPALITY_NOTES[i] if h else "" for h, i in zip(has_note, note_idx)],
        },
        schema=dict.fromkeys(MUNICIPALITY_COLUMNS, pl.Utf8),
    )


def _uuids(seed: int, stream: str, n: int) -> list[str]:
    """Seeded version-4 UUIDs (Python's Mersenne Twister, seeded per stream; str seeds are stable)."""
    r = random.Random(f"rematch-sample:{seed}:{stream}")
    return [str(uuid.UUID(int=r.getrandbits(128), version=4)) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Households and members
# --------------------------------------------------------------------------------------------

# Household compositions and their shares. Men of military age mostly could not leave Ukraine,
# so mothers with children and women on their own dominate.
_SINGLE, _MOTHER, _COUPLE_KIDS, _OLDER_COUPLE, _THREE_GEN, _SIBLINGS, _COUPLE = range(7)
_TYPE_P = (0.26, 0.30, 0.13, 0.08, 0.12, 0.06, 0.05)
_FEMALE, _MALE = SEX.index("female"), SEX.index("male")
_REL = {r: i for i, r in enumerate(RELATION)}
_LANG_BIT = {c: 1 << i for i, c in enumerate(LANGUAGES)}
_COURSE_IDX = np.array([GERMAN_LEVEL.index(level) for level in COURSE_LEVELS])


@dataclass
class _People:
    """Member-level arrays, sorted by household then position (head first)."""

    hh: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    relation: np.ndarray


def _opposite(sex: np.ndarray) -> np.ndarray:
    return np.where(sex == _FEMALE, _MALE, _FEMALE)


def _adult_sex(rng: np.random.Generator, n: int, p_female: float) -> np.ndarray:
    """Sex codes (indices into SEX) of adults; "diverse" is rare."""
    p = np.zeros(len(SEX))
    p[SEX.index("female")], p[SEX.index("diverse")] = p_female, 0.004
    p[SEX.index("male")] = 1.0 - p_female - 0.004
    return _choose(rng, n, tuple(p))


def _compose(rng: np.random.Generator, n: int) -> _People:
    """Draw household compositions and member ages, sexes and relations (vectorised per role)."""
    kind = _choose(rng, n, _TYPE_P)
    hh = np.arange(n)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # hh, pos, age, sex, rel

    def add(sel: np.ndarray, pos: int | np.ndarray, age: np.ndarray, sex: np.ndarray, rel: str) -> None:
        pos_arr = np.broadcast_to(np.asarray(pos), sel.shape).astype(np.int64)
        parts.append((sel, pos_arr, age.astype(np.int64), sex.astype(np.int64), np.full(len(sel), _REL[rel])))

    head_age = np.zeros(n, dtype=np.int64)
    head_sex = np.zeros(n, dtype=np.int64)
    parent_age = np.zeros(n, dtype=np.int64)  # age of the mother, for children's ages

    s = hh[kind == _SINGLE]
    elderly = rng.random(len(s)) < 0.28
    head_age[s] = np.where(
        elderly, _clipped_normal(rng, 71, 7, 60, 92, len(s)), _clipped_normal(rng, 35, 11, 18, 64, len(s))
    )
    head_sex[s] = np.where(elderly, _adult_sex(rng, len(s), 0.75), _adult_sex(rng, len(s), 0.66))

    s = hh[kind == _MOTHER]
    head_age[s] = _clipped_normal(rng, 35, 6.5, 20, 52, len(s))
    head_sex[s] = _FEMALE
    parent_age[s] = head_age[s]

    s = hh[kind == _COUPLE_KIDS]
    head_age[s] = _clipped_normal(rng, 38, 7, 22, 58, len(s))
    head_sex[s] = np.where(rng.random(len(s)) < 0.5, _FEMALE, _MALE)
    spouse_age = _clipped_normal(rng, head_age[s], 3, 20, 62, len(s))
    add(s, 1, spouse_age, _opposite(head_sex[s]), "spouse")
    parent_age[s] = np.minimum(head_age[s], spouse_age)

    s = hh[kind == _OLDER_COUPLE]
    head_age[s] = _clipped_normal(rng, 70, 6, 58, 90, len(s))
    head_sex[s] = np.where(rng.random(len(s)) < 0.5, _FEMALE, _MALE)
    add(s, 1, _clipped_normal(rng, head_age[s] - 1, 3, 55, 92, len(s)), _opposite(head_sex[s]), "spouse")

    s = hh[kind == _THREE_GEN]
    head_age[s] = _clipped_normal(rng, 34, 6, 20, 50, len(s))
    head_sex[s] = _FEMALE
    parent_age[s] = head_age[s]
    gm_age = _clipped_normal(rng, head_age[s] + 26, 3.5, head_age[s] + 18, 92, len(s))
    add(s, 1, gm_age, np.where(rng.random(len(s)) < 0.9, _FEMALE, _MALE), "parent")
    gf = rng.random(len(s)) < 0.12
    add(s[gf], 2, _clipped_normal(rng, gm_age[gf] + 2, 3, 45, 94, int(gf.sum())), np.full(int(gf.sum()), _MALE), "parent")

    s = hh[kind == _SIBLINGS]
    head_age[s] = _clipped_normal(rng, 27, 6, 18, 45, len(s))
    head_sex[s] = _adult_sex(rng, len(s), 0.65)
    add(s, 1, _clipped_normal(rng, head_age[s], 5, 18, 50, len(s)), _adult_sex(rng, len(s), 0.65), "sibling")
    third = rng.random(len(s)) < 0.2
    k = int(third.sum())
    add(s[third], 2, _clipped_normal(rng, head_age[s][third], 5, 18, 50, k), _adult_sex(rng, k, 0.65), "sibling")

    s = hh[kind == _COUPLE]
    head_age[s] = _clipped_normal(rng, 32, 9, 19, 60, len(s))
    head_sex[s] = np.where(rng.random(len(s)) < 0.5, _FEMALE, _MALE)
    add(s, 1, _clipped_normal(rng, head_age[s], 3, 18, 64, len(s)), _opposite(head_sex[s]), "spouse")

    add(hh, 0, head_age, head_sex, "head")

    # Children, aged so that the mother was 18-45 at birth.
    n_kids = np.zeros(n, dtype=np.int64)
    for t, probs in ((_MOTHER, (0.5, 0.35, 0.15)), (_COUPLE_KIDS, (0.4, 0.35, 0.17, 0.08)), (_THREE_GEN, (0.5, 0.35, 0.15))):
        s = hh[kind == t]
        n_kids[s] = 1 + _choose(rng, len(s), probs)
    kid_hh = np.repeat(hh, n_kids)
    pa = parent_age[kid_hh]
    lo = np.maximum(0, pa - 45)
    hi = np.minimum(17, pa - 18)
    kid_age = lo + np.floor(rng.random(len(kid_hh)) * (hi - lo + 1)).astype(np.int64)
    kid_pos = 10 + np.arange(len(kid_hh)) - np.repeat(np.cumsum(n_kids) - n_kids, n_kids)
    add(kid_hh, kid_pos, kid_age, np.where(rng.random(len(kid_hh)) < 0.5, _FEMALE, _MALE), "child")

    # A few households bring another relative or a friend.
    s = hh[(kind != _SINGLE) & (rng.random(n) < 0.03)]
    add(s, 20, _clipped_normal(rng, 45, 15, 18, 80, len(s)), _adult_sex(rng, len(s), 0.7), "other")

    cat = [np.concatenate(col) for col in zip(*parts)]
    order = np.lexsort((cat[1], cat[0]))
    return _People(hh=cat[0][order], age=cat[2][order], sex=cat[3][order], relation=cat[4][order])


def _group_by_age(age: np.ndarray) -> np.ndarray:
    """0 = under 6, 1 = school age 6-17, 2 = young adult 18-22, 3 = adult 23-64, 4 = 65 and older."""
    return np.digitize(age, [6, 18, 23, 65])


_GERMAN_P = np.array(
    [
        (1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.45, 0.30, 0.17, 0.08, 0.0, 0.0),
        (0.40, 0.30, 0.15, 0.10, 0.04, 0.01),
        (0.45, 0.30, 0.13, 0.08, 0.03, 0.01),
        (0.75, 0.20, 0.05, 0.0, 0.0, 0.0),
    ]
)
_EDUCATION_P = np.array(
    [
        (1.0, 0.0, 0.0, 0.0),
        (0.0, 1.0, 0.0, 0.0),
        (0.0, 0.5, 0.2, 0.3),
        (0.02, 0.15, 0.35, 0.48),
        (0.02, 0.2, 0.4, 0.38),
    ]
)
# Sector weights of working-age adults (order of SECTOR), then "none".
_SECTOR_W = (10, 3, 12, 8, 6, 5, 7, 6, 7, 10, 4, 7, 8, 10)
# Medical need codes by age group (order of MEDICAL): children, adults, elderly.
_NEED_W = {
    "child": (5, 55, 25, 0, 0.5, 0.3, 5, 0.5, 10),
    "adult": (25, 0, 30, 15, 4, 2, 8, 8, 6),
    "elderly": (30, 0, 6, 2, 8, 5, 18, 25, 8),
}
_NEED_P_BY_GROUP = np.array([0.07, 0.08, 0.09, 0.115, 0.33])
_WHEELCHAIR_P_BY_GROUP = np.array([0.005, 0.008, 0.010, 0.013, 0.10])


def _member_attributes(rng: np.random.Generator, people: _People, n_households: int) -> dict[str, np.ndarray]:
    """Languages, German level, education, occupation, work wish, medical needs, wheelchair."""
    n = len(people.age)
    group = _group_by_age(people.age)
    adult = people.age >= 18

    # Household language profile, then individual extras (Polish from the months in Poland).
    profiles = np.array(
        [
            _LANG_BIT["uk"] | _LANG_BIT["ru"],
            _LANG_BIT["uk"],
            _LANG_BIT["ru"],
            _LANG_BIT["uk"] | _LANG_BIT["pl"],
            _LANG_BIT["ru"] | _LANG_BIT["other"],
        ]
    )
    lang = profiles[_choose(rng, n_households, (0.46, 0.31, 0.15, 0.06, 0.02))][people.hh]
    young_adult = adult & (people.age < 45)
    lang |= np.where(rng.random(n) < np.where(young_adult, 0.25, np.where(people.age >= 10, 0.12, 0.0)), _LANG_BIT["en"], 0)
    pl_p = np.select([people.age < 6, people.age < 18], [0.02, 0.18], 0.06)  # school children learnt Polish
    lang |= np.where(rng.random(n) < pl_p, _LANG_BIT["pl"], 0)

    german = _categorical(rng, _GERMAN_P[group])
    # Anyone at A2 or above lists German among their languages.
    lang = np.where(german >= GERMAN_LEVEL.index("A2"), lang | _LANG_BIT["de"], lang)

    education = _categorical(rng, _EDUCATION_P[group])

    n_sector = len(SECTOR)
    student, none = n_sector + 1, n_sector  # indices in OCCUPATION = SECTOR + (none, student)
    occupation = np.full(n, none, dtype=np.int64)
    occupation[group == 1] = student
    yg = np.flatnonzero(group == 2)
    working = np.flatnonzero(group == 3)
    occupation[working] = _choose(rng, len(working), _SECTOR_W)
    occupation[yg] = np.where(rng.random(len(yg)) < 0.5, student, _choose(rng, len(yg), _SECTOR_W))

    wants_p = np.select(
        [(group == 2) & (occupation == student), group == 2, (group == 3) & (people.age >= 60), group == 3],
        [0.3, 0.8, 0.55, 0.82],
        0.0,
    )
    wants_work = rng.random(n) < wants_p

    has_need = rng.random(n) < _NEED_P_BY_GROUP[group]
    band = np.where(people.age < 18, 0, np.where(people.age < 65, 1, 2))
    need_w = np.array([_NEED_W["child"], _NEED_W["adult"], _NEED_W["elderly"]])[band]
    first = _categorical(rng, need_w)
    second = _categorical(rng, need_w)
    two = rng.random(n) < 0.2
    gyn = MEDICAL.index("gynecology")
    # Gynaecology only for women; otherwise general care.
    first = np.where((first == gyn) & (people.sex != _FEMALE), 0, first)
    second = np.where((second == gyn) & (people.sex != _FEMALE), 0, second)
    need_mask = np.where(has_need, (1 << first) | np.where(two, 1 << second, 0), 0)
    wheelchair = rng.random(n) < _WHEELCHAIR_P_BY_GROUP[group]
    need_mask = np.where(wheelchair & (rng.random(n) < 0.5), need_mask | _MEDICAL_BIT["disability_support"], need_mask)

    return {
        "languages": lang,
        "german": german,
        "education": education,
        "occupation": occupation,
        "wants_work": wants_work,
        "need_mask": need_mask,
        "wheelchair": wheelchair,
    }


def _dates_of_birth(rng: np.random.Generator, age: np.ndarray, submitted: np.ndarray) -> np.ndarray:
    """ISO dates of birth that give exactly `age` whole years on the submission date."""
    year_days = np.arange("2001-01-01", "2002-01-01", dtype="datetime64[D]")  # a non-leap year
    month_start = year_days.astype("datetime64[M]")
    b_month = month_start.astype(np.int64) % 12 + 1
    b_day = (year_days - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    pick = rng.integers(0, 365, len(age))
    bm, bd = b_month[pick], b_day[pick]
    sub_day = submitted.astype("datetime64[D]")
    sub_month = sub_day.astype("datetime64[M]")
    s_year = sub_month.astype("datetime64[Y]").astype(np.int64) + 1970
    s_month = sub_month.astype(np.int64) % 12 + 1
    s_dom = (sub_day - sub_month.astype("datetime64[D]")).astype(np.int64) + 1
    later_in_year = bm * 100 + bd > s_month * 100 + s_dom
    b_year = s_year - age - later_in_year
    dob = (
        (b_year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
        + (bm - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + (bd - 1).astype("timedelta64[D]")
    return np.datetime_as_string(dob, unit="D").astype(object)


def _names(rng: np.random.Generator, sex: np.ndarray, family: np.ndarray) -> np.ndarray:
    female = np.array(_GIVEN_FEMALE, dtype=object)[rng.integers(0, len(_GIVEN_FEMALE), len(sex))]
    male = np.array(_GIVEN_MALE, dtype=object)[rng.integers(0, len(_GIVEN_MALE), len(sex))]
    either = np.where(rng.random(len(sex)) < 0.5, female, male)
    given = np.where(sex == _FEMALE, female, np.where(sex == _MALE, male, either))
    return given + " " + family


def _phones(rng: np.random.Generator, n: int) -> list[str]:
    # Mostly Ukrainian numbers, some Polish ones from the time in Poland. "00" instead of "+"
    # keeps the cell from starting a spreadsheet formula.
    ukrainian = rng.random(n) < 0.7
    op = rng.integers(0, len(_UA_OPERATORS), n)
    a, b, c = rng.integers(0, 1000, n), rng.integers(0, 100, n), rng.integers(0, 100, n)
    p1, p2, p3 = rng.integers(500, 900, n), rng.integers(0, 1000, n), rng.integers(0, 1000, n)
    return [
        f"00380 {_UA_OPERATORS[o]} {x:03d} {y:02d} {z:02d}" if u else f"0048 {q1} {q2:03d} {q3:03d}"
        for u, o, x, y, z, q1, q2, q3 in zip(
            ukrainian.tolist(), op.tolist(), a.tolist(), b.tolist(), c.tolist(), p1.tolist(), p2.tolist(), p3.tolist()
        )
    ]


def _addresses(rng: np.random.Generator, n: int) -> list[str]:
    street = rng.integers(0, len(_PL_STREETS), n).tolist()
    city = rng.integers(0, len(_PL_CITIES), n).tolist()
    number = rng.integers(1, 120, n).tolist()
    flat = rng.integers(1, 60, n).tolist()
    has_flat = (rng.random(n) < 0.7).tolist()
    u = rng.random(n).tolist()
    rest = rng.integers(0, 1000, n).tolist()
    out = []
    for s, c, num, f, hf, x, r in zip(street, city, number, flat, has_flat, u, rest):
        name, lo, hi = _PL_CITIES[c]
        prefix = lo + int(x * (hi - lo + 1))
        door = f"{num}/{f}" if hf else f"{num}"
        out.append(f"ul. {_PL_STREETS[s]} {door}, {prefix:02d}-{r:03d} {name}")
    return out


def _household_frames(
    seed: int, period: str, n: int, offers: _Offers
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Households and members frames, and the round's demand per resource."""
    rng = _rng(seed, "households")
    people = _compose(rng, n)
    attrs = _member_attributes(rng, people, n)
    size = np.bincount(people.hh, minlength=n)
    starts = np.concatenate(([0], np.cumsum(size)[:-1]))
    need = np.bitwise_or.reduceat(attrs["need_mask"], starts)
    wheel = np.maximum.reduceat(attrs["wheelchair"].astype(np.int64), starts).astype(bool)
    has_child = np.maximum.reduceat((people.age < 18).astype(np.int64), starts).astype(bool)
    has_elderly = np.maximum.reduceat((people.age >= 65).astype(np.int64), starts).astype(bool)
    any_work = np.maximum.reduceat(attrs["wants_work"].astype(np.int64), starts).astype(bool)
    pets = rng.random(n) < 0.15
    m = len(offers.ags)

    # Family ties (~20%): a quarter of them "must" (~5% of all), always to an offering district
    # that can actually take the household, so the hard constraint stays satisfiable.
    tie_ags = np.full(n, "", dtype=object)
    tie_imp = np.full(n, "", dtype=object)
    tie_col = np.full(n, -1, dtype=np.int64)
    has_tie = rng.random(n) < 0.20
    must = has_tie & (rng.random(n) < 0.25)
    nice = has_tie & ~must
    weights = np.sqrt(offers.population.astype(float))
    mi = np.flatnonzero(must)
    fits = (
        ((need[mi, None] & ~offers.care_mask[None, :]) == 0)
        & (size[mi, None] <= offers.largest_unit[None, :])
        & (~pets[mi, None] | offers.pets_allowed[None, :])
    )
    pick = _top_k(rng, weights, np.ones(len(mi), dtype=np.int64), forbid=~fits)
    for h, p in zip(mi.tolist(), pick):
        if p:
            tie_col[h] = p[0]
            tie_ags[h], tie_imp[h] = offers.ags[p[0]], "must"
        else:  # nothing fits: keep the tie but only as a wish
            nice[h] = True
    ni = np.flatnonzero(nice)
    among_offers = rng.random(len(ni)) < 0.6
    kreise = load_kreise()
    all_ags = kreise["ags"].to_numpy().astype(object)
    all_p = kreise["population"].to_numpy().astype(float)
    offer_pick = _top_k(rng, weights, np.ones(len(ni), dtype=np.int64))
    any_pick = rng.choice(len(all_ags), size=len(ni), p=all_p / all_p.sum())
    for h, own, p, a in zip(ni.tolist(), among_offers.tolist(), offer_pick, any_pick.tolist()):
        if own:
            tie_col[h] = p[0]
            tie_ags[h] = offers.ags[p[0]]
        else:
            tie_ags[h] = all_ags[a]
        tie_imp[h] = "nice"
    # Most households leave the importance empty when there is no tie; some answer "none".
    tie_imp[(~has_tie) & (rng.random(n) < 0.3)] = "none"

    # Named wishes (~30%, 1-3) and exclusions (~5%, never the tie or a wish, never all offers).
    pref_rows = np.flatnonzero(rng.random(n) < 0.30)
    k_pref = np.minimum(1 + _choose(rng, len(pref_rows), (0.5, 0.3, 0.2)), m)
    pref = _top_k(rng, offers.population.astype(float) ** 0.7, k_pref)
    preferred = np.full(n, "", dtype=object)
    pref_cols: dict[int, list[int]] = {}
    for h, cols in zip(pref_rows.tolist(), pref):
        pref_cols[h] = cols
        preferred[h] = " ".join(offers.ags[c] for c in cols)
    excluded = np.full(n, "", dtype=object)
    if m >= 2:
        ex_rows = np.flatnonzero(rng.random(n) < 0.05)
        forbid = np.zeros((len(ex_rows), m), dtype=bool)
        for i, h in enumerate(ex_rows.tolist()):
            forbid[i, pref_cols.get(h, [])] = True
            if tie_col[h] >= 0:
                forbid[i, tie_col[h]] = True
        # The most populous offer can take anyone; excluding it would often leave nothing.
        forbid[:, int(np.argmax(offers.population))] = True
        k_ex = np.minimum(1 + (rng.random(len(ex_rows)) < 0.3), m - 1)
        for h, cols in zip(ex_rows.tolist(), _top_k(rng, np.ones(m), k_ex, forbid)):
            excluded[h] = " ".join(offers.ags[c] for c in sorted(cols))

    # Household refs and linked groups (~6% of households, groups of 2-3 travelling together).
    if n > 900_000:
        raise ValueError("at most 900,000 households per round (6-digit household_ref)")
    stem = period.replace("-", "")
    refs = np.array([f"RM-{stem}-{d}" for d in (rng.choice(900_000, n, replace=False) + 100_000).tolist()], dtype=object)
    linked = np.full(n, "", dtype=object)
    perm = rng.permutation(n).tolist()
    target = int(round(0.06 * n))
    sizes = 2 + (rng.random(max(target, 1)) < 0.3)
    pos = 0
    for g in sizes.tolist():
        if pos + 2 > target:
            break
        g = min(g, target - pos)
        group = perm[pos : pos + g]
        pos += g
        lead = group[0]
        for h in group:
            linked[h] = " ".join(sorted(refs[o] for o in group if o != h))
            # Relatives travelling together share their wishes and constraints.
            tie_ags[h], tie_imp[h] = tie_ags[lead], tie_imp[lead]
            preferred[h], excluded[h] = preferred[lead], excluded[lead]
    has_tie_final = tie_ags != ""

    # Importance ratings depend on the household (children, needs, work, ties).
    def rate(cond: np.ndarray, if_true: tuple[float, ...], if_false: tuple[float, ...]) -> list[str]:
        table = np.array([if_false, if_true])
        return [str(v) for v in _categorical(rng, table[cond.astype(np.int64)]).tolist()]

    urban = _choose(rng, n, (0.45, 0.30, 0.25))  # city lover, neutral, rural lover
    big_p = np.array([(0.0, 0.1, 0.4, 0.5), (0.35, 0.4, 0.2, 0.05), (0.6, 0.3, 0.1, 0.0)])
    rural_p = big_p[::-1]
    must_final = tie_imp == "must"
    family_p = np.array([(0.7, 0.2, 0.08, 0.02), (0.0, 0.2, 0.5, 0.3), (0.0, 0.0, 0.2, 0.8)])
    family_group = np.where(must_final, 2, np.where(has_tie_final, 1, 0))
    importance = {
        "imp_jobs": rate(any_work, (0.05, 0.15, 0.4, 0.4), (0.5, 0.3, 0.15, 0.05)),
        "imp_schools_childcare": rate(has_child, (0.02, 0.08, 0.3, 0.6), (0.8, 0.15, 0.04, 0.01)),
        "imp_medical_care": rate(
            (need != 0) | has_elderly, (0.02, 0.1, 0.35, 0.53), (0.3, 0.4, 0.2, 0.1)
        ),
        "imp_community": [str(v) for v in _choose(rng, n, (0.2, 0.35, 0.3, 0.15)).tolist()],
        "imp_big_city": [str(v) for v in _categorical(rng, big_p[urban]).tolist()],
        "imp_quiet_rural": [str(v) for v in _categorical(rng, rural_p[urban]).tolist()],
        "imp_family_nearby": [str(v) for v in _categorical(rng, family_p[family_group]).tolist()],
    }

    submitted = _timestamps(rng, n, period, (1, calendar.monthrange(*map(int, period.split("-")))[1]), (7, 23))
    ids = _uuids(seed, "households", n)

    # Names: one family name per household (a relative or friend may carry another).
    family = np.array(_FAMILY, dtype=object)[rng.integers(0, len(_FAMILY), n)][people.hh]
    other = people.relation == _REL["other"]
    family = np.where(other, np.array(_FAMILY, dtype=object)[rng.integers(0, len(_FAMILY), len(other))], family)
    member_names = _names(rng, people.sex, family)
    head_name = member_names[starts]
    email_digits = rng.integers(1, 100, n)
    has_email = rng.random(n) < 0.7
    emails = [
        (name.lower().replace(" ", ".") + f"{d}@example.org") if e else ""
        for name, d, e in zip(head_name.tolist(), email_digits.tolist(), has_email.tolist())
    ]
    phones = _phones(rng, n)
    phones = [p if keep else "" for p, keep in zip(phones, (rng.random(n) < 0.95).tolist())]
    addresses = _addresses(rng, n)
    addresses = [a if keep else "" for a, keep in zip(addresses, (rng.random(n) < 0.9).tolist())]
    consent = rng.random(n) < 0.99
    followup = consent & (rng.random(n) < 0.7)

    households = pl.DataFrame(
        {
            "submission_id": ids,
            "submitted_at": _iso(submitted).tolist(),
            "household_ref": refs.tolist(),
            "consent_processing": _yes_no(consent).tolist(),
            "consent_followup": _yes_no(followup).tolist(),
            "contact_name": head_name.tolist(),
            "contact_phone": phones,
            "contact_email": emails,
            "current_address": addresses,
            "pets": _yes_no(pets).tolist(),
            "linked_household_refs": linked.tolist(),
            "family_ties_municipality_id": tie_ags.tolist(),
            "family_ties_importance": tie_imp.tolist(),
            **importance,
            "preferred_municipality_ids": preferred.tolist(),
            "excluded_municipality_ids": excluded.tolist(),
        },
        schema=dict.fromkeys(HOUSEHOLD_COLUMNS, pl.Utf8),
    )

    lang_str = _mask_strings(LANGUAGES)
    med_str = _mask_strings(MEDICAL)
    occupation_codes = np.array(SECTOR + ("none", "student"), dtype=object)
    members = pl.DataFrame(
        {
            "submission_id": np.array(ids, dtype=object)[people.hh].tolist(),
            "member_name": member_names.tolist(),
            "date_of_birth": _dates_of_birth(rng, people.age, submitted[people.hh]).tolist(),
            "sex": np.array(SEX, dtype=object)[people.sex].tolist(),
            "relation": np.array(RELATION, dtype=object)[people.relation].tolist(),
            "languages": lang_str[attrs["languages"]].tolist(),
            "german_level": np.array(GERMAN_LEVEL, dtype=object)[attrs["german"]].tolist(),
            "education": np.array(EDUCATION, dtype=object)[attrs["education"]].tolist(),
            "occupation_sector": occupation_codes[attrs["occupation"]].tolist(),
            "wants_work": _yes_no(attrs["wants_work"]).tolist(),
            "medical_needs": med_str[attrs["need_mask"]].tolist(),
            "wheelchair": _yes_no(attrs["wheelchair"]).tolist(),
        },
        schema=dict.fromkeys(MEMBER_COLUMNS, pl.Utf8),
    )

    age = people.age
    demand = {
        "persons": int(len(age)),
        "kita": int(((age >= 1) & (age <= 5)).sum()),
        "primary": int(((age >= 6) & (age <= 10)).sum()),
        "secondary": int(((age >= 11) & (age <= 17)).sum()),
        "courses": int(((age >= 18) & (age <= 64) & np.isin(attrs["german"], _COURSE_IDX)).sum()),
        "accessible": int(wheel.sum()),
    }
    return households, members, demand


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_round(
    households: int, municipalities: int, seed: int, period: str = "2026-07", say: Callable[[str], None] = quiet
) -> SampleRound:
    """Generate a seeded sample round in the canonical template encoding.

    Args:
        households: number of household submissions (1 .. 900,000).
        municipalities: number of offering districts, distinct real Kreise (1 .. 401).
        seed: non-negative integer; the same arguments always give the same round.
        period: intake period ``YYYY-MM``; submissions fall within that month.
        say: one line per step (what it draws, how many), for the person waiting: a national round takes seconds.

    Returns:
        A SampleRound whose frames have exactly the canonical columns, all values strings
        (empty string for an absent optional value).
    """
    # Validation's pattern, so that no period it would refuse is written (imported here: pandera, which
    # schemas.models loads, would slow every command line call, since the parser lists SAMPLE_FORMATS).
    from rematch_pipeline.schemas.models import PERIOD_PATTERN

    if not re.fullmatch(PERIOD_PATTERN, period):
        raise ValueError("period must look like YYYY-MM")
    if not 1 <= municipalities <= 401:
        raise ValueError("municipalities must be between 1 and 401 (the real Kreise)")
    if households < 1:
        raise ValueError("households must be at least 1")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    offers = _choose_offers(seed, municipalities)
    say(f"sample: drawing {counted(households, 'household')} and their members (seed {seed}, period {period})")
    hh, members, demand = _household_frames(seed, period, households, offers)
    say(f"sample: drawing the offers of {counted(municipalities, 'municipality', 'municipalities')} for {counted(members.height, 'person')}")
    muni = _municipality_frame(seed, period, offers, demand)
    sample = SampleRound(municipalities=muni, households=hh, members=members, period=period)
    _check_no_formula_cells(sample)
    return sample


def _check_no_formula_cells(sample: SampleRound) -> None:
    """Refuse any cell a spreadsheet would treat as a formula (CSV injection)."""
    for name, frame in (("municipalities", sample.municipalities), ("households", sample.households), ("members", sample.members)):
        bad = frame.select(pl.any_horizontal([pl.all().str.starts_with(prefix) for prefix in FORMULA_PREFIXES]).any()).item()
        if bad:
            raise ValueError(f"sample table {name} has a cell a spreadsheet would run as a formula (starting with {' '.join(map(repr, FORMULA_PREFIXES))})")


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    # Empty strings become nulls so that absent values are written as empty, unquoted fields.
    frame.with_columns(pl.all().replace("", None)).write_csv(path, line_terminator="\n", quote_style="necessary")


def _write_xlsx(sheets: dict[str, pl.DataFrame], path: Path, period: str) -> None:
    year, month = map(int, period.split("-"))
    # A fixed creation time keeps the workbook byte-identical between runs.
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False})
    wb.set_properties({"created": dt.datetime(year, month, 1), "title": f"rematch sample {period}"})
    text = wb.add_format({"num_format": "@"})
    try:
        for sheet_name, frame in sheets.items():
            ws = wb.add_worksheet(sheet_name)
            # Text format on whole columns: AGS and other keys stay text, also in cells typed later.
            ws.set_column(0, frame.width - 1, 18, text)
            for c, name in enumerate(frame.columns):
                ws.write_string(0, c, name, text)
            write = ws.write_string
            for r, row in enumerate(frame.iter_rows(), start=1):
                for c, value in enumerate(row):
                    if value:
                        write(r, c, value, text)
    finally:
        wb.close()


SAMPLE_FORMATS: tuple[str, ...] = (
    "csv", "xlsx", "kobo-xlsx", "kobo-csv", "kobo-labels", "kobo-legacy", "odk-central", "limesurvey-csv", "limesurvey-xlsx", "limesurvey-texts", "limesurvey-vv",
)
# KPI's export language of --format kobo-labels (an index of forms_builder.LANGUAGES: German).
KOBO_EXPORT_LANGUAGE = 0
# The export language of the LimeSurvey text exports (--format limesurvey-texts, the VV export's first row).
LS_EXPORT_LANGUAGE = "de"
# Where the devices that fill the Kobo and ODK forms keep their clocks (Kobo's `end` carries the device's offset).
DEVICE_ZONE = "Europe/Berlin"


def _device_time(frame: pl.DataFrame) -> pl.DataFrame:
    """submitted_at (naive UTC) as a Kobo device writes its `end` question: local time with the offset,
    milliseconds, e.g. 2026-07-02T10:15:11.000+02:00; validation reads it back to the same UTC time."""
    local = pl.col("submitted_at").str.to_datetime("%Y-%m-%dT%H:%M:%S", time_zone="UTC").dt.convert_time_zone(DEVICE_ZONE)
    offset = local.dt.strftime("%z")
    text = local.dt.strftime("%Y-%m-%dT%H:%M:%S.000") + offset.str.slice(0, 3) + ":" + offset.str.slice(3, 2)
    return frame.with_columns(text.alias("submitted_at"))


def _write_tool_round(sample: SampleRound, out_dir: Path, fmt: str, say: Callable[[str], None] = quiet) -> list[Path]:
    """The sample round as the collection tool exports it (formats/tool_exports.py); docs/formats.md."""
    paths = []
    for table in ("municipalities", "households"):
        frame = getattr(sample, table)
        members = f" and {counted(sample.members.height, 'member row')}" if table == "households" else ""
        say(f"sample: writing {table}/ as {fmt} ({counted(frame.height, 'row')}{members})")
        # Kobo and ODK stamp each submission with the device's clock; LimeSurvey has no such columns.
        frame = frame if fmt.startswith("limesurvey-") else _device_time(frame)
        paths.append(_write_tool_export(fmt, table, frame, sample.members, out_dir / table))
    return paths


def _write_tool_export(fmt: str, table: str, frame: pl.DataFrame, members: pl.DataFrame, folder: Path) -> Path:
    """One form's export in a tool format, written into folder; its path."""
    from rematch_pipeline.formats import tool_exports as tools
    from rematch_pipeline.forms_builder import FORM_IDS

    form_id = FORM_IDS[table]
    if fmt.startswith("limesurvey-"):
        codes = tools.limesurvey_csv(table, frame, members)
        if fmt == "limesurvey-xlsx":
            path, data = folder / tools.limesurvey_filename(table, "xlsx"), tools.limesurvey_xlsx(codes, tools.survey_title(table))
        elif fmt == "limesurvey-texts":
            path, data = folder / tools.limesurvey_filename(table), tools.limesurvey_text_csv(codes, table, LS_EXPORT_LANGUAGE)
        elif fmt == "limesurvey-vv":
            path, data = folder / tools.limesurvey_vv_filename(table), tools.limesurvey_vv(codes, table, LS_EXPORT_LANGUAGE)
        else:
            path, data = folder / tools.limesurvey_filename(table), codes
    elif fmt == "odk-central":
        path = folder / tools.central_zip_name(form_id)
        data = tools.csv_zip(tools.odk_central_csvs(frame, tools.central_form(table), form_id, members))
    elif fmt == "kobo-legacy":
        path, data = folder / f"{form_id}.csv", tools.kobo_legacy_csv(frame, tools.kobo_form(table), members)
    else:
        language = KOBO_EXPORT_LANGUAGE if fmt == "kobo-labels" else None
        # KPI's CSV export holds the main section only (no members), so households are always its XLSX.
        if table == "municipalities" and fmt in ("kobo-csv", "kobo-labels"):
            path, data = folder / f"{form_id}.csv", tools.kobo_kpi_csv(frame, tools.kobo_form(table, language))
        else:
            return tools.kobo_kpi_xlsx(folder / f"{form_id}.xlsx", frame, tools.kobo_form(table, language), members if table == "households" else None)
    path.write_bytes(data)
    return path


def write_round(sample: SampleRound, out_dir: Path, fmt: str = "csv", say: Callable[[str], None] = quiet) -> list[Path]:
    """Write a sample round as canonical templates or as a collection tool exports it; return the written paths.

    CSV: ``municipalities/municipalities_<period>.csv``, ``households/households_<period>.csv``
    and ``households/members_<period>.csv`` (UTF-8, comma, ``\\n``, minimal quoting).
    XLSX: ``municipalities/municipalities_<period>.xlsx`` (sheet ``municipalities``) and
    ``households/households_<period>.xlsx`` (sheets ``households`` and ``members``), every cell
    text so AGS keys keep their leading zeros.
    kobo-xlsx: KoboToolbox KPI XLSX exports ("XML values and headers") of both forms,
    ``municipalities/rematch_municipality.xlsx`` and ``households/rematch_household.xlsx``.
    kobo-csv: the municipalities as KPI's CSV export (``rematch_municipality.csv``), the households as
    its XLSX (KPI's CSV leaves the members repeat out).
    kobo-labels: as kobo-csv, exported under a language (KPI's default; German): label headers and answers.
    kobo-legacy: both as the legacy KoboCAT CSV export, members flattened into ``members[k]/…`` columns.
    odk-central: ODK Central's CSV zips (*Download → CSV zip*, default options) of both forms,
    ``municipalities/rematch_municipality.csv.zip`` and ``households/rematch_household.csv.zip``
    (main table and the members repeat's table).
    limesurvey-csv: LimeSurvey CSV exports with question and answer codes,
    ``results-survey461001.csv`` (municipalities) and ``results-survey461002.csv`` (households);
    limesurvey-xlsx: the same as its "Microsoft Excel" export (``results-survey<id>.xlsx``);
    limesurvey-texts: the CSV with LimeSurvey's defaults, full question texts and full answers, in German;
    limesurvey-vv: its VV export (version 2, ``vvexport_<id>.csv``).
    Every layout lands as it is: copy ``municipalities/`` and ``households/`` into ``landing/``.
    say: one line per file before it is written (its folder or path, how many rows).
    """
    if fmt not in SAMPLE_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(SAMPLE_FORMATS)}")
    _check_no_formula_cells(sample)
    out_dir = Path(out_dir)
    p = sample.period
    (out_dir / "municipalities").mkdir(parents=True, exist_ok=True)
    (out_dir / "households").mkdir(parents=True, exist_ok=True)
    if fmt not in ("csv", "xlsx"):
        return _write_tool_round(sample, out_dir, fmt, say)
    if fmt == "csv":
        paths = [
            out_dir / "municipalities" / f"municipalities_{p}.csv",
            out_dir / "households" / f"households_{p}.csv",
            out_dir / "households" / f"members_{p}.csv",
        ]
        for frame, path in zip((sample.municipalities, sample.households, sample.members), paths):
            say(f"sample: writing {path.relative_to(out_dir)} ({counted(frame.height, 'row')})")
            _write_csv(frame, path)
        return paths
    paths = [out_dir / "municipalities" / f"municipalities_{p}.xlsx", out_dir / "households" / f"households_{p}.xlsx"]
    say(f"sample: writing {paths[0].relative_to(out_dir)} ({counted(sample.municipalities.height, 'row')})")
    _write_xlsx({"municipalities": sample.municipalities}, paths[0], p)
    say(f"sample: writing {paths[1].relative_to(out_dir)} ({counted(sample.households.height, 'household row')}, {counted(sample.members.height, 'member row')})")
    _write_xlsx({"households": sample.households, "members": sample.members}, paths[1], p)
    return paths
