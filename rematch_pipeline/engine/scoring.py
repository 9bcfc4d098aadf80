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
    AgsIndex,
    explode_ags_list,
    float_column,
    haversine_km,
    int_column,
    code_bitmask,
    require_columns,
    require_unique,
    sorted_frame,
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


def _pair_index(
    pairs: pl.DataFrame, ids: list[str], key: str, table: str
) -> np.ndarray:
    lookup = pl.DataFrame(
        {key: pl.Series(ids, dtype=pl.String), "_idx": np.arange(len(ids), dtype=np.int64)}
    )
    idx = pairs.select(key).join(lookup, on=key, how="left", maintain_order="left")
    missing = idx.get_column("_idx").null_count()
    if missing:
        raise ValueError(f"pairs: {missing} rows refer to a {key} not in {table}")
    return idx.get_column("_idx").to_numpy().astype(np.int64, copy=False)


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


def score_pairs(
    pairs: pl.DataFrame,
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    weights: ScoreWeights | None = None,
) -> pl.DataFrame:
    """Add `score` (0-100, 4 decimals) and `score_<criterion>` contributions to pairs.

    pairs needs household_pseudonym and municipality_id (other columns are kept, row
    order is kept). Each contribution is in points; contributions plus score_neutral
    (50 for households that rated nothing, else 0) sum to the score exactly up to
    float representation: the score is the rounded sum of rounded contributions.
    """
    weights = weights or ScoreWeights()
    require_columns(pairs, ("household_pseudonym", "municipality_id"), "pairs")
    require_columns(households, HOUSEHOLD_COLUMNS, "household_features")
    require_columns(municipalities, MUNICIPALITY_COLUMNS, "municipality_features")
    require_unique(households, "household_pseudonym", "household_features")
    require_unique(municipalities, "municipality_id", "municipality_features")
    hh = sorted_frame(households.select(HOUSEHOLD_COLUMNS), "household_pseudonym")
    mu = sorted_frame(municipalities.select(MUNICIPALITY_COLUMNS), "municipality_id")
    hh_ids = hh.get_column("household_pseudonym").to_list()
    place_ids = mu.get_column("municipality_id").to_list()
    n_places = len(place_ids)
    h = _pair_index(pairs, hh_ids, "household_pseudonym", "household_features")
    m = _pair_index(pairs, place_ids, "municipality_id", "municipality_features")
    index = AgsIndex(place_ids)
    mult = weights.as_dict()

    # Per criterion: (weight per pair, value per pair). Weight 0 = skipped / not rated.
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def weight(criterion: str, applies: np.ndarray | None = None) -> np.ndarray:
        imp = int_column(hh, IMPORTANCE_COLUMN[criterion]).astype(np.float64)
        w = np.clip(imp, 0.0, IMPORTANCE_MAX) / IMPORTANCE_MAX * mult[criterion]
        if applies is not None:
            w = np.where(applies, w, 0.0)
        return w[h]

    # jobs: share of members wanting work whose sector has a shortage there.
    wanting = int_column(hh, "members_wanting_work")
    sector_counts = _sector_matrix(hh, "work_sectors", counts=True)
    shortage = _sector_matrix(mu, "shortage_sectors", counts=False)
    w_jobs = weight("jobs", wanting > 0)
    sel = np.flatnonzero(w_jobs > 0)  # only rated pairs need the value
    fitting = np.zeros(sel.size, dtype=np.float64)
    for s in range(len(SECTOR)):
        fitting += sector_counts[h[sel], s] * shortage[m[sel], s]
    jobs = np.zeros(h.shape[0], dtype=np.float64)
    jobs[sel] = np.minimum(fitting / np.maximum(wanting[h[sel]], 1), 1.0)
    parts["jobs"] = (w_jobs, jobs)

    # schools_childcare: need-weighted comfort min(1, places / (3 x need)) per child type.
    need = np.stack([int_column(hh, c) for c in CHILD_COLUMNS], axis=1).astype(np.float64)
    places = np.stack([int_column(mu, c) for c in CHILD_COLUMNS], axis=1).astype(np.float64)
    children = need.sum(axis=1)
    covered = np.zeros(h.shape[0], dtype=np.float64)
    for t in range(len(CHILD_COLUMNS)):
        nt = need[h, t]
        with np.errstate(divide="ignore", invalid="ignore"):
            comfort = np.where(nt > 0, np.minimum(1.0, places[m, t] / (COMFORT_FACTOR * nt)), 0.0)
        covered += nt * comfort
    parts["schools_childcare"] = (
        weight("schools_childcare", children > 0),
        covered / np.maximum(children, 1.0)[h],
    )

    # medical_care: breadth of specialised care offered (share of the MEDICAL list).
    care_bits = code_bitmask(mu, "medical_care", 0)
    breadth = np.array([bin(int(b)).count("1") for b in care_bits], dtype=np.float64) / len(MEDICAL)
    parts["medical_care"] = (weight("medical_care"), breadth[m])

    community = _code_values(mu, "ukrainian_community", COMMUNITY_VALUE)
    parts["community"] = (weight("community"), community[m])
    urbanity = _code_values(mu, "settlement_type", URBANITY_VALUE)
    parts["big_city"] = (weight("big_city"), urbanity[m])
    parts["quiet_rural"] = (weight("quiet_rural"), 1.0 - urbanity[m])

    # family_nearby: 1 at the tie (AGS match or 0 km), linear to 0 at 200 km.
    tie_lat = float_column(hh, "family_tie_lat")
    tie_lon = float_column(hh, "family_tie_lon")
    has_coords = ~np.isnan(tie_lat) & ~np.isnan(tie_lon)
    has_tie = hh.get_column("family_ties_municipality_id").is_not_null().to_numpy() | has_coords
    tie_lists = hh.select(
        pl.when(pl.col("family_ties_municipality_id").is_not_null())
        .then(pl.concat_list(pl.col("family_ties_municipality_id")))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("tie")
    )
    t_rows, t_places, _ = explode_ags_list(tie_lists, "tie", index)
    lat = float_column(mu, "latitude")
    lon = float_column(mu, "longitude")
    w_family = weight("family_nearby", has_tie)
    sel = np.flatnonzero(w_family > 0)
    hs, ms = h[sel], m[sel]
    dist = haversine_km(tie_lat[hs], tie_lon[hs], lat[ms], lon[ms])
    near = np.clip(1.0 - np.nan_to_num(dist, nan=np.inf) / FAMILY_ZERO_KM, 0.0, 1.0)
    at_tie = _pair_lookup(t_rows, t_places, np.ones(t_rows.size), hs, ms, n_places, 0.0) > 0
    closeness = np.zeros(h.shape[0], dtype=np.float64)
    closeness[sel] = np.where(at_tie, 1.0, near)
    parts["family_nearby"] = (w_family, closeness)

    # wishes: rank 1/2/3 -> 1.0/0.8/0.6 (best rank if several keys hit the place).
    w_rows, w_places, w_pos = explode_ags_list(hh, "preferred_municipality_ids", index)
    rank_value = np.array(WISH_RANK_VALUES, dtype=np.float64)
    values = np.where(w_pos < rank_value.size, rank_value[np.minimum(w_pos, rank_value.size - 1)], 0.0)
    wish_value = _pair_lookup(w_rows, w_places, values, h, m, n_places, 0.0)
    named = (hh.get_column("preferred_municipality_ids").list.len().fill_null(0) > 0).to_numpy()
    w_wish = np.where(named, WISHES_IMPORTANCE / IMPORTANCE_MAX * mult["wishes"], 0.0)[h]
    parts["wishes"] = (w_wish, wish_value)

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
        w_c, v_c = parts[c]
        raw = np.where(rated, 100.0 * w_c * v_c / safe_w, 0.0)
        exact += raw
        contrib = np.round(raw, SCORE_DECIMALS)
        rounded_sum += contrib
        larger = contrib > best
        best = np.where(larger, contrib, best)
        best_idx = np.where(larger, k, best_idx)
        columns[f"score_{c}"] = contrib
    neutral = np.where(rated, 0.0, NEUTRAL_SCORE)
    columns[NEUTRAL_COLUMN] = neutral
    # Rounding each term can drift the sum by a few 1e-4 (even above 100); the drift
    # goes to the row's largest contribution so the terms sum to the rounded score.
    score = np.round(np.minimum(exact, 100.0) + neutral, SCORE_DECIMALS)
    residual = np.where(rated, score - rounded_sum, 0.0)
    for k, c in enumerate(CRITERIA):
        col = f"score_{c}"
        columns[col] = np.round(columns[col] + np.where(best_idx == k, residual, 0.0), SCORE_DECIMALS)
    out = pairs.drop([c for c in ("score", *columns) if c in pairs.columns])
    return out.with_columns(
        pl.Series("score", np.round(score, SCORE_DECIMALS), dtype=pl.Float64),
        *(pl.Series(k, v, dtype=pl.Float64) for k, v in columns.items()),
    )
