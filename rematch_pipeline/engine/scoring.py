"""Soft criteria: how well a municipality suits a household, 0-100 with a breakdown.

score = 100 * sum_c w_c * v_c / sum_c w_c over the criteria c that apply to the
household, with w_c = importance_c / 3 * multiplier_c and v_c in [0, 1].
docs/scoring.md documents every value function and shows a worked example.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
import polars as pl

from rematch_pipeline.engine._common import (
    PAIR_CHUNK_SIZE,
    AgsIndex,
    chunk_bounds,
    explode_ags_list,
    family_tie_places,
    feature_tables,
    float_column,
    haversine_km,
    int_column,
    code_bitmask,
    key_positions,
    require_columns,
)
from rematch_pipeline.schemas.contract import COMMUNITY, MEDICAL, SECTOR, SETTLEMENT

CRITERIA: tuple[str, ...] = (
    "jobs",
    "schools_childcare",
    "medical_care",
    "community",
    "big_city",
    "quiet_rural",
    "family_nearby",
    "wishes",
)
# Column holding the 50 points of a household that rated nothing (keeps sum == score).
NEUTRAL_COLUMN: str = "score_neutral"
NEUTRAL_SCORE: float = 50.0
SCORE_DECIMALS: int = 4

IMPORTANCE_MAX: float = 3.0
# Wishes have no questionnaire importance; they count as "very important".
WISHES_IMPORTANCE: float = 3.0
WISH_RANK_VALUES: tuple[float, ...] = (1.0, 0.8, 0.6)
# Places >= COMFORT_FACTOR x the children's need earn full marks for schools/childcare.
COMFORT_FACTOR: float = 3.0
# Family closeness falls linearly from 1 at the tie to 0 at this distance.
FAMILY_ZERO_KM: float = 200.0

COMMUNITY_VALUE: dict[str, float] = {"none": 0.0, "small": 0.5, "large": 1.0}
URBANITY_VALUE: dict[str, float] = {"big_city": 1.0, "city": 2.0 / 3.0, "town": 1.0 / 3.0, "rural": 0.0}
assert set(COMMUNITY_VALUE) == set(COMMUNITY) and set(URBANITY_VALUE) == set(SETTLEMENT)

IMPORTANCE_COLUMN: dict[str, str] = {
    "jobs": "imp_jobs",
    "schools_childcare": "imp_schools_childcare",
    "medical_care": "imp_medical_care",
    "community": "imp_community",
    "big_city": "imp_big_city",
    "quiet_rural": "imp_quiet_rural",
    "family_nearby": "imp_family_nearby",
}

HOUSEHOLD_COLUMNS: tuple[str, ...] = (
    "household_pseudonym",
    *IMPORTANCE_COLUMN.values(),
    "work_sectors",
    "members_wanting_work",
    "kita_places",
    "school_places_primary",
    "school_places_secondary",
    "preferred_municipality_ids",
    "family_ties_municipality_id",
    "family_tie_lat",
    "family_tie_lon",
)
MUNICIPALITY_COLUMNS: tuple[str, ...] = (
    "municipality_id",
    "latitude",
    "longitude",
    "kita_places",
    "school_places_primary",
    "school_places_secondary",
    "medical_care",
    "shortage_sectors",
    "ukrainian_community",
    "settlement_type",
)
CHILD_COLUMNS: tuple[str, ...] = ("kita_places", "school_places_primary", "school_places_secondary")


@dataclass(frozen=True)
class ScoreWeights:
    """Multiplier per criterion on top of the household's own importance (default 1.0).

    0 switches a criterion off for everyone; 2 doubles its say relative to the others.
    """

    jobs: float = 1.0
    schools_childcare: float = 1.0
    medical_care: float = 1.0
    community: float = 1.0
    big_city: float = 1.0
    quiet_rural: float = 1.0
    family_nearby: float = 1.0
    wishes: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"ScoreWeights.{f.name} must be a finite number >= 0")

    def as_dict(self) -> dict[str, float]:
        """Multipliers by criterion name (for run metadata)."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> ScoreWeights:
        """Build from a config mapping; unknown criterion names are an error."""
        unknown = set(values) - set(CRITERIA)
        if unknown:
            raise ValueError(f"unknown score criteria {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})


def _code_values(df: pl.DataFrame, column: str, mapping: dict[str, float]) -> np.ndarray:
    series = df.get_column(column)
    bad = int((~series.is_in(list(mapping)) | series.is_null()).sum())
    if bad:
        raise ValueError(f"municipality_features: {bad} rows with an invalid {column} code")
    return series.replace_strict(mapping, return_dtype=pl.Float64).to_numpy()


def _sector_matrix(df: pl.DataFrame, column: str, counts: bool) -> np.ndarray:
    """[rows, len(SECTOR)] per-row counts (or 0/1 presence) of SECTOR codes in a list column.

    Codes outside SECTOR (e.g. "none", "student") are ignored: they never fit a shortage.
    """
    long = (
        df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), pl.col(column).alias("s"))
        .explode("s")
        .filter(pl.col("s").is_in(list(SECTOR)))
        .with_columns(pl.col("s").replace_strict({s: i for i, s in enumerate(SECTOR)}, return_dtype=pl.Int64))
    )
    out = np.zeros((df.height, len(SECTOR)), dtype=np.float64)
    rows = long.get_column("row").to_numpy()
    cols = long.get_column("s").to_numpy()
    if counts:
        np.add.at(out, (rows, cols), 1.0)
    else:
        out[rows, cols] = 1.0
    return out


def _pair_index(pairs: pl.DataFrame, ids: list[str], key: str, table: str, chunk_size: int) -> np.ndarray:
    idx = key_positions(pairs, key, ids, chunk_size)
    missing = int(np.count_nonzero(idx < 0))
    if missing:
        raise ValueError(f"pairs: {missing} rows refer to a {key} not in {table}")
    return idx


def _pair_lookup(
    rows: np.ndarray, places: np.ndarray, values: np.ndarray, h: np.ndarray, m: np.ndarray, n_places: int, default: float
) -> np.ndarray:
    """Value at (h, m) from a sparse (rows, places) -> values table, default elsewhere."""
    out = np.full(h.shape[0], default, dtype=np.float64)
    if rows.size == 0 or h.size == 0:
        return out
    keys = rows * n_places + places  # sorted: rows then places ascending
    query = h * n_places + m
    pos = np.searchsorted(keys, query)
    pos_c = np.minimum(pos, keys.size - 1)
    hit = keys[pos_c] == query
    out[hit] = values[pos_c[hit]]
    return out


@dataclass(frozen=True)
class _Prepared:
    """Per-household and per-place arrays of the criteria, indexed by the sorted tables.

    weight[c] is the household's weight of criterion c (0 = skipped / not rated).
    """

    weight: dict[str, np.ndarray]
    n_places: int
    wanting: np.ndarray
    sector_counts: np.ndarray  # [households, len(SECTOR)]
    shortage: np.ndarray  # [places, len(SECTOR)]
    need: np.ndarray  # [households, len(CHILD_COLUMNS)]
    places: np.ndarray  # [places, len(CHILD_COLUMNS)]
    children: np.ndarray  # max(1, children) per household, the share's denominator
    breadth: np.ndarray
    community: np.ndarray
    urbanity: np.ndarray
    tie_lat: np.ndarray
    tie_lon: np.ndarray
    tie: tuple[np.ndarray, np.ndarray]  # (row, place_idx) of AGS family ties
    lat: np.ndarray
    lon: np.ndarray
    wish: tuple[np.ndarray, np.ndarray, np.ndarray]  # (row, place_idx, value) of wishes


def _prepare(hh: pl.DataFrame, mu: pl.DataFrame, index: AgsIndex, weights: ScoreWeights) -> _Prepared:
    """Everything the criteria need that does not depend on the pair (sorted hh and mu)."""
    mult = weights.as_dict()

    def weight(criterion: str, applies: np.ndarray | None = None) -> np.ndarray:
        imp = int_column(hh, IMPORTANCE_COLUMN[criterion]).astype(np.float64)
        w = np.clip(imp, 0.0, IMPORTANCE_MAX) / IMPORTANCE_MAX * mult[criterion]
        return w if applies is None else np.where(applies, w, 0.0)

    wanting = int_column(hh, "members_wanting_work")
    need = np.stack([int_column(hh, c) for c in CHILD_COLUMNS], axis=1).astype(np.float64)
    children = need.sum(axis=1)
    care_bits = code_bitmask(mu, "medical_care", 0)
    tie_lat = float_column(hh, "family_tie_lat")
    tie_lon = float_column(hh, "family_tie_lon")
    has_coords = ~np.isnan(tie_lat) & ~np.isnan(tie_lon)
    has_tie = hh.get_column("family_ties_municipality_id").is_not_null().to_numpy() | has_coords
    t_rows, t_places = family_tie_places(hh, index)
    # wishes: rank 1/2/3 -> 1.0/0.8/0.6 (best rank if several keys hit the place).
    w_rows, w_places, w_pos = explode_ags_list(hh, "preferred_municipality_ids", index)
    rank_value = np.array(WISH_RANK_VALUES, dtype=np.float64)
    wish_values = np.where(w_pos < rank_value.size, rank_value[np.minimum(w_pos, rank_value.size - 1)], 0.0)
    named = (hh.get_column("preferred_municipality_ids").list.len().fill_null(0) > 0).to_numpy()
    return _Prepared(
        weight={
            "jobs": weight("jobs", wanting > 0),
            "schools_childcare": weight("schools_childcare", children > 0),
            "medical_care": weight("medical_care"),
            "community": weight("community"),
            "big_city": weight("big_city"),
            "quiet_rural": weight("quiet_rural"),
            "family_nearby": weight("family_nearby", has_tie),
            "wishes": np.where(named, WISHES_IMPORTANCE / IMPORTANCE_MAX * mult["wishes"], 0.0),
        },
        n_places=mu.height,
        wanting=wanting,
        sector_counts=_sector_matrix(hh, "work_sectors", counts=True),
        shortage=_sector_matrix(mu, "shortage_sectors", counts=False),
        need=need,
        places=np.stack([int_column(mu, c) for c in CHILD_COLUMNS], axis=1).astype(np.float64),
        children=np.maximum(children, 1.0),
        breadth=np.array([bin(int(b)).count("1") for b in care_bits], dtype=np.float64) / len(MEDICAL),
        community=_code_values(mu, "ukrainian_community", COMMUNITY_VALUE),
        urbanity=_code_values(mu, "settlement_type", URBANITY_VALUE),
        tie_lat=tie_lat,
        tie_lon=tie_lon,
        tie=(t_rows, t_places),
        lat=float_column(mu, "latitude"),
        lon=float_column(mu, "longitude"),
        wish=(w_rows, w_places, wish_values),
    )


def _criterion_parts(p: _Prepared, h: np.ndarray, m: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per criterion (weight per pair, value per pair in [0, 1]) for pairs (h, m)."""
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # jobs: share of members wanting work whose sector has a shortage there.
    w_jobs = p.weight["jobs"][h]
    sel = np.flatnonzero(w_jobs > 0)  # only rated pairs need the value
    fitting = np.zeros(sel.size, dtype=np.float64)
    for s in range(len(SECTOR)):
        fitting += p.sector_counts[h[sel], s] * p.shortage[m[sel], s]
    jobs = np.zeros(h.shape[0], dtype=np.float64)
    jobs[sel] = np.minimum(fitting / np.maximum(p.wanting[h[sel]], 1), 1.0)
    parts["jobs"] = (w_jobs, jobs)

    # schools_childcare: need-weighted comfort min(1, places / (3 x need)) per child type.
    covered = np.zeros(h.shape[0], dtype=np.float64)
    for t in range(len(CHILD_COLUMNS)):
        nt = p.need[h, t]
        with np.errstate(divide="ignore", invalid="ignore"):
            comfort = np.where(nt > 0, np.minimum(1.0, p.places[m, t] / (COMFORT_FACTOR * nt)), 0.0)
        covered += nt * comfort
    parts["schools_childcare"] = (p.weight["schools_childcare"][h], covered / p.children[h])

    # medical_care: breadth of specialised care offered (share of the MEDICAL list).
    parts["medical_care"] = (p.weight["medical_care"][h], p.breadth[m])
    parts["community"] = (p.weight["community"][h], p.community[m])
    parts["big_city"] = (p.weight["big_city"][h], p.urbanity[m])
    parts["quiet_rural"] = (p.weight["quiet_rural"][h], 1.0 - p.urbanity[m])

    # family_nearby: 1 at the tie (AGS match or 0 km), linear to 0 at 200 km.
    w_family = p.weight["family_nearby"][h]
    sel = np.flatnonzero(w_family > 0)
    hs, ms = h[sel], m[sel]
    dist = haversine_km(p.tie_lat[hs], p.tie_lon[hs], p.lat[ms], p.lon[ms])
    near = np.clip(1.0 - np.nan_to_num(dist, nan=np.inf) / FAMILY_ZERO_KM, 0.0, 1.0)
    t_rows, t_places = p.tie
    at_tie = _pair_lookup(t_rows, t_places, np.ones(t_rows.size), hs, ms, p.n_places, 0.0) > 0
    closeness = np.zeros(h.shape[0], dtype=np.float64)
    closeness[sel] = np.where(at_tie, 1.0, near)
    parts["family_nearby"] = (w_family, closeness)

    w_rows, w_places, wish_values = p.wish
    parts["wishes"] = (p.weight["wishes"][h], _pair_lookup(w_rows, w_places, wish_values, h, m, p.n_places, 0.0))
    return parts


def _score_chunk(
    p: _Prepared, h: np.ndarray, m: np.ndarray, breakdown: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(score, score_<criterion> and score_neutral columns, or {} without breakdown) of pairs (h, m)."""
    parts = _criterion_parts(p, h, m)
    total_w = np.zeros(h.shape[0], dtype=np.float64)
    for c in CRITERIA:
        total_w += parts[c][0]
    rated = total_w > 0
    safe_w = np.where(rated, total_w, 1.0)
    columns: dict[str, np.ndarray] = {}
    exact = np.zeros(h.shape[0], dtype=np.float64)
    rounded_sum = np.zeros(h.shape[0], dtype=np.float64)
    best = np.full(h.shape[0], -1.0)
    best_idx = np.zeros(h.shape[0], dtype=np.int64)
    for k, c in enumerate(CRITERIA):
        w_c, v_c = parts.pop(c)
        raw = np.where(rated, 100.0 * w_c * v_c / safe_w, 0.0)
        del w_c, v_c
        exact += raw
        if not breakdown:
            continue  # the score needs the exact sum only
        contrib = np.round(raw, SCORE_DECIMALS)
        rounded_sum += contrib
        larger = contrib > best
        best = np.where(larger, contrib, best)
        best_idx = np.where(larger, k, best_idx)
        columns[f"score_{c}"] = contrib
    neutral = np.where(rated, 0.0, NEUTRAL_SCORE)
    score = np.round(np.minimum(exact, 100.0) + neutral, SCORE_DECIMALS)
    if not breakdown:
        return score, columns
    columns[NEUTRAL_COLUMN] = neutral
    # Rounding each term can drift the sum by a few 1e-4 (even above 100); the drift
    # goes to the row's largest contribution so the terms sum to the rounded score.
    residual = np.where(rated, score - rounded_sum, 0.0)
    for k, c in enumerate(CRITERIA):
        col = f"score_{c}"
        columns[col] = np.round(columns[col] + np.where(best_idx == k, residual, 0.0), SCORE_DECIMALS)
    return score, columns


def score_pairs(
    pairs: pl.DataFrame,
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    weights: ScoreWeights | None = None,
    *,
    breakdown: bool = True,
    chunk_size: int = PAIR_CHUNK_SIZE,
) -> pl.DataFrame:
    """Add `score` (0-100, 4 decimals) and `score_<criterion>` contributions to pairs.

    pairs needs household_pseudonym and municipality_id (other columns are kept, row
    order is kept). Each contribution is in points; contributions plus score_neutral
    (50 for households that rated nothing, else 0) sum to the score exactly up to
    float representation: the score is the rounded sum of rounded contributions.
    breakdown=False adds `score` only (same values): for callers that never show the
    contributions, it saves nine float64 columns per pair. Pairs are scored
    chunk_size at a time, which bounds the temporaries and does not change results.
    """
    weights = weights or ScoreWeights()
    require_columns(pairs, ("household_pseudonym", "municipality_id"), "pairs")
    hh, mu = feature_tables(households, municipalities, HOUSEHOLD_COLUMNS, MUNICIPALITY_COLUMNS)
    place_ids = mu.get_column("municipality_id").to_list()
    h_all = _pair_index(pairs, hh.get_column("household_pseudonym").to_list(), "household_pseudonym", "household_features", chunk_size)
    m_all = _pair_index(pairs, place_ids, "municipality_id", "municipality_features", chunk_size)
    p = _prepare(hh, mu, AgsIndex(place_ids), weights)

    breakdown_names = [*(f"score_{c}" for c in CRITERIA), NEUTRAL_COLUMN]
    score = np.empty(pairs.height, dtype=np.float64)
    columns = {name: np.empty(pairs.height, dtype=np.float64) for name in (breakdown_names if breakdown else [])}
    for lo, hi in chunk_bounds(pairs.height, chunk_size):
        # int64 keeps h * n_places + m in _pair_lookup from overflowing.
        h, m = h_all[lo:hi].astype(np.int64), m_all[lo:hi].astype(np.int64)
        score[lo:hi], chunk = _score_chunk(p, h, m, breakdown)
        for name, values in chunk.items():
            columns[name][lo:hi] = values
    del h_all, m_all
    out = pairs.drop([c for c in ("score", *breakdown_names) if c in pairs.columns])
    return out.with_columns(
        pl.Series("score", np.round(score, SCORE_DECIMALS), dtype=pl.Float64),
        *(pl.Series(k, v, dtype=pl.Float64) for k, v in columns.items()),
    )
