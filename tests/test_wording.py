"""Counts before nouns read right in the singular and the plural (the last trial saw `1 more persons`)."""

from __future__ import annotations

import numpy as np

from rematch_pipeline.engine.diagnosis import CapacityOffer
from rematch_pipeline.wording import counted, elapsed, plural, resource_counted


def test_a_count_of_one_takes_the_singular_and_others_the_plural() -> None:
    assert counted(1, "person") == "1 person" and counted(2, "person") == "2 persons" and counted(0, "household") == "0 households"
    assert counted(1, "municipality") == "1 municipality" and counted(3, "municipality") == "3 municipalities"
    assert counted(1, "stored row does", "stored rows do") == "1 stored row does"
    assert counted(np.int64(1), "file") == "1 file"
    assert plural("Dagster run") == "Dagster runs" and plural("day") == "days" and plural("box") == "boxes"


def test_a_resource_count_names_the_resource_in_words() -> None:
    assert resource_counted(1, "persons", more=True) == "1 more person"
    assert resource_counted(3, "kita_places", more=True) == "3 more Kita places"
    assert resource_counted(1, "housing_units") == "1 housing unit"


def test_a_capacity_offer_of_one_reads_in_the_singular() -> None:
    offer = CapacityOffer(place="09160", resource="persons", extra=1, units=1, households=1, persons=1)
    assert offer.sentence() == "1 more person in 09160 would place 1 more household (1 person)"
    offer = CapacityOffer(place="09160", resource="kita_places", extra=2, units=2, households=3, persons=7)
    assert offer.sentence() == "2 more Kita places in 09160 would place 3 more households (7 persons)"


def test_elapsed_reads_as_minutes_and_seconds_from_a_minute_on() -> None:
    assert [elapsed(s) for s in (0.4, 45.9, 60, 125.2, 586)] == ["0 s", "45 s", "1 min 0 s", "2 min 5 s", "9 min 46 s"]
