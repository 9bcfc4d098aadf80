"""Shared helpers of the matching engine: input checks, AGS key matching, distances.

Nothing here logs or raises with personal data: messages name columns, counts and
pseudonyms only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import polars as pl

from rematch_pipeline.schemas.contract import MEDICAL

# Mean Earth radius (IUGG) in km; the 50 km rule does not need more precision.
EARTH_RADIUS_KM: float = 6371.0088

# Household needs outside the MEDICAL code list get a bit no municipality can offer,
# so an unknown need is never silently treated as satisfied.
UNKNOWN_MEDICAL_BIT: int = 1 << 40
MEDICAL_BITS: dict[str, int] = {code: 1 << i for i, code in enumerate(MEDICAL)}

# Household usage column -> municipality capacity column (contract section C).
RESOURCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("persons", "capacity_persons"),
    ("housing_units", "housing_units"),
    ("accessible_units", "accessible_units"),
    ("kita_places", "kita_places"),
    ("school_places_primary", "school_places_primary"),
    ("school_places_secondary", "school_places_secondary"),
    ("integration_course_places", "integration_course_places"),
)
RESOURCES: tuple[str, ...] = tuple(usage for usage, _ in RESOURCE_COLUMNS)
# Rows of a pair table handled at once by key_positions and score_pairs: bounds their
# temporaries when a national round has ~15 M candidate pairs.
PAIR_CHUNK_SIZE: int = 1 << 20


def require_columns(df: pl.DataFrame, columns: Iterable[str], table: str) -> None:
    """Raise ValueError naming the table and missing column names (never values)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: missing columns {sorted(missing)}")


def require_unique(df: pl.DataFrame, column: str, table: str) -> None:
    """Raise ValueError when a key column has duplicates or nulls (reports counts only)."""
    nulls = df.get_column(column).null_count()
    dupes = df.height - df.get_column(column).n_unique()
    if nulls or dupes:
        raise ValueError(f"{table}: column {column} has {nulls} nulls and {dupes} duplicate keys")


def sorted_frame(df: pl.DataFrame, key: str) -> pl.DataFrame:
    """Sort by the key so that results never depend on the caller's row order."""
    return df.sort(key, maintain_order=True)


def ags_matches(a: str, b: str) -> bool:
    """AGS rule: equal keys match, and an 8-digit Gemeinde key matches its 5-digit Kreis key."""
    if a == b:
        return True
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return len(short) == 5 and len(long_) == 8 and long_.startswith(short)


class AgsIndex:
    """Maps any AGS key to the indices of the places it matches under the AGS rule.

    Built once per place list; lookups are dictionary based, so matching a long list
    of keys costs O(number of distinct keys), not keys x places.
    """

    def __init__(self, place_ids: Sequence[str]) -> None:
        self._exact: dict[str, list[int]] = defaultdict(list)
        self._gemeinden_of_kreis: dict[str, list[int]] = defaultdict(list)
        self._kreis: dict[str, list[int]] = defaultdict(list)
        for j, pid in enumerate(place_ids):
            self._exact[pid].append(j)
            if len(pid) == 8:
                self._gemeinden_of_kreis[pid[:5]].append(j)
            elif len(pid) == 5:
                self._kreis[pid].append(j)

    def lookup(self, key: str) -> list[int]:
        """Indices of places matched by one key, ascending and without duplicates."""
        hits = set(self._exact.get(key, ()))
        if len(key) == 5:
            hits.update(self._gemeinden_of_kreis.get(key, ()))
        elif len(key) == 8:
            hits.update(self._kreis.get(key[:5], ()))
        return sorted(hits)

    def match_table(self, keys: Iterable[str]) -> pl.DataFrame:
        """Long table (key, place_idx) for the given distinct keys."""
        out_keys: list[str] = []
        out_idx: list[int] = []
        for key in sorted(set(keys)):
            for j in self.lookup(key):
                out_keys.append(key)
                out_idx.append(j)
        return pl.DataFrame(
            {"key": out_keys, "place_idx": out_idx},
            schema={"key": pl.String, "place_idx": pl.Int64},
        )


def explode_ags_list(
    df: pl.DataFrame, column: str, index: AgsIndex
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match a list[str] AGS column of each row against the places.

    Returns (row, place_idx, position) arrays sorted by row then place, where position
    is the 0-based position of the matching key in the row's list (the first matching
    position when several keys hit the same place).
    """
    long = (
        df.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
            pl.col(column).fill_null(pl.lit([], dtype=pl.List(pl.String))).alias("key"),
        )
        .with_columns(pl.int_ranges(0, pl.col("key").list.len(), dtype=pl.Int64).alias("pos"))
        .explode(["key", "pos"])
        .drop_nulls("key")
    )
    table = index.match_table(long.get_column("key").to_list())
    hit = (
        long.join(table, on="key", how="inner")
        .group_by(["row", "place_idx"])
        .agg(pl.col("pos").min())
        .sort(["row", "place_idx"])
    )
    return (
        hit.get_column("row").to_numpy().astype(np.int64, copy=False),
        hit.get_column("place_idx").to_numpy().astype(np.int64, copy=False),
        hit.get_column("pos").to_numpy().astype(np.int64, copy=False),
    )


def feature_tables(
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    household_columns: Sequence[str],
    municipality_columns: Sequence[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The feature tables checked (columns present, ids unique), narrowed to the given
    columns and sorted by id: every per-pair array indexes these rows."""
    require_columns(households, household_columns, "household_features")
    require_columns(municipalities, municipality_columns, "municipality_features")
    require_unique(households, "household_pseudonym", "household_features")
    require_unique(municipalities, "municipality_id", "municipality_features")
    hh = sorted_frame(households.select(household_columns), "household_pseudonym")
    mu = sorted_frame(municipalities.select(municipality_columns), "municipality_id")
    return hh, mu


def family_tie_places(hh: pl.DataFrame, index: AgsIndex) -> tuple[np.ndarray, np.ndarray]:
    """(household row, place index) of every place matching a household's family-tie AGS key."""
    tie_lists = hh.select(
        pl.when(pl.col("family_ties_municipality_id").is_not_null())
        .then(pl.concat_list(pl.col("family_ties_municipality_id")))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("tie")
    )
    rows, places, _ = explode_ags_list(tie_lists, "tie", index)
    return rows, places


def chunk_bounds(n: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """(lo, hi) bounds of consecutive chunks of at most chunk_size out of n rows."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    for lo in range(0, n, chunk_size):
        yield lo, min(n, lo + chunk_size)


def key_positions(
    df: pl.DataFrame, key: str, ids: Sequence[str], chunk_size: int = PAIR_CHUNK_SIZE
) -> np.ndarray:
    """Position of each row's key in ids (unique) as int32, -1 where it is not in ids.

    Joined chunk_size rows at a time, so the joined key column never exists for a
    whole pair table at once; int32 halves the result (tables stay far below 2**31 rows).
    """
    lookup = pl.DataFrame(
        {key: pl.Series(list(ids), dtype=pl.String), "_pos": np.arange(len(ids), dtype=np.int32)}
    )
    out = np.empty(df.height, dtype=np.int32)
    for lo, hi in chunk_bounds(df.height, chunk_size):
        pos = df.slice(lo, hi - lo).select(key).join(lookup, on=key, how="left", maintain_order="left")
        out[lo:hi] = pos.get_column("_pos").fill_null(-1).to_numpy()
    return out


def rows_slice(rows: np.ndarray, lo: int, hi: int) -> slice:
    """Slice of a row-sorted array that belongs to rows lo..hi-1."""
    return slice(int(np.searchsorted(rows, lo, "left")), int(np.searchsorted(rows, hi, "left")))


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km; broadcasts; NaN where any coordinate is NaN."""
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def code_bitmask(df: pl.DataFrame, column: str, unknown_bit: int) -> np.ndarray:
    """OR of MEDICAL code bits per row of a list[str] column (unknown codes -> unknown_bit)."""
    bits = df.select(
        pl.col(column)
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
        .list.eval(
            pl.element().replace_strict(MEDICAL_BITS, default=unknown_bit, return_dtype=pl.Int64)
        )
        .list.unique()
        .list.sum()
        .fill_null(0)
    )
    return bits.to_series().to_numpy().astype(np.int64, copy=False)


def int_column(df: pl.DataFrame, column: str) -> np.ndarray:
    """Integer column as int64 numpy, nulls as 0 (validation upstream rejects real gaps)."""
    return df.get_column(column).fill_null(0).cast(pl.Int64).to_numpy()


def float_column(df: pl.DataFrame, column: str) -> np.ndarray:
    """Float column as float64 numpy, nulls as NaN."""
    return df.get_column(column).cast(pl.Float64).fill_null(np.nan).to_numpy()


def bool_column(df: pl.DataFrame, column: str) -> np.ndarray:
    """Boolean column as numpy bool, nulls as False."""
    return df.get_column(column).fill_null(False).cast(pl.Boolean).to_numpy()
