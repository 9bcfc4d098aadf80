"""Random engine inputs of the real shape, for benchmarks and property tests.

The tables have exactly the columns of the features stage (household_features,
municipality_features); values are random but plausible. Places are the 401 real
Kreise of the reference data (AGS and population-weighted coordinates), so distances
and AGS matching behave as in a national round. Pseudonyms are synthetic.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import polars as pl

from rematch_pipeline.schemas.contract import COMMUNITY, MEDICAL, SECTOR, SETTLEMENT, TRANSPORT


def reference_kreise() -> pl.DataFrame:
    """The 401 reference districts: ags, name, population, lat, lon."""
    path = resources.files("rematch_pipeline") / "reference" / "kreise_2020_derived.csv"
    with resources.as_file(path) as p:
        df = pl.read_csv(p, schema_overrides={"ags": pl.String, "land_code": pl.String})
    return df.select(
        "ags",
        "name",
        "population",
        pl.col("lat_popweighted").alias("lat"),
        pl.col("lon_popweighted").alias("lon"),
    ).sort("ags")


def _pick_lists(
    rng: np.random.Generator, pool: list[str], n: int, p_any: float, max_k: int
) -> list[list[str]]:
    """n lists; with probability p_any a list of 1..max_k distinct items from pool."""
    out: list[list[str]] = []
    has = rng.random(n) < p_any
    ks = rng.integers(1, max_k + 1, n)
    for i in range(n):
        if has[i]:
            idx = rng.choice(len(pool), size=min(int(ks[i]), len(pool)), replace=False)
            out.append([pool[j] for j in idx])
        else:
            out.append([])
    return out


def random_municipalities(
    seed: int = 0, *, total_capacity: int = 30_000, n_places: int | None = None
) -> pl.DataFrame:
    """Municipality features for the reference Kreise with capacity spread by population."""
    rng = np.random.default_rng(seed)
    kreise = reference_kreise()
    if n_places is not None:
        kreise = kreise.head(n_places)
    n = kreise.height
    pop = kreise.get_column("population").to_numpy().astype(float)
    share = pop / pop.sum()
    capacity = np.maximum(0, np.round(total_capacity * share * rng.uniform(0.5, 1.5, n))).astype(
        np.int64
    )
    units = np.maximum(1, (capacity / 2.3).round()).astype(np.int64)
    care = []
    for _ in range(n):
        extra = [c for c in MEDICAL[1:] if rng.random() < 0.45]
        care.append(["general", *extra])
    return pl.DataFrame(
        {
            "municipality_id": kreise.get_column("ags"),
            "municipality_name": kreise.get_column("name"),
            "latitude": kreise.get_column("lat"),
            "longitude": kreise.get_column("lon"),
            "capacity_persons": capacity,
            "min_persons": np.where(rng.random(n) < 0.1, 8, 0).astype(np.int64),
            "housing_units": units,
            "largest_unit_persons": rng.integers(4, 9, n).astype(np.int64),
            "accessible_units": np.round(units * rng.uniform(0.02, 0.1, n)).astype(np.int64),
            "kita_places": np.round(capacity * rng.uniform(0.02, 0.12, n)).astype(np.int64),
            "school_places_primary": np.round(capacity * rng.uniform(0.03, 0.15, n)).astype(
                np.int64
            ),
            "school_places_secondary": np.round(capacity * rng.uniform(0.03, 0.15, n)).astype(
                np.int64
            ),
            "integration_course_places": np.round(capacity * rng.uniform(0.2, 0.6, n)).astype(
                np.int64
            ),
            "pets_allowed": rng.random(n) < 0.6,
            "medical_care": care,
            "shortage_sectors": _pick_lists(rng, list(SECTOR), n, 0.9, 5),
            "ukrainian_community": rng.choice(list(COMMUNITY), n).tolist(),
            "settlement_type": rng.choice(list(SETTLEMENT), n).tolist(),
            "public_transport": rng.choice(list(TRANSPORT), n).tolist(),
        },
        schema_overrides={"medical_care": pl.List(pl.String)},
    )


def random_households(
    n: int, seed: int = 0, *, places: pl.DataFrame | None = None, linked_share: float = 0.04
) -> pl.DataFrame:
    """n household feature rows; AGS keys refer to places (default: reference Kreise)."""
    rng = np.random.default_rng(seed + 1_000_003)
    if places is None:
        places = reference_kreise().rename(
            {"ags": "municipality_id", "lat": "latitude", "lon": "longitude"}
        )
    ids = places.get_column("municipality_id").to_list()
    lat = places.get_column("latitude").to_numpy()
    lon = places.get_column("longitude").to_numpy()
    persons = rng.choice(np.arange(1, 8), n, p=[0.25, 0.25, 0.2, 0.15, 0.08, 0.05, 0.02])
    adults = np.minimum(persons, rng.integers(1, 3, n))
    children = persons - adults
    kita = rng.binomial(children, 0.3)
    primary = rng.binomial(children - kita, 0.5)
    secondary = children - kita - primary
    wanting = rng.binomial(adults, 0.7)
    sectors_pool = [*SECTOR, "none", "student"]
    work = [rng.choice(sectors_pool, int(k)).tolist() for k in wanting]
    medical = [
        ([str(rng.choice(MEDICAL))] if rng.random() < 0.2 else []) for _ in range(n)
    ]
    tie = rng.random(n) < 0.2
    tie_idx = rng.integers(0, len(ids), n)
    importance = np.where(tie, rng.choice(["nice", "must"], n, p=[0.85, 0.15]), "none")
    pseudo = [f"hh{seed:03d}-{i:06d}" for i in range(n)]
    link = list(pseudo)
    # Pair consecutive households into link groups.
    for i in range(0, n - 1, 2):
        if rng.random() < linked_share:
            link[i + 1] = link[i]
    imp = {f: rng.integers(0, 4, n).astype(np.int64) for f in (
        "imp_jobs", "imp_schools_childcare", "imp_medical_care", "imp_community",
        "imp_big_city", "imp_quiet_rural", "imp_family_nearby",
    )}
    return pl.DataFrame(
        {
            "household_pseudonym": pseudo,
            "link_group": link,
            "persons": persons.astype(np.int64),
            "housing_units": np.ones(n, dtype=np.int64),
            "accessible_units": (rng.random(n) < 0.04).astype(np.int64),
            "kita_places": kita.astype(np.int64),
            "school_places_primary": primary.astype(np.int64),
            "school_places_secondary": secondary.astype(np.int64),
            "integration_course_places": rng.binomial(adults, 0.6).astype(np.int64),
            "medical_needs": medical,
            "pets": rng.random(n) < 0.1,
            "excluded_municipality_ids": _pick_lists(rng, ids, n, 0.1, 3),
            "preferred_municipality_ids": _pick_lists(rng, ids, n, 0.3, 3),
            "declined_municipality_ids": _pick_lists(rng, ids, n, 0.02, 1),
            "family_ties_municipality_id": [ids[j] if t else None for j, t in zip(tie_idx, tie)],
            "family_ties_importance": importance.tolist(),
            "family_tie_lat": np.where(tie, lat[tie_idx], np.nan),
            "family_tie_lon": np.where(tie, lon[tie_idx], np.nan),
            **imp,
            "work_sectors": work,
            "members_wanting_work": wanting.astype(np.int64),
            "languages": [["uk"]] * n,
        },
        schema_overrides={
            "medical_needs": pl.List(pl.String),
            "work_sectors": pl.List(pl.String),
            "excluded_municipality_ids": pl.List(pl.String),
            "preferred_municipality_ids": pl.List(pl.String),
            "declined_municipality_ids": pl.List(pl.String),
            "family_ties_municipality_id": pl.String,
        },
    ).with_columns(pl.col("family_tie_lat", "family_tie_lon").fill_nan(None))
