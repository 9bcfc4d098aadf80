"""Tests of the HTML round report (rematch_pipeline.reports.round_report)."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure

from rematch_pipeline.engine.compatibility import RULES
from rematch_pipeline.reports.round_report import (
    RESOURCES,
    RoundReportData,
    household_table,
    municipality_table,
    render_round_report,
    rule_words,
    unplaced_markdown,
)
from rematch_pipeline.wording import solved_words

EVIL_NAME = "<script>alert(1)</script> Neustadt"
SECTION_HEADINGS = (
    "Headline figures",
    "Round details",
    "Capacity use (Kapazitätsauslastung)",
    "Match scores",
    "Mean contribution per criterion",
    "Map of municipalities (Kommunen)",
    "Unplaced households",
    "Municipalities",
    "Locked and forbidden pairs",
    "Proposals to review",
)


def _municipalities() -> pl.DataFrame:
    data: dict[str, list] = {
        "municipality_id": ["01001000", "09162000", "14612000"],
        "municipality_name": ["Flensburg", EVIL_NAME, "Dresden"],
        "latitude": [54.78, 48.14, 51.05],
        "longitude": [9.44, 11.58, 13.74],
    }
    for resource, *_ in RESOURCES:
        data[f"capacity_{resource}"] = [10, 20, 0]
        data[f"used_{resource}"] = [3, 2, 0]
    # Contact data in the input must never reach the report (privacy rule E).
    data["contact_email"] = ["amt@flensburg.example", "x@y.example", "z@dresden.example"]
    return pl.DataFrame(data)


def _proposals() -> pl.DataFrame:
    return pl.DataFrame({
        "household_pseudonym": ["hp_7f3a9c", "hp_0b12de"],
        "municipality_id": ["01001000", "09162000"],
        "municipality_name": ["Flensburg", EVIL_NAME],
        "persons": [3, 2],
        "score": [0.8, 0.6],
        "score_jobs": [0.5, 0.2],
        "score_wishes": [0.3, 0.4],
    })


def _households() -> pl.DataFrame:
    return pl.DataFrame({
        "household_pseudonym": ["hp_7f3a9c", "hp_0b12de", "hp_55aa01", "hp_99cc02"],
        "persons": [3, 2, 4, 1],
        "placed": [True, True, False, False],
        "unplaced_reason": [None, None, "no_capacity", None],
        "household_ref": ["REF-SECRET-1", "REF-SECRET-2", "REF-SECRET-3", "REF-SECRET-4"],
    })


def _data(**changes: object) -> RoundReportData:
    data = RoundReportData(
        round_id="2025-07-r1",
        period="2025-07",
        created_at="2025-07-14T09:30:00+02:00",
        config={"time_limit_s": 60, "min_score": 0.1, "hmac_secret": "do-not-print-me"},
        solver={"status": "OPTIMAL", "backend": "cp-sat", "objective": 1.4, "bound": 1.414, "gap": 0.01,
                "seconds": 0.5, "candidate_pairs": 9},
        proposals=_proposals(),
        households=_households(),
        municipalities=_municipalities(),
        counts={"households_received": 6, "households_without_consent": 1, "rows_quarantined": 1,
                "households_eligible": 4},
    )
    return replace(data, **changes)


def _section_text(html: str, section_id: str) -> str:
    """Visible text of one <section>, tags stripped and whitespace collapsed."""
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert match, section_id
    text = re.sub(r"<[^>]+>", " ", match.group(1))
    return re.sub(r"\s+", " ", text.replace("\u202f", " "))


@pytest.fixture(scope="module")
def html() -> str:
    return render_round_report(_data())


def test_headline_numbers_match_input(html: str) -> None:
    text = _section_text(html, "headline")
    assert "2 / 4" in text  # households placed / eligible
    assert "50.0 % of eligible households" in text
    assert "Persons placed 5 " in text
    assert "of 10 persons in the round (50.0 %)" in text
    assert "Mean match score 0.70 " in text
    assert "OPTIMAL" in text
    assert "optimality gap 1.00 %" in text
    assert "No household was placed" not in text


def test_every_section_heading_present(html: str) -> None:
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h" in html, heading


def test_figures_are_embedded_png(html: str) -> None:
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # capacity, score histogram, criteria, map, unplaced, binding capacities
    assert len(images) == 6
    for payload in images:
        assert base64.b64decode(payload).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()


def test_every_charts_value_axis_says_its_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's report (2026-12-07): the histogram's axis read `match score (higher = better fit)` and the criteria
    chart's `mean contribution to the score per placed household`, no unit, where the text says points (of 100)."""
    from rematch_pipeline.reports import round_report

    labels: list[str] = []
    real_png = round_report._png

    def recording_png(fig: Figure) -> str:
        labels.extend(ax.get_xlabel() for ax in fig.axes if ax.get_xlabel())
        return real_png(fig)

    monkeypatch.setattr(round_report, "_png", recording_png)
    render_round_report(_data())
    score_axes = [label for label in labels if "score" in label]
    assert len(score_axes) == 2, labels
    assert all("(points" in label or "points)" in label for label in score_axes), score_axes
    assert any("%" in label for label in labels if "capacity" in label), labels


def test_pseudonym_shown_and_names_escaped(html: str) -> None:
    assert "hp_7f3a9c" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Neustadt" in html


def test_no_personal_or_secret_values(html: str) -> None:
    assert "REF-SECRET" not in html
    assert "flensburg.example" not in html
    assert "do-not-print-me" not in html
    # Unplaced households appear as counts by reason, not by pseudonym.
    assert "hp_55aa01" not in html and "hp_99cc02" not in html
    unplaced = _section_text(html, "unplaced")
    assert "no_capacity 1 4" in unplaced
    assert "(no reason recorded) 1 1" in unplaced


def test_capacity_and_municipality_tables(html: str) -> None:
    capacity = _section_text(html, "capacity")
    assert "Persons (Personen) 5 30 16.7 %" in capacity
    assert "Childcare places (Kita)" in capacity and "Integration course places (Integrationskurs)" in capacity
    table = _section_text(html, "municipalities")
    # id, name, households, persons placed, accepted earlier, used / capacity (share), mean score
    assert "01001000 Flensburg 1 3 0 3 / 10 (30 %) 0.80" in table
    assert "14612000 Dresden 0 0 0 0 / 0 (–) –" in table
    scores = _section_text(html, "scores")
    assert "jobs 0.350" in scores and "wishes 0.350" in scores


def test_output_is_deterministic(html: str) -> None:
    assert render_round_report(_data()) == html


def test_nothing_placed_still_renders() -> None:
    empty = _proposals().head(0)
    households = _households().with_columns(placed=pl.lit(False), unplaced_reason=pl.lit("no_candidate"))
    html = render_round_report(_data(proposals=empty, households=households, solver={"status": "INFEASIBLE"}))
    headline = _section_text(html, "headline")
    assert "No household was placed in this round." in headline
    assert "0 / 4" in headline
    assert "no gap reported" in headline
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h" in html, heading
    assert "No proposals in this round" in html
    assert "no_candidate 4 10" in _section_text(html, "unplaced")
    assert html.count("data:image/png;base64,") == 4  # capacity, map, unplaced, binding capacities


def test_zero_width_frames_accepted() -> None:
    html = render_round_report(_data(proposals=pl.DataFrame(), households=pl.DataFrame(), counts={}))
    assert "No household was placed in this round." in html
    assert "Every household in the round was placed." in html


def test_missing_column_names_column_not_values() -> None:
    with pytest.raises(ValueError, match="households: missing column.*placed") as err:
        render_round_report(_data(households=_households().drop("placed")))
    assert "hp_" not in str(err.value)


def test_large_round_stays_small() -> None:
    rng = np.random.default_rng(7)
    n_mun, n_hh = 401, 50_000
    ids = [f"{i:08d}" for i in range(n_mun)]
    mun: dict[str, object] = {
        "municipality_id": ids,
        "municipality_name": [f"Gemeinde {i}" for i in range(n_mun)],
        "latitude": rng.uniform(47.3, 55.0, n_mun),
        "longitude": rng.uniform(5.9, 15.0, n_mun),
    }
    for resource, *_ in RESOURCES:
        mun[f"capacity_{resource}"] = rng.integers(0, 500, n_mun)
        mun[f"used_{resource}"] = rng.integers(0, 500, n_mun)
    persons = rng.integers(1, 7, n_hh)
    placed = rng.uniform(size=n_hh) < 0.8
    pseudonyms = [f"hp_{i:08x}" for i in range(n_hh)]
    idx = np.flatnonzero(placed)
    target = rng.integers(0, n_mun, idx.size)
    proposals = pl.DataFrame({
        "household_pseudonym": [pseudonyms[i] for i in idx],
        "municipality_id": [ids[j] for j in target],
        "municipality_name": [f"Gemeinde {j}" for j in target],
        "persons": persons[idx],
        "score": rng.uniform(0, 1, idx.size),
        **{f"score_c{k}": rng.uniform(0, 0.2, idx.size) for k in range(7)},
    })
    households = pl.DataFrame({
        "household_pseudonym": pseudonyms,
        "persons": persons,
        "placed": placed,
        "unplaced_reason": [None if p else "no_capacity" for p in placed],
    })
    html = render_round_report(
        _data(proposals=proposals, households=households, municipalities=pl.DataFrame(mun), counts={})
    )
    assert len(html.encode("utf-8")) < 2_000_000
    assert html.count("<tr><td class=\"id\">") >= n_mun


def test_the_municipalities_table_keeps_its_header_in_view_at_401_rows() -> None:
    """A national round's Municipalities table has a row per district (401): scrolled in the page, its header of
    twelve columns of numbers was out of view after twenty rows (report of a 30,000-household round, 2026-12-07).
    It now scrolls in its own box with the header kept on top (and prints in full)."""
    n_mun = 401
    ids = [f"{i:05d}" for i in range(1001, 1001 + n_mun)]
    mun: dict[str, object] = {"municipality_id": ids, "municipality_name": [f"Kreis {i}" for i in range(n_mun)],
                              "latitude": np.full(n_mun, 51.0), "longitude": np.full(n_mun, 10.0)}
    for resource, *_ in RESOURCES:
        mun[f"capacity_{resource}"] = np.full(n_mun, 10)
        mun[f"used_{resource}"] = np.full(n_mun, 5)
    html = render_round_report(_data(municipalities=pl.DataFrame(mun)))
    section = html[html.index('<section id="municipalities">'):]
    section = section[: section.index("</section>")]
    box = re.search(r'<div class="([^"]*)">\s*<table[^>]*>\s*<thead><tr><th>AGS</th>', section)
    assert box, "the header row is the table's thead"
    assert section.count('<tr><td class="id">') == n_mun
    style = html[html.index("<style>"): html.index("</style>")]
    rules = dict(re.findall(r"^\s*\.([\w-]+) \{([^}]*)\}", style, re.M))
    boxed = [c for c in box.group(1).split() if "max-height" in rules.get(c, "") and "overflow: auto" in rules.get(c, "")]
    assert boxed, "the table's box has no height of its own: the page scrolls it and its header away"
    assert re.search(rf"\.{boxed[0]} thead th \{{[^}}]*position: sticky; top: 0", style), "the header stays on top"


def test_the_bounds_are_explained_in_words_and_gaps_shown_as_percentages() -> None:
    """Before, a reader saw 'Best bound 376609', 'Optimality gap 0.00405948' and 'Bound reproducible no' unexplained."""
    solver = {"status": "feasible", "persons_placed": 12046, "persons_bound": 12046.0, "total_score": 375086.83,
              "bound": 376609.49, "gap": 0.00405948, "bound_reproducible": False, "reproducible": True,
              "stage_score_gap": 0.00405948}
    html = render_round_report(_data(solver=solver, config={"objective": "lexicographic"}))
    text = _section_text(html, "headline")
    assert "Persons: 12 046 placed; no assignment of this round can place more than 12 046 (proven: none places more)." in text
    assert "no assignment placing as many persons can exceed 376 609.49 (the bound), so the answer is at most 0.41 % below" in text
    assert "a repeat of the round proposes the same, but may report a slightly different bound and gap" in text
    details = _section_text(html, "details")
    assert "Optimality gap 0.41 %" in details and "Optimality gap, last stage: total score 0.41 %" in details
    short = {**solver, "persons_placed": 12040, "gap": 0.0, "bound_reproducible": True}
    text = _section_text(render_round_report(_data(solver=short)), "headline")
    assert "so at most 6 more could be placed." in text and "proven the best possible for this many persons (gap 0 %)" in text
    assert "different bound" not in text
    # A round the time limit cut short (an exact round's stage, status feasible) has neither its answer nor its
    # bound settled: the report said both "a repeat proposes the same" and "a repeat may propose otherwise".
    cut = {**solver, "reproducible": False, "bound_reproducible": False}
    text = _section_text(render_round_report(_data(solver=cut, config={"objective": "lexicographic"})), "headline")
    assert "a repeat of the round may propose otherwise" in text and "proposes the same" not in text
    # The score stage found no answer in the time limit (CBC, 600 households, 20 s): the round kept stage 1's
    # answer (mean score 50 where 72 was reached with 60 s) and the report said only "no gap reported".
    unsolved = {**cut, "gap": None, "bound": None, "stage_score_gap": None, "stage_persons_status": "optimal",
                "stage_score_status": "not_solved"}
    for objective in ("lexicographic", "maximin"):
        html = render_round_report(_data(solver=unsolved, config={"objective": objective}))
        assert "before the solver found any answer for the total score" in _section_text(html, "headline")
        # It said the engine's word, `not_solved`, beside the other stages' words.
        assert "Status, last stage: total score no answer within the time limit" in _section_text(html, "details")
    assert "found any answer" not in _section_text(render_round_report(_data(solver=solver)), "headline")
    # A maximin round says what it reached on its own objective, the lowest score (it said nothing of it).
    maximin = {**solver, "stage_min_score_value": 20.1389, "stage_min_score_bound": 38.8889}
    text = _section_text(render_round_report(_data(solver=maximin, config={"objective": "maximin"})), "headline")
    assert "Lowest score: every placed household scores at least 20.14 points (linked households: on average over their group);" in text
    assert "can raise that above 38.89 (the bound)" in text
    # Its score stage maximises the total among assignments keeping the lowest score: its gap is said in those
    # words (it was left out, so a maximin round whose score stage was cut said nothing of its total score).
    assert "no assignment placing as many persons with no household below the lowest score can exceed" in text
    # Without a score stage answer the proposals are the lowest-score stage's, improved by exchanges only.
    html = render_round_report(_data(solver=unsolved, config={"objective": "maximin"}))
    assert "keep the lowest score below, and their scores were only improved by swapping households" in _section_text(html, "headline")


def _reasons() -> pl.DataFrame:
    """Why households did not come, per municipality (assets.reports.municipality_reasons' shape)."""
    return pl.DataFrame({
        "municipality_id": ["01001000", "09162000", "14612000"],
        "compatible_households": [3, 2, 0],
        "excluded_households": [1, 2, 4],
        "main_rule": ["pets", "medical_care", "resource"],
        "main_rule_households": [1, 2, 4],
        "missed_persons": [0, 1, 0],
        "missed_kita_places": [2, 0, 0],
    })


def test_binding_capacities_are_pictured_and_named_in_words() -> None:
    """A municipality's view: which capacities are full and which ones unplaced households lacked there,
    in the report's resource names and as a picture. Before, the table spelled out every full capacity
    in a cell that wrapped over eight lines, pushed the last columns out of view, and showed the lacked
    capacity by its column name (kita_places: 2)."""
    mun = _municipalities().with_columns(
        pl.Series("used_kita_places", [10, 2, 0]), pl.Series("used_persons", [10, 2, 0])
    )
    html = render_round_report(_data(municipalities=mun, municipality_reasons=_reasons()))
    section = html.split('<section id="municipalities">')[1].split("</section>")[0]
    text = _section_text(html, "municipalities")
    images = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', section)
    assert images and "binding" in images[0].lower()
    assert "kita_places" not in text and "Kita: 2" in text
    assert '<span class="chip">Kita</span>' in section and '<span class="chip">Persons</span>' in section
    assert "Left: per resource, how many of the municipalities that offer it have all of it in use" in text and "Right: unplaced" in text
    # Without unplaced households short of a capacity the figure has one panel: its caption said "Left: per resource,
    # in how many of the municipalities … uses all of it" beside no right panel (the demo's report, 2026-12-07).
    none_missed = _reasons().with_columns(pl.Series("missed_persons", [0, 0, 0]), pl.Series("missed_kita_places", [0, 0, 0]))
    text = _section_text(render_round_report(_data(municipalities=mun, municipality_reasons=none_missed)), "municipalities")
    assert "Which capacities bind. Per resource, how many of the municipalities that offer it" in text and "Left:" not in text


def test_declined_households_counted_in_grammatical_sentences() -> None:
    decisions = {"declined_households": 1, "declined_placed_elsewhere": 1, "declined_unplaced": 0}
    text = _section_text(render_round_report(_data(earlier_decisions=decisions)), "headline")
    assert "1 household of this round declined an earlier proposal: 1 is proposed elsewhere now" in text
    assert "0 received no proposal" not in text


def test_unplaced_reasons_grouped_by_capacity_with_the_places_named() -> None:
    """A national round's unplaced households lack a capacity at hundreds of places: one row per
    (resource, place) made the table and its chart hundreds of rows long, with bare AGS keys. Now one
    row per reason, and the places where it happened most, by name."""
    households = pl.DataFrame({
        "household_pseudonym": ["hp_7f3a9c", "hp_0b12de", "hp_1", "hp_2", "hp_3", "hp_4"],
        "persons": [3, 2, 2, 1, 4, 1],
        "placed": [True, True, False, False, False, False],
        "unplaced_reason": [None, None, "capacity: persons exhausted at 01001000", "capacity: persons exhausted at 01001000",
                            "capacity: persons exhausted at 09162000", "no compatible municipality (mostly: pets)"],
    })
    text = _section_text(render_round_report(_data(households=households)), "unplaced")
    assert "capacity: persons exhausted 3 7" in text
    assert "Flensburg (01001000): 2" in text and "(09162000): 1" in text
    assert "no compatible municipality (mostly: pets not allowed) 1 1" in text  # the rule in words (thirty-second session)
    assert "exhausted at 01001000" not in text



def test_households_short_of_the_same_capacities_are_one_reason_whatever_ran_out_most() -> None:
    """Seen in a coordinator's August round: engine.diagnosis names the resources short largest shortfall first,
    so `Kita places and integration course places` (11 households) and `integration course places and Kita
    places` (4) were two rows of the unplaced table, of households.csv's reasons and of the UI's summary. Now
    one reason, its resources in the order of the capacity columns."""
    households = pl.DataFrame({
        "household_pseudonym": ["hp_7f3a9c", "hp_0b12de", "hp_1", "hp_2", "hp_3", "hp_4"],
        "persons": [3, 2, 2, 1, 4, 3],
        "placed": [True, True, False, False, False, False],
        "unplaced_reason": [None, None,
                            "capacity: kita_places and integration_course_places exhausted at 01001000",
                            "capacity: integration_course_places and kita_places exhausted at 01001000",
                            "capacity: integration_course_places and persons and kita_places exhausted at 09162000",
                            "capacity: persons and integration_course_places and kita_places exhausted at 09162000"],
    })
    data = _data(households=households)
    text = _section_text(render_round_report(data), "unplaced")
    assert "capacity: Kita places and integration course places exhausted 2 3 Flensburg (01001000): 2" in text
    assert "capacity: persons and Kita places and integration course places exhausted 2 7" in text
    assert "integration course places and Kita places" not in text
    exported = dict(household_table(data).select("household_pseudonym", "unplaced_reason").iter_rows())
    assert exported["hp_1"] == exported["hp_2"] == "capacity: kita_places and integration_course_places exhausted"
    assert exported["hp_3"] == exported["hp_4"] == "capacity: persons and kita_places and integration_course_places exhausted"
    summary = unplaced_markdown(data)
    assert "| capacity: kita_places and integration_course_places exhausted | 2 | 3 |" in summary
    assert summary.count("| capacity:") == 2


def test_where_more_capacity_would_help_names_the_place_beside_its_ags() -> None:
    """The report names a municipality `Flensburg (01001000)` everywhere but in these lines, which said `in 01001000`."""
    offers = ["1 more integration course place in 01001000 would place 1 more household (1 person)",
              "2 more Kita places in 99999 would place 1 more household (3 persons)"]
    households = pl.DataFrame({
        "household_pseudonym": ["hp_7f3a9c", "hp_0b12de", "hp_1"], "persons": [3, 2, 1], "placed": [True, True, False],
        "unplaced_reason": [None, None, "capacity: integration_course_places exhausted at 01001000"],
    })
    text = _section_text(render_round_report(_data(households=households, capacity_offers=offers)), "unplaced")
    assert "1 more integration course place in Flensburg (01001000) would place 1 more household (1 person)" in text
    assert "2 more Kita places in 99999 would place" in text  # a key the round does not know stays as it is

def test_the_coordinators_locks_and_forbids_are_listed_and_locked_proposals_marked() -> None:
    proposals = _proposals().with_columns(locked=pl.Series([True, False]))
    pairs = pl.DataFrame(
        {"kind": ["forbidden", "locked"], "entry": [0, 0], "household_pseudonym": ["hp_55aa01", "hp_7f3a9c"], "municipality_id": ["14612000", "01001000"]}
    )
    html = render_round_report(_data(proposals=proposals, coordinator_pairs=pairs))
    section = _section_text(html, "coordinator")
    assert "1 locked, 1 forbidden; 1 proposal (3 persons) of this round are locked." in section
    # Locks first; the forbidden pair is named by pseudonym and AGS, like proposals, and was not proposed.
    assert "locked_pairs[0] hp_7f3a9c Flensburg (01001000) proposed forbidden_pairs[0] hp_55aa01 Dresden (14612000) not proposed" in section
    review = _section_text(html, "review")
    assert "hp_0b12de" in review and review.count(" locked ") == 1
    assert "hp_7f3a9c Flensburg (01001000) 3 0.80 locked" in review
    # A round without pairs, or rendered from tables of a release before locks, says so.
    assert "locked and forbade no pairs" in _section_text(render_round_report(_data()), "coordinator")


def test_round_parameters_and_solver_rows_have_readable_labels_with_units() -> None:
    """Before, the tables printed key names ('Time limit seconds', 'Stage persons gap', 'Relative gap 0.0001')."""
    config = {"period": "2026-07", "objective": "lexicographic", "backend": "cbc", "time_limit_seconds": 60.0,
              "relative_gap": 0.0001, "reproducible": True, "wall_limit_seconds": None, "compare_mechanisms": True,
              "place_every_household": False, "weight_jobs": 1.0, "weight_schools_childcare": 2.0, "weight_family_nearby": 0.0}
    solver = {"status": "optimal", "round_id": "r1", "persons_bound": 62.0, "bound_reproducible": True,
              "households": 30, "households_placed": 25, "municipalities": 4, "seconds": 0.4,
              "stage_persons_gap": 0.0, "stage_score_gap": 0.002, "stage_min_score_gap": 0.0}
    details = _section_text(render_round_report(_data(config=config, solver=solver)), "details")
    for text in ("Time limit per round, all solver stages (seconds) 60", "Stop when the optimality gap is below 0.01 %",
                 "Wall-clock limit (seconds) –", "Weight: schools and childcare (Kita) 2",
                 "Weight: family nearby 0", "Compare with deferred acceptance yes",
                 "Every household placed (exactly one municipality each, else the round fails) no",
                 "Persons bound (most persons any assignment could place) 62",
                 "Optimality gap, first stage: persons placed 0.00 %", "Optimality gap, last stage: total score 0.20 %",
                 "Optimality gap, maximin stage: lowest household score 0.00 %",
                 "Households in the round 30", "Run time (seconds) 0.4",
                 # A demo round read `Reproducible budgets (counted work, not wall-clock time) yes` and, in the Solver
                 # table, `Reproducible (a repeat proposes the same) no`: the option covers large rounds only.
                 "Reproducible budgets for large rounds (counted work, not wall-clock time) yes"):
        assert text in details, text
    assert "_" not in re.sub(r"<[^>]+>", "", details.split("Solver")[0].split("Round parameters")[1])
    assert not re.search(r"Stage \w+ gap|Time limit seconds|Weight jobs", details)


def test_municipalities_csv_says_the_minimum_intake_the_round_had_to_meet() -> None:
    """A municipality with a minimum intake may receive nobody though it has room: the file says what the minimum
    was (0 when the round's municipalities carry none, as rounds before it)."""
    with_minimum = _municipalities().with_columns(min_persons=pl.Series([0, 8, 0]))
    table = municipality_table(_data(municipalities=with_minimum))
    assert table.select("municipality_id", "min_persons_this_round").rows() == [("01001000", 0), ("09162000", 8), ("14612000", 0)]
    assert municipality_table(_data())["min_persons_this_round"].to_list() == [0, 0, 0]


def test_the_unplaced_chart_gives_every_reason_its_own_readable_row() -> None:
    """A tight round of 995 households had 30 reasons (the capacities short at the nearest miss, largest first):
    the chart kept its 3.5-inch height, so 30 labels overlapped, and each was cut to `capacity: persons and
    housing_units e…`, the same for 28 of them. Now the chart grows per reason and a capacity reason is labelled by
    the resources short (the table beside it keeps the full reason)."""
    from rematch_pipeline.reports.round_report import _reason_label

    shortages = [
        [first, second, third]
        for first in ("persons", "kita_places")
        for second in ("housing_units", "integration_course_places", "school_places_primary")
        for third in ("school_places_secondary", "accessible_units", "kita_places", "persons", "housing_units")
        if len({first, second, third}) == 3
    ]
    # One reason per set of resources short, whatever their order (the reasons are grouped by the set).
    shortages = [short for i, short in enumerate(shortages) if set(short) not in [set(s) for s in shortages[:i]]]
    reasons = [f"capacity: {' and '.join(short)} exhausted at 01001000" for short in shortages]
    households = pl.DataFrame({
        "household_pseudonym": [f"hp_{i}" for i in range(len(reasons))],
        "persons": [1] * len(reasons),
        "placed": [False] * len(reasons),
        "unplaced_reason": reasons,
    })
    html = render_round_report(_data(households=households, proposals=_proposals().clear()))
    section = re.search(r'<section id="unplaced">(.*?)</section>', html, re.S).group(1)
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', section).group(1))
    height = int.from_bytes(png[20:24], "big")  # IHDR: width, then height
    assert len(reasons) >= 19 and height >= 25 * len(reasons), "at least a quarter inch (25 px at 100 dpi) per reason"
    labels = [_reason_label(r.removesuffix(" at 01001000")) for r in reasons]
    assert len(set(labels)) == len(labels) and all(len(label) <= 56 for label in labels)
    assert _reason_label("capacity: persons and housing_units and school_places_secondary exhausted") == "short of Persons, Housing, Secondary"
    assert _reason_label("no compatible municipality (mostly: family_tie_must)") == "no compatible municipality (mostly: family_tie_must)"
    assert _reason_label("capacity: persons and housing_units and accessible_units and kita_places and school_places_primary and"
                         " school_places_secondary exhausted") == "short of Persons, Housing, Accessible, Kita, Primary, S…"


def test_a_municipality_that_offers_none_of_a_capacity_says_so_where_it_keeps_households_out() -> None:
    """Trying a round where a municipality offered 0 places: its row read `resource_housing_units (395)` under
    "rule keeping most out", beside "Full: –" (full counts only capacities offered), so nothing said it had
    offered none. Now the rule says `none offered`; a capacity offered and used up keeps the plain rule."""
    reasons = _reasons().with_columns(pl.Series("main_rule", ["resource_persons", "medical_care", "resource_housing_units"]))
    text = _section_text(render_round_report(_data(municipalities=_municipalities(), municipality_reasons=reasons)), "municipalities")
    assert "no housing units offered (4)" in text  # Dresden offers 0 of everything
    assert "needs more persons than offered (1)" in text and "no persons offered" not in text  # Flensburg offers 10


def test_a_municipality_filled_by_accepted_proposals_says_so_where_it_keeps_households_out() -> None:
    """Played as a coordinator (thirty-eighth session): after a decisions file accepted every proposal to Starnberg
    (23 persons offered, 23 accepted), the next round's row read `needs more persons than offered (866)` for
    households of 1-6 persons: the rule is judged on what accepted proposals left. Now it says so."""
    reasons = _reasons().with_columns(pl.Series("main_rule", ["resource_persons", "medical_care", "resource_housing_units"]))
    municipalities = _municipalities().with_columns(pl.Series("accepted_persons", [10, 0, 0]))
    text = _section_text(render_round_report(_data(municipalities=municipalities, municipality_reasons=reasons)), "municipalities")
    assert "needs more persons than left after accepted proposals (1)" in text  # Flensburg: 10 offered, 10 accepted
    assert "needs more persons than offered" not in text and "no housing units offered (4)" in text


def test_the_duplicates_count_says_that_an_export_landed_again_counts_each_row() -> None:
    """Played as a coordinator (thirty-eighth session): one household corrected in KoboToolbox and the form exported
    again, and the next report said `Household duplicates resolved 890` of 900, read as 890 problems."""
    counts = {"households_received": 900, "household_duplicates_resolved": 890, "municipality_duplicates_resolved": 0}
    text = _section_text(render_round_report(_data(counts=counts)), "details")
    assert "Household questionnaires replaced by a later copy or correction (an export landed again counts each of its households) 890" in text
    assert "duplicates resolved" not in text


def test_the_rule_keeping_most_out_reads_in_words_with_its_name_in_the_tooltip() -> None:
    """Walked in the browser (twenty-eighth session): the Municipalities table named the rule by its code
    (`medical_care (2)`, `family_tie_must`), which an evaluator has to look up. Now every hard rule of the engine has
    words, and the code stays in the cell's tooltip (the name in logs, docs and the round's exports)."""
    for rule in RULES:
        assert rule_words(rule) != rule and "_" not in rule_words(rule), rule
    reasons = _reasons().with_columns(pl.Series("main_rule", ["family_tie_must", "medical_care", "resource_kita_places"]))
    html = render_round_report(_data(municipalities=_municipalities(), municipality_reasons=reasons))
    text = _section_text(html, "municipalities")
    assert "too far from a family tie marked must (1)" in text and "medical care needed is not offered (2)" in text
    assert "family_tie_must" not in text and 'title="family_tie_must"' in html


def test_the_solver_status_reads_as_the_runs_log_and_metadata_say_it() -> None:
    """The status card and the details table said the solver's word, `feasible` (read as "it worked"), where the
    run's log and metadata say "best found within the time limit (not proven best)"."""
    solver = {"status": "feasible", "gap": 0.0011, "stage_persons_status": "optimal", "stage_score_status": "feasible"}
    html = render_round_report(_data(solver=solver))
    headline = _section_text(html, "headline")
    assert "best found within the time limit" in headline and "not proven best; optimality gap 0.11 %" in headline
    details = _section_text(html, "details")
    assert f"Status {solved_words('feasible')}" in details
    assert "Status, first stage: persons placed optimal (proven best within relative_gap)" in details
    assert "Status, last stage: total score best found within the time limit (not proven best)" in details
    assert ">feasible<" not in html


def test_a_national_rounds_totals_read_in_full_not_in_scientific_notation() -> None:
    """The national round's report said `Total score (points) 3.84169e+06`, `Best bound (points) 3.84364e+06` and
    `Persons bound 120545`: a coordinator comparing two rounds could not see the 1,953 points between them."""
    solver = {"status": "feasible", "objective": 3841689.9487, "bound": 3843643.1624, "total_score": 3841689.9487,
              "persons_bound": 120545.0, "gap": 0.0005084, "seconds": 469.828}
    mechanisms = {"optimiser": {"total_score": 3841689.9487, "persons_placed": 120545},
                  "deferred_acceptance": {"total_score": 3618130.25, "persons_placed": 116184}}
    html = render_round_report(_data(solver=solver, mechanisms=mechanisms))
    details = _section_text(html, "details")
    assert "Total score (points) 3 841 689.95 " in details
    assert "Best bound (points) 3 843 643.16 " in details
    assert "120 545" in details and "120545" not in details
    assert "Run time (seconds) 469.828 " in details
    assert "Total score 3 841 689.95 3 618 130.25 " in _section_text(html, "stability")
    assert "e+0" not in details + _section_text(html, "stability")


def test_a_backend_the_round_did_not_use_says_so() -> None:
    """A national round's parameters said `Solver (backend) cbc` while the solver table said `ortools-scip+lagrangian`:
    an evaluator read that CBC had solved a round of 15 M pairs."""
    large = _section_text(render_round_report(_data(config={"backend": "cbc"}, solver={"status": "feasible", "backend": "ortools-scip+lagrangian"})), "details")
    assert "Solver (backend) cbc (not used: rounds this large go to the large-round method, ortools-scip+lagrangian)" in large
    for used in ("ortools-cbc", "ortools-cbc+scip+lagrangian"):  # the exact path; maximin on a reduced pair set
        text = _section_text(render_round_report(_data(config={"backend": "cbc"}, solver={"status": "feasible", "backend": used})), "details")
        assert "Solver (backend) cbc " in text and "not used" not in text


def test_a_period_left_empty_names_the_period_the_round_matched() -> None:
    """Walked in the browser (twenty-eighth session): a round launched with `period` left empty (the latest period
    with offers) showed `Intake period` with nothing beside it under Round parameters."""
    text = _section_text(render_round_report(_data(config={"period": ""}, solver={"status": "optimal", "period": "2026-07"})), "details")
    assert "Intake period 2026-07 (left empty: the latest period with offers)" in text
    typed = _section_text(render_round_report(_data(config={"period": "2026-07"}, solver={"status": "optimal", "period": "2026-07"})), "details")
    assert "left empty" not in typed


def test_the_criteria_read_in_words_in_the_table_and_the_chart() -> None:
    """The demo's report listed its criteria by code (`medical_care 12.072`, `schools_childcare`, `neutral 0.000`)
    under "Mean contribution per criterion" (twenty-eighth session): the weights' labels had words, the table not."""
    proposals = _proposals().with_columns(
        pl.Series("score_medical_care", [0.1, 0.2]), pl.Series("score_schools_childcare", [0.2, 0.1]), pl.Series("score_neutral", [0.0, 0.0])
    )
    text = _section_text(render_round_report(_data(proposals=proposals)), "scores")
    for words in ("medical care", "schools and childcare (Kita)", "neutral (no preference stated)", "named wishes", "jobs"):
        assert words in text, words
    assert "medical_care" not in text and "schools_childcare" not in text


_KEY = {"key": "population", "households": 9, "households_placed": 8, "persons_placed": 21, "households_forbidden": 5,
        "households_allowed": 3, "total_score": 150.0, "mean_score": 50.0,
        "forbidden_by_rule": {"largest_unit": 0, "medical_care": 1, "pets": 1, "excluded": 1, "declined": 0,
                              "family_tie_must": 0, "resource_accessible_units": 1, "linked_split": 2},
        "places_below_minimum_intake": 1, "places_over_capacity": 2}


def test_the_stability_section_sets_the_fixed_distribution_key_beside_the_mechanisms() -> None:
    """Evaluators asked what today's quota would have done with the same households: the report showed only the
    optimiser and deferred acceptance."""
    mechanisms = {"optimiser": {"households_placed": 4, "persons_placed": 9, "total_score": 260.0, "blocking_pairs": 1},
                  "deferred_acceptance": {"households_placed": 4, "persons_placed": 9, "total_score": 240.0, "blocking_pairs": 0},
                  "distribution_key": _KEY}
    html = render_round_report(_data(mechanisms=mechanisms))
    text = _section_text(html, "stability")
    assert "Fixed distribution key" in text
    assert (
        "The fixed key: 5 households to a place a hard rule forbids (medical care needed is not offered 1; pets not allowed 1;"
        " excluded by the household 1; needs more wheelchair-accessible units than offered 1; linked households split 2;"
        " one household can break several)."
    ) in text
    assert "in proportion to the population of each municipality (reference 2020)" in text
    assert "2 municipalities get more dwellings" in text
    # Optimiser and deferred acceptance place only pairs the rules allow; their mean is the score per household.
    assert "Households placed where a hard rule forbids it 0 0 5 " in text
    assert "Mean score of the households placed where the rules allow 65.00 60.00 50.00 " in text
    assert "Households placed 4 4 8 " in text
    # The key has no stability counts: a dash, not a zero that would read as "stable".
    assert "Blocking pairs (a household and a municipality that would both rather be together) 1 0 – " in text


def test_a_round_stored_before_the_key_shows_two_columns() -> None:
    mechanisms = {"optimiser": {"households_placed": 4}, "deferred_acceptance": {"households_placed": 3}}
    text = _section_text(render_round_report(_data(mechanisms=mechanisms)), "stability")
    assert "Fixed distribution key" not in text and "The fixed key" not in text
    assert "Households placed 4 3 " in text


def test_unplaced_reasons_read_in_words_with_the_code_in_the_tooltip() -> None:
    """report.html's unplaced table said `(mostly: family_tie_must)` and `capacity: persons and housing_units
    exhausted`, the names in code; households.csv and the Dagster UI's summary keep them (read by machines, named in
    the docs, filtered on in a spreadsheet)."""
    households = pl.DataFrame({
        "household_pseudonym": ["hp_7f3a9c", "hp_0b12de", "hp_1", "hp_2"],
        "persons": [3, 2, 2, 1],
        "placed": [True, True, False, False],
        "unplaced_reason": [None, None, "capacity: persons and housing_units exhausted at 01001000", "no compatible municipality (mostly: family_tie_must)"],
    })
    data = _data(households=households)
    html = render_round_report(data)
    text = _section_text(html, "unplaced")
    assert "capacity: persons and housing units exhausted 1 2 Flensburg (01001000): 1" in text
    assert "no compatible municipality (mostly: too far from a family tie marked must) 1 1" in text
    assert "family_tie_must" not in text and "housing_units" not in text
    assert 'title="no compatible municipality (mostly: family_tie_must)"' in html
    # The Dagster UI's summary lists the reasons as households.csv does, to be found there (test_round_exports).
    assert "| no compatible municipality (mostly: family_tie_must) | 1 | 1 |" in unplaced_markdown(data)
    exported = household_table(data).filter(pl.col("household_pseudonym") == "hp_2")["unplaced_reason"].item()
    assert exported == "no compatible municipality (mostly: family_tie_must)"



def test_the_keys_stability_counts_and_the_coordinators_pairs_it_kept_are_shown() -> None:
    """The key's column showed a dash for blocking pairs and justified envy, and the report did not say whether the
    key kept the coordinator's locked and forbidden pairs (thirty-second session)."""
    key = {**_KEY, "households_locked": 2, "blocking_pairs": 7, "units_in_blocking_pairs": 6,
           "units_with_justified_envy": 5, "justified_envy": 11}
    mechanisms = {"optimiser": {"households_placed": 4, "blocking_pairs": 1, "units_in_blocking_pairs": 1,
                                "units_with_justified_envy": 1, "justified_envy": 2},
                  "deferred_acceptance": {"households_placed": 4, "blocking_pairs": 0, "units_in_blocking_pairs": 0,
                                          "units_with_justified_envy": 0, "justified_envy": 0},
                  "distribution_key": key}
    text = _section_text(render_round_report(_data(mechanisms=mechanisms)), "stability")
    assert "Blocking pairs (a household and a municipality that would both rather be together) 1 0 7 " in text
    assert "Justified envy (pairs of units) 2 0 11" in text
    forbids = "no household goes where the coordinator forbade it or a household linked to it."
    assert (
        "locks and forbids (Locks and forbids):"
        " 2 locked households go to their municipality first, counted against its share, and " + forbids
    ) in text
    assert "counts as placed nowhere acceptable" in text
    # None locked: said so in a sentence of its own, not "0 locked households" nor "was locked; and".
    none = _section_text(render_round_report(_data(mechanisms={**mechanisms, "distribution_key": {**key, "households_locked": 0}})), "stability")
    assert (
        "No household was locked. As the optimiser and deferred acceptance do, it keeps the coordinator"
    ) in none and "forbids (Locks and forbids): " + forbids in none
    assert "0 locked" not in none and "locked;" not in none


def test_the_report_says_the_key_shared_persons_between_lander_by_the_koenigsteiner_schluessel() -> None:
    """The key applied the population across the whole round; now the Länder step comes first (solver.json key
    koenigstein+population, or koenigstein+capacity_persons when a municipality has no reference population)."""
    mechanisms = {"optimiser": {"households_placed": 4}, "deferred_acceptance": {"households_placed": 4}}
    for within, words in (
        ("population", "the population of each municipality (reference 2020)"),
        ("capacity_persons", "the persons capacity each municipality offered (a municipality of the round has no reference population)"),
    ):
        key = {**_KEY, "key": "koenigstein+" + within}
        text = _section_text(render_round_report(_data(mechanisms={**mechanisms, "distribution_key": key})), "stability")
        assert (
            "shares the persons of the pool out between the Länder of the round by the Königsteiner Schlüssel (2017),"
            " then within each Land in proportion to " + words + ", both steps by largest remainder, and sends"
        ) in text
    # A round stored before the Länder step (or of municipalities of no known Land) reads as before.
    text = _section_text(render_round_report(_data(mechanisms={**mechanisms, "distribution_key": _KEY})), "stability")
    assert "out in proportion to the population of each municipality (reference 2020), by largest remainder, and sends" in text
    assert "Königsteiner" not in text
