"""Hard rules: which (household, municipality) pairs may be proposed at all.

Every rule of contract section C that concerns one household is evaluated as a
boolean matrix over a chunk of households x all municipalities (numpy broadcasting),
so 50,000 x 401 takes seconds and memory stays bounded by the chunk size.
Rules that concern several households at once (linked households, capacity shared by
many households, minimum intake) belong to the assignment model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from rematch_pipeline.engine._common import (
    RESOURCE_COLUMNS,
    UNKNOWN_MEDICAL_BIT,
    AgsIndex,
    bool_column,
    chunk_bounds,
    code_bitmask,
    explode_ags_list,
    family_tie_places,
    feature_tables,
    float_column,
    haversine_km,
    int_column,
    key_positions,
    require_columns,
    rows_slice,
)

# A `must` family tie is satisfied by the tie municipality or any seat within this radius.
MUST_TIE_RADIUS_KM: float = 50.0
# Households per chunk: 4096 x 401 booleans per rule is ~1.6 MB, small enough for many rules.
DEFAULT_CHUNK_SIZE: int = 4096

# Rule names, in the order used by exclusion_counts.
RULES: tuple[str, ...] = (
    "largest_unit",
    "medical_care",
    "pets",
    "excluded",
    "declined",
    "family_tie_must",
    *(f"resource_{usage}" for usage, _ in RESOURCE_COLUMNS),
)

HOUSEHOLD_COLUMNS: tuple[str, ...] = (
    "household_pseudonym",
    "medical_needs",
    "pets",
    "excluded_municipality_ids",
    "declined_municipality_ids",
    "family_ties_municipality_id",
    "family_ties_importance",
    "family_tie_lat",
    "family_tie_lon",
    *(usage for usage, _ in RESOURCE_COLUMNS),
)
MUNICIPALITY_COLUMNS: tuple[str, ...] = (
    "municipality_id",
    "latitude",
    "longitude",
    "largest_unit_persons",
    "medical_care",
    "pets_allowed",
    # housing_units is both a household usage and a municipality capacity column name.
    *(capacity for _, capacity in RESOURCE_COLUMNS),
)


@dataclass(frozen=True)
class _Prepared:
    """Column arrays of both tables, sorted by key, ready for broadcasting."""

    household_ids: list[str]
    place_ids: list[str]
    persons: np.ndarray
    medical_bits: np.ndarray
    pets: np.ndarray
    usage: np.ndarray  # [n_households, n_resources]
    must_tie: np.ndarray  # bool: a `must` tie with a stated municipality or coordinates
    tie_lat: np.ndarray
    tie_lon: np.ndarray
    excluded: tuple[np.ndarray, np.ndarray]  # (row, place_idx) sorted by row
    declined: tuple[np.ndarray, np.ndarray]
    tie_match: tuple[np.ndarray, np.ndarray]
    largest_unit: np.ndarray
    care_bits: np.ndarray
    pets_allowed: np.ndarray
    capacity: np.ndarray  # [n_places, n_resources]
    lat: np.ndarray
    lon: np.ndarray


def _prepare(households: pl.DataFrame, municipalities: pl.DataFrame) -> _Prepared:
    hh, mu = feature_tables(households, municipalities, HOUSEHOLD_COLUMNS, MUNICIPALITY_COLUMNS)
    place_ids = mu.get_column("municipality_id").to_list()
    index = AgsIndex(place_ids)

    tie_id = hh.get_column("family_ties_municipality_id")
    tie_lat = float_column(hh, "family_tie_lat")
    tie_lon = float_column(hh, "family_tie_lon")
    has_tie = tie_id.is_not_null().to_numpy() | (~np.isnan(tie_lat) & ~np.isnan(tie_lon))
    # A `must` without any stated tie cannot be evaluated and states no place: not applied.
    must = (hh.get_column("family_ties_importance").fill_null("none") == "must").to_numpy()
    tie_rows, tie_places = family_tie_places(hh, index)
    ex_rows, ex_places, _ = explode_ags_list(hh, "excluded_municipality_ids", index)
    de_rows, de_places, _ = explode_ags_list(hh, "declined_municipality_ids", index)

    return _Prepared(
        household_ids=hh.get_column("household_pseudonym").to_list(),
        place_ids=place_ids,
        persons=int_column(hh, "persons"),
        medical_bits=code_bitmask(hh, "medical_needs", UNKNOWN_MEDICAL_BIT),
        pets=bool_column(hh, "pets"),
        usage=np.stack([int_column(hh, usage) for usage, _ in RESOURCE_COLUMNS], axis=1),
        must_tie=must & has_tie,
        tie_lat=tie_lat,
        tie_lon=tie_lon,
        excluded=(ex_rows, ex_places),
        declined=(de_rows, de_places),
        tie_match=(tie_rows, tie_places),
        largest_unit=int_column(mu, "largest_unit_persons"),
        # Unknown municipality codes add nothing (bit 0 is never a household need).
        care_bits=code_bitmask(mu, "medical_care", 0),
        pets_allowed=bool_column(mu, "pets_allowed"),
        capacity=np.stack([int_column(mu, cap) for _, cap in RESOURCE_COLUMNS], axis=1),
        lat=float_column(mu, "latitude"),
        lon=float_column(mu, "longitude"),
    )


def _listed(pairs: tuple[np.ndarray, np.ndarray], lo: int, hi: int, n_places: int) -> np.ndarray:
    """Boolean [hi-lo, n_places]: True where the row's AGS list matches the place."""
    rows, places = pairs
    s = rows_slice(rows, lo, hi)
    out = np.zeros((hi - lo, n_places), dtype=bool)
    out[rows[s] - lo, places[s]] = True
    return out


def _rule_masks(p: _Prepared, lo: int, hi: int) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (rule, allowed) with allowed a bool [hi-lo, n_places] matrix, in RULES order."""
    n_places = len(p.place_ids)
    sl = slice(lo, hi)
    yield "largest_unit", p.persons[sl, None] <= p.largest_unit[None, :]
    # Every need bit must be among the care bits.
    yield "medical_care", (p.medical_bits[sl, None] & ~p.care_bits[None, :]) == 0
    yield "pets", ~p.pets[sl, None] | p.pets_allowed[None, :]
    yield "excluded", ~_listed(p.excluded, lo, hi, n_places)
    yield "declined", ~_listed(p.declined, lo, hi, n_places)
    must = p.must_tie[sl]
    tie_ok = np.ones((hi - lo, n_places), dtype=bool)
    rows = np.flatnonzero(must)
    if rows.size:
        # Distances only for the few households with a `must` tie.
        g = rows + lo
        dist = haversine_km(p.tie_lat[g, None], p.tie_lon[g, None], p.lat[None, :], p.lon[None, :])
        near = np.nan_to_num(dist, nan=np.inf) <= MUST_TIE_RADIUS_KM
        tie_ok[rows] = near | _listed(p.tie_match, lo, hi, n_places)[rows]
    yield "family_tie_must", tie_ok
    for r, (usage, _) in enumerate(RESOURCE_COLUMNS):
        yield f"resource_{usage}", p.usage[sl, r, None] <= p.capacity[None, :, r]


def candidate_pairs(
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> pl.DataFrame:
    """All (household, municipality) pairs that pass every per-household hard rule.

    Rules (see RULES): persons <= largest_unit_persons; every medical need offered;
    pets only where allowed; not excluded; not declined earlier; a `must` family tie
    kept (tie municipality by the AGS rule, or seat within 50 km of the tie
    coordinates); and each resource the household uses fits the municipality's
    capacity on its own. Returns columns household_pseudonym, municipality_id sorted
    by household then municipality, so equal inputs give identical output.
    """
    p = _prepare(households, municipalities)
    hh_out: list[np.ndarray] = []
    pl_out: list[np.ndarray] = []
    for lo, hi in chunk_bounds(len(p.household_ids), chunk_size):
        ok = np.ones((hi - lo, len(p.place_ids)), dtype=bool)
        for _, allowed in _rule_masks(p, lo, hi):
            ok &= allowed
        rows, places = np.nonzero(ok)  # row-major: sorted by household, then place
        # int32 halves the index lists of a national round (~15 M pairs).
        hh_out.append((rows + lo).astype(np.int32))
        pl_out.append(places.astype(np.int32))
    rows = np.concatenate(hh_out) if hh_out else np.zeros(0, dtype=np.int32)
    places = np.concatenate(pl_out) if pl_out else np.zeros(0, dtype=np.int32)
    del hh_out, pl_out
    hh_series = pl.Series("household_pseudonym", p.household_ids, dtype=pl.String)
    pl_series = pl.Series("municipality_id", p.place_ids, dtype=pl.String)
    return pl.DataFrame(
        {
            "household_pseudonym": hh_series.gather(rows),
            "municipality_id": pl_series.gather(places),
        }
    )


def exclusion_counts(
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> pl.DataFrame:
    """Per household and rule, how many municipalities that rule alone excludes.

    Long table household_pseudonym, rule, municipalities_excluded with one row per
    household and rule of RULES, plus rule "any" = municipalities excluded by at least
    one rule (equal to the municipality count when the household has no candidate).
    Rules are counted independently, so one municipality can count under several.
    """
    return exclusion_tables(households, municipalities, chunk_size=chunk_size)[0]


def exclusion_tables(
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """exclusion_counts, and the same from the municipalities' side, in one pass over the rules.

    The second table is municipality_id, rule, households_excluded: per municipality and rule
    (RULES, then "any"), how many households that rule alone keeps away from it; "any" counts
    the households that are not candidates there at all. It answers a municipality's "why did
    households not come to us" (one household can count under several rules).
    """
    p = _prepare(households, municipalities)
    names = [*RULES, "any"]
    counts = np.zeros((len(p.household_ids), len(names)), dtype=np.int64)
    by_place = np.zeros((len(p.place_ids), len(names)), dtype=np.int64)
    for lo, hi in chunk_bounds(len(p.household_ids), chunk_size):
        ok = np.ones((hi - lo, len(p.place_ids)), dtype=bool)
        for k, (rule, allowed) in enumerate(_rule_masks(p, lo, hi)):
            assert rule == RULES[k]
            counts[lo:hi, k] = (~allowed).sum(axis=1)
            by_place[:, k] += (~allowed).sum(axis=0)
            ok &= allowed
        counts[lo:hi, -1] = (~ok).sum(axis=1)
        by_place[:, -1] += (~ok).sum(axis=0)
    n_h, n_p = len(p.household_ids), len(p.place_ids)
    per_household = pl.DataFrame(
        {
            "household_pseudonym": pl.Series(p.household_ids, dtype=pl.String).gather(
                np.repeat(np.arange(n_h), len(names))
            ),
            "rule": pl.Series(names * n_h, dtype=pl.String),
            "municipalities_excluded": counts.reshape(-1),
        }
    )
    per_place = pl.DataFrame(
        {
            "municipality_id": pl.Series(p.place_ids, dtype=pl.String).gather(np.repeat(np.arange(n_p), len(names))),
            "rule": pl.Series(names * n_p, dtype=pl.String),
            "households_excluded": by_place.reshape(-1),
        }
    )
    return per_household, per_place


def rules_broken(
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    pairs: pl.DataFrame,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> pl.DataFrame:
    """Which per-household hard rules each given (household, municipality) pair breaks.

    pairs needs household_pseudonym and municipality_id, both present in the tables; its rows
    and order are kept, and one bool column per rule of RULES is added (True = the rule forbids
    the pair), evaluated exactly as candidate_pairs does. For assignments made without the
    rules (the distribution-key baseline, docs/mechanisms.md): rule by rule, what they would break.
    """
    require_columns(pairs, ("household_pseudonym", "municipality_id"), "pairs")
    p = _prepare(households, municipalities)
    rows = key_positions(pairs, "household_pseudonym", p.household_ids)
    places = key_positions(pairs, "municipality_id", p.place_ids)
    if (rows < 0).any() or (places < 0).any():
        raise ValueError(f"pairs: {int((rows < 0).sum())} households and {int((places < 0).sum())} municipalities not in the tables")
    order = np.argsort(rows, kind="stable")
    broken = np.zeros((pairs.height, len(RULES)), dtype=bool)
    for lo, hi in chunk_bounds(len(p.household_ids), chunk_size):
        s = rows_slice(rows[order], lo, hi)
        if s.start == s.stop:
            continue
        at = order[s]
        for k, (_, allowed) in enumerate(_rule_masks(p, lo, hi)):
            broken[at, k] = ~allowed[rows[at] - lo, places[at]]
    return pairs.with_columns([pl.Series(rule, broken[:, k]) for k, rule in enumerate(RULES)])
