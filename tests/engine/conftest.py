"""Fixtures of the engine tests."""

from __future__ import annotations

import polars as pl
import pytest

from tests.engine.builders import municipalities_df, municipality


@pytest.fixture()
def three_places() -> pl.DataFrame:
    """Three unconstrained municipalities (Kreis keys)."""
    return municipalities_df(municipality("01001"), municipality("01002"), municipality("01003"))
