"""Self-contained HTML report of one matching round.

The report is read by coordinators, evaluators and municipal staff. It is one HTML file
with inline CSS and figures embedded as base64 PNG, so it can be mailed or archived
without anything else. Privacy (spec section E): only the columns named in
:class:`RoundReportData` are read, households appear by pseudonym only, and unplaced
households are shown as counts by reason, never one by one.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import matplotlib.ticker
import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rematch_pipeline.wording import counted, plural, resource_noun, rule_words, solved_words

__all__ = ["RESOURCES", "RoundReportData", "household_table", "municipality_table", "render_round_report", "write_round_report"]

# (resource, short label for charts, label for tables). Order follows the questionnaire.
RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("persons", "Persons", "Persons (Personen)"),
    ("housing_units", "Housing units", "Housing units (Wohnungen)"),
    ("accessible_units", "Accessible units", "Wheelchair-accessible units (barrierefrei)"),
    ("kita_places", "Kita places", "Childcare places (Kita)"),
    ("school_places_primary", "School, primary", "Primary school places (Grundschule)"),
    ("school_places_secondary", "School, secondary", "Secondary school places (Sekundarstufe)"),
    ("integration_course_places", "Integration course", "Integration course places (Integrationskurs)"),
)


# One word per resource for the Municipalities table, where a cell lists several of them.
_CHIPS: dict[str, str] = {
    "persons": "Persons",
    "housing_units": "Housing",
    "accessible_units": "Accessible",
    "kita_places": "Kita",
    "school_places_primary": "Primary",
    "school_places_secondary": "Secondary",
    "integration_course_places": "Course",
}

PROPOSAL_COLUMNS = ("household_pseudonym", "municipality_id", "municipality_name", "persons", "score")
HOUSEHOLD_COLUMNS = ("household_pseudonym", "persons", "placed", "unplaced_reason")
MUNICIPALITY_COLUMNS = ("municipality_id", "municipality_name", "latitude", "longitude")

TOP_MUNICIPALITIES = 15
# The full proposal list can hold 50,000 rows; the report only lists the weakest matches
# so the file stays small. The complete list belongs in the proposals export.
REVIEW_PROPOSALS = 50

# An unplaced reason that names the place of a capacity miss (engine.diagnosis): reason, AGS.
_PLACED_REASON = r"^(.*) at (\d{5}|\d{8})$"
_CAPACITY_REASON = r"^capacity: (.+) exhausted$"
# Places named per reason in the unplaced table (the Municipalities table has them all).
_WHERE_PLACES = 3

# Germany's extent (spec) with a small margin, and the mean latitude for the aspect ratio.
_LON_LIMITS = (5.5, 15.4)
_LAT_LIMITS = (47.0, 55.3)
_MID_LAT = 51.15
# Marker area (pt²) for the map: 401 points must not merge into one blob.
_MAP_MIN_SIZE = 10.0
_MAP_SIZE_RANGE = 140.0

# Config keys that could hold a secret (e.g. the pseudonymisation key) are never printed.
_SECRET_KEY = re.compile(r"secret|password|passwd|token|hmac|credential|api_?key", re.IGNORECASE)

_SOLVER_LABELS: dict[str, str] = {
    "round_id": "Round",
    "period": "Intake period",
    "status": "Status",
    "backend": "Solver (backend)",
    "objective": "Objective value (points)",
    "bound": "Best bound (points)",
    "persons_bound": "Persons bound (most persons any assignment could place)",
    "gap": "Optimality gap",
    "reproducible": "Reproducible (a repeat proposes the same)",
    "bound_reproducible": "Bound reproducible (a repeat reports the same bound and gap)",
    "seconds": "Run time (seconds)",
    "persons_placed": "Persons placed",
    "total_score": "Total score (points)",
    "households": "Households in the round",
    "households_placed": "Households placed",
    "municipalities": "Municipalities (Kommunen)",
    "units": "Placement units (households or linked groups)",
    "candidate_pairs": "Candidate pairs (household × Kommune)",
    # The lexicographic stages (engine.assignment): persons first, maximin's lowest score, then the total score.
    "stage_persons_gap": "Optimality gap, first stage: persons placed",
    "stage_min_score_gap": "Optimality gap, maximin stage: lowest household score",
    "stage_score_gap": "Optimality gap, last stage: total score",
    "stage_persons_status": "Status, first stage: persons placed",
    "stage_min_score_status": "Status, maximin stage: lowest household score",
    "stage_score_status": "Status, last stage: total score",
    "stage_min_score_value": "Lowest household score reached (maximin stage, points)",
    "stage_min_score_bound": "Lowest household score bound (maximin stage, points)",
}
# Round parameters (assets.matching.RoundConfig) as a reader of the report knows them, with units.
_CONFIG_LABELS: dict[str, str] = {
    "period": "Intake period",
    "objective": "Objective (lexicographic: persons, then score; maximin: worst-off first)",
    "backend": "Solver (backend)",
    "time_limit_seconds": "Time limit per round, all solver stages (seconds)",
    "relative_gap": "Stop when the optimality gap is below",
    # Only large rounds budget counted work (RoundConfig.reproducible): the demo's report read `… yes` beside the
    # Solver table's `Reproducible (a repeat proposes the same) no`.
    "reproducible": "Reproducible budgets for large rounds (counted work, not wall-clock time)",
    "wall_limit_seconds": "Wall-clock limit (seconds)",
    "compare_mechanisms": "Compare with deferred acceptance",
    "place_every_household": "Every household placed (exactly one municipality each, else the round fails)",
}
# Scoring criteria of the weight_<criterion> parameters (docs/scoring.md); weights are relative.
_CRITERIA_LABELS: dict[str, str] = {
    "jobs": "jobs",
    "schools_childcare": "schools and childcare (Kita)",
    "medical_care": "medical care",
    "community": "community",
    "big_city": "big city",
    "quiet_rural": "quiet, rural",
    "family_nearby": "family nearby",
    "wishes": "named wishes",
    # score_neutral (engine.scoring): the points of a household that rated no criterion.
    "neutral": "neutral (no preference stated)",
}
_COUNT_LABELS: dict[str, str] = {
    "households_received": "Household questionnaires received",
    "households_without_consent": "Without consent to processing (counted only, not processed)",
    # Each copy an export landed again repeats counts here too (a KoboToolbox form exported again after one edit: 890 of
    # 900), which read as alarming under "duplicates resolved": the label says what is counted.
    "municipality_duplicates_resolved": "Municipality questionnaires replaced by a later copy or correction (an export landed again counts each of its rows)",
    "household_duplicates_resolved": "Household questionnaires replaced by a later copy or correction (an export landed again counts each of its households)",
    "households_left_out": "Left out as the questionnaire tool marks them (rejected by a reviewer, or incomplete)",
    "municipalities_left_out": "Municipality questionnaires left out (rejected by a reviewer, or incomplete)",
    "rows_quarantined": "Rows quarantined (failed validation), of this intake period and earlier",
    "municipalities_held_out": "Municipalities held out: latest questionnaire failed validation (older one not used)",
    "households_held_out": "Households held out: latest questionnaire failed validation (older one not used)",
    "households_held_out_for_members": "Households held out: a member row failed validation (older questionnaire not used)",
    "households_held_out_for_unlinked_members": "Households held out: their members file has a member row whose household cannot be told",
    "households_held_out_for_linked_households": "Households held out: a household linked to them is held out or failed validation",
    "municipality_reference_warnings": "Warnings: municipality AGS or coordinates not as in the 2020 reference list",
    "household_reference_warnings": "Warnings: household answers naming an unknown AGS",
    "ags_keys_restored": "Warnings: AGS keys that had lost their leading zero (restored)",
    "intake_periods_restored": "Warnings: intake periods Excel had turned into dates (read as their month)",
    "device_dates_set_aside": "Warnings: households whose form's device date was implausible (dated by the server's time)",
    "decision_reasons_left_out": "Warnings: decisions recorded without their reason (the reason was not one of the codes)",
    "households_not_validated": "Households not validated, any period: failed validation, held out, or left out by the tool (not in this pool)",
    "households_accepted": "Households that accepted a proposal of any round (kept there, not in this pool)",
    "households_submitted_later": "Households submitted after this intake period (not in this pool)",
    "households_waiting": "Linked households waiting outside this pool (a household of their group is not in it)",
    "households_eligible": "Households eligible for matching",
    "households_in_pool": "Households in the matching pool",
    "municipalities_received": "Municipality questionnaires received",
    "municipalities_eligible": "Municipalities taking part",
}

# Figures: small and plain; rc_context keeps these settings out of the global state.
_RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    # Names and reasons are data: "$" in them must not switch on mathtext.
    "text.parse_math": False,
    "svg.hashsalt": "rematch-round-report",
}
_WIDE = (6.0, 3.5)
_COLOR_USED = "#2b6cb0"
_COLOR_CAPACITY = "#d9e2ec"
_COLOR_ACCENT = "#c05621"

_TEMPLATE_DIR = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class RoundReportData:
    """Everything the round report shows; all of it pseudonymous.

    Attributes:
        round_id: id of the matching round.
        period: intake period of the round, e.g. ``2025-07``.
        created_at: ISO timestamp of the round (printed as given, so output is reproducible).
        config: round parameters, shown as a small table (secret-looking keys are masked).
        solver: solver summary (status, backend, objective, bound, gap, seconds, ...);
            ``gap`` is a relative gap (0.01 = 1 %). Whatever keys are present are shown.
        proposals: one row per placed household: household_pseudonym, municipality_id,
            municipality_name, persons, score and any number of ``score_<criterion>`` columns.
        households: every household of the round: household_pseudonym, persons,
            placed (bool), unplaced_reason (str or null).
        municipalities: municipality_id, municipality_name, latitude, longitude and
            ``capacity_<r>`` / ``used_<r>`` for each resource in :data:`RESOURCES`.
        counts: intake counts (households_received, households_without_consent, ...).
        earlier_decisions: what accepted and declined proposals of earlier rounds did to this one.
        mechanisms: the optimiser's assignment beside deferred acceptance, with blocking pairs, and the fixed
            distribution key (engine.distribution_key) when it was computed.
        municipality_reasons: why households did not come to each municipality (aggregates only).
        coordinator_pairs: the pairs the coordinator locked or forbade (kind, entry, household_pseudonym,
            municipality_id); proposals may carry a boolean ``locked`` column (a lock's whole link group).
        files: the round's files beside the report (name, description), listed with relative links.
    """

    round_id: str
    period: str
    created_at: str
    config: Mapping[str, Any]
    solver: Mapping[str, Any]
    proposals: pl.DataFrame
    households: pl.DataFrame
    municipalities: pl.DataFrame
    counts: Mapping[str, int] = field(default_factory=dict)
    # Sentences such as "3 more kita_places in 09162 would place 2 more households (7 persons)".
    capacity_offers: Sequence[str] = ()
    # Decisions on earlier rounds' proposals of the period (assets.reports.earlier_decisions):
    # accepted_households/_persons kept where they accepted, declined_households in this round's
    # pool and how many of them are proposed elsewhere (declined_placed_elsewhere) or not (declined_unplaced).
    earlier_decisions: Mapping[str, int] = field(default_factory=dict)
    # "optimiser" and "deferred_acceptance" summaries (engine.mechanisms.assignment_summary) and "distribution_key"
    # (engine.distribution_key.distribution_key_baseline); {} = not computed.
    mechanisms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Per municipality_id: compatible_households, excluded_households, main_rule, main_rule_households,
    # missed_<resource> (unplaced households whose nearest miss was this municipality, for lack of that resource).
    municipality_reasons: pl.DataFrame | None = None
    # Rows of round_coordinator_pairs: kind ("locked" / "forbidden"), entry (index in its config list),
    # household_pseudonym, municipality_id. None or empty: the coordinator set no pair.
    coordinator_pairs: pl.DataFrame | None = None
    # Files of the round written beside the report (file name, what it holds), linked from it; () = none.
    files: Sequence[tuple[str, str]] = ()
    # Households kept out of the pool because a household of their link group is not in it (household_pseudonym,
    # persons): unplaced without a solve, listed in households.csv with WAITING_REASON. None = not recorded.
    waiting: pl.DataFrame | None = None


# --------------------------------------------------------------------------- formatting


def _fmt_int(value: int | float | None) -> str:
    """Whole number with a narrow no-break space as thousands separator (unambiguous in DE and EN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{int(round(value)):,}".replace(",", "\u202f")


def _fmt_float(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "–"
    return f"{value:,.{digits}f}".replace(",", "\u202f")


def _fmt_pct(part: float | None, whole: float | None, digits: int = 1) -> str:
    if part is None or not whole:
        return "–"
    return f"{100.0 * part / whole:.{digits}f} %"


def _fmt_value(value: Any) -> str:
    """Generic cell value for the config / solver / counts tables."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, int):
        return _fmt_int(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "–"
        # A national round's total score (3,841,689.95) read "3.84169e+06": not a number to compare between rounds.
        if value.is_integer() and abs(value) < 1e15:
            return _fmt_int(value)
        if abs(value) >= 1000:
            return _fmt_float(value)
        return f"{value:.6g}"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value)


def _plural(n: int, one: str, many: str | None = None) -> str:
    """A count and its noun (or noun and verb) in number, thousands separated: wording.counted."""
    return counted(n, one, many, number=_fmt_int)


def _humanise(key: str) -> str:
    text = key.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _shorten(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- figures


def _png(fig: Figure) -> str:
    """Encode a figure as a data URI. No Software/date metadata, so bytes are reproducible."""
    FigureCanvasAgg(fig)  # attach the non-interactive Agg canvas explicitly (no pyplot state)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.08)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fig_capacity(rows: list[dict[str, Any]]) -> str:
    """Share of each resource's total capacity in use; absolute numbers written on the bars.

    Shares rather than absolute bars: persons run into thousands while accessible units
    are a handful, so one absolute axis would hide the small resources.
    """
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_WIDE)
        ax = fig.add_subplot()
        labels = [r["short"] for r in rows][::-1]
        shares = [min(r["share"] or 0.0, 1.0) * 100 for r in rows][::-1]
        y = np.arange(len(rows))
        ax.barh(y, [100.0] * len(rows), color=_COLOR_CAPACITY, height=0.6, label="capacity")
        ax.barh(y, shares, color=_COLOR_USED, height=0.6, label="used")
        for yi, r in zip(y, rows[::-1]):
            text = f"{_fmt_int(r['used'])} / {_fmt_int(r['capacity'])}"
            if r["share"] is not None:
                text += f"  ({r['share'] * 100:.0f} %)"
            ax.text(101.5, yi, text, va="center", fontsize=8)
        ax.set_yticks(y, labels)
        ax.set_xlim(0, 100)
        ax.set_xlabel("share of total capacity used (%)")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8)
        fig.subplots_adjust(right=0.72)
        return _png(fig)


def _fig_score_hist(scores: np.ndarray) -> str:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_WIDE)
        ax = fig.add_subplot()
        lo, hi = float(scores.min()), float(scores.max())
        bins: int | list[float] = 20 if hi > lo else [lo - 0.5, lo + 0.5]
        ax.hist(scores, bins=bins, color=_COLOR_USED, edgecolor="white", linewidth=0.5)
        mean = float(scores.mean())
        ax.axvline(mean, color=_COLOR_ACCENT, linewidth=1.5, linestyle="--")
        ax.text(mean, ax.get_ylim()[1] * 0.97, f" mean {mean:.2f}", color=_COLOR_ACCENT, va="top", fontsize=8)
        ax.set_xlabel("match score (points of 100; higher = better fit)")
        ax.set_ylabel("households")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        return _png(fig)


def _fig_criteria(means: list[tuple[str, float]]) -> str:
    with matplotlib.rc_context(_RC):
        height = max(2.0, min(_WIDE[1], 0.9 + 0.3 * len(means)))
        fig = Figure(figsize=(_WIDE[0], height))
        ax = fig.add_subplot()
        names = [_shorten(n, 30) for n, _ in means][::-1]
        values = [v for _, v in means][::-1]
        y = np.arange(len(means))
        colors = [_COLOR_USED if v >= 0 else _COLOR_ACCENT for v in values]
        ax.barh(y, values, color=colors, height=0.6)
        ax.axvline(0, color="#555", linewidth=0.6)
        span = max((abs(v) for v in values), default=1.0) or 1.0
        for yi, v in zip(y, values):
            ax.text(v + (0.01 * span if v >= 0 else -0.01 * span), yi, f"{v:.3f}",
                    va="center", ha="left" if v >= 0 else "right", fontsize=8)
        ax.set_yticks(y, names)
        ax.set_xlabel("mean contribution to the score per placed household (points)")
        ax.margins(x=0.15)
        return _png(fig)


def _fig_map(lon: np.ndarray, lat: np.ndarray, placed: np.ndarray, share: np.ndarray) -> str:
    """Municipalities by coordinates; size = persons placed this round, colour = persons capacity used."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(5.2, 6.0))
        ax = fig.add_subplot()
        # Degrees of longitude shrink with cos(latitude); this makes distances look right.
        ax.set_aspect(1.0 / math.cos(math.radians(_MID_LAT)))
        ax.set_xlim(*_LON_LIMITS)
        ax.set_ylim(*_LAT_LIMITS)
        ax.grid(True, color="#eee", linewidth=0.6)
        ax.set_axisbelow(True)
        max_placed = float(placed.max()) if placed.size and placed.max() > 0 else 1.0
        sizes = _MAP_MIN_SIZE + _MAP_SIZE_RANGE * placed / max_placed
        zero = placed <= 0
        if zero.any():  # without placements this round: small grey rings
            ax.scatter(lon[zero], lat[zero], s=12, facecolors="none", edgecolors="#8a8f98", linewidths=0.6,
                       label="none")
        known = ~zero & ~np.isnan(share)
        order = np.argsort(-placed[known], kind="stable")  # big points first so small ones stay on top
        sc = ax.scatter(
            lon[known][order], lat[known][order], s=sizes[known][order], c=np.clip(share[known][order], 0, 1),
            cmap="YlOrRd", vmin=0, vmax=1, edgecolors="#333", linewidths=0.4, alpha=0.9,
        )
        nocap = ~zero & np.isnan(share)
        if nocap.any():  # placements but no persons capacity offered: cannot be coloured by share
            ax.scatter(lon[nocap], lat[nocap], s=30, color="#444", marker="x", label="no capacity offered")
        over = bool(np.nanmax(share, initial=0.0) > 1.0) if share.size else False
        cbar = fig.colorbar(sc, ax=ax, shrink=0.6, pad=0.03, extend="max" if over else "neither")
        cbar.set_label("share of persons capacity used")
        cbar.ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        if not zero.all():  # size key with round example values
            examples = sorted({max(1, int(round(max_placed * f))) for f in (0.1, 0.5, 1.0)})
            for value in examples:
                ax.scatter([], [], s=_MAP_MIN_SIZE + _MAP_SIZE_RANGE * value / max_placed, color="#ccc",
                           edgecolors="#333", linewidths=0.4, label=_fmt_int(value))
        if ax.get_legend_handles_labels()[0]:
            # Below the axes: inside, it would cover points.
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5, frameon=False, fontsize=8,
                      title="persons placed this round", title_fontsize=8, handletextpad=0.2, columnspacing=1.0)
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        return _png(fig)


# Characters of an unplaced reason's chart label: five resources' short names (the chart widens to fit).
_REASON_LABEL = 56


def _reason_label(reason: str) -> str:
    """A chart label for an unplaced reason. A capacity reason names the resources short, in the order of the
    capacity columns (_reason_and_place): cut to its first words, most of them read `capacity: persons and housing_units e…`."""
    short = re.fullmatch(_CAPACITY_REASON, reason)
    if short:
        return _shorten("short of " + ", ".join(_CHIPS.get(r, r) for r in short.group(1).split(" and ")), _REASON_LABEL)
    return _shorten(reason, _REASON_LABEL)


def _reason_words(reason: str) -> str:
    """An unplaced reason in the report's words: the hard rule that kept the household from most places
    (`(mostly: family_tie_must)`, assets.matching) and the resources of a capacity miss (engine.diagnosis:
    `capacity: persons and housing_units exhausted`) as the Municipalities table words them; the reason as
    households.csv has it stays in the cell's tooltip."""
    reason = re.sub(r"\(mostly: (\w+)\)", lambda m: f"(mostly: {rule_words(m.group(1))})", reason)
    short = re.fullmatch(_CAPACITY_REASON, reason)
    if short:
        nouns = [plural(resource_noun(r)) for r in short.group(1).split(" and ")]
        return f"capacity: {' and '.join(nouns)} exhausted"
    return reason


def _fig_unplaced(rows: list[dict[str, Any]]) -> str:
    with matplotlib.rc_context(_RC):
        # A row per reason, however many: a fixed height made 30 reasons' labels overlap.
        height = max(1.8, 0.9 + 0.3 * len(rows))
        fig = Figure(figsize=(_WIDE[0], height))
        ax = fig.add_subplot()
        y = np.arange(len(rows))
        values = [r["households"] for r in rows][::-1]
        ax.barh(y, values, color=_COLOR_ACCENT, height=0.6)
        for yi, v in zip(y, values):
            ax.text(v, yi, " " + _fmt_int(v), va="center", fontsize=8)
        ax.set_yticks(y, [_reason_label(r["reason"]) for r in rows][::-1])
        ax.set_xlabel("unplaced households")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.margins(x=0.12)
        return _png(fig)


def _fig_binding(rows: list[dict[str, Any]], with_misses: bool) -> str:
    """Per resource: the share of the municipalities offering it where it is full (binds), and the
    unplaced households whose nearest miss was a lack of it. Which capacity holds the round back."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(_WIDE[0] + (2.4 if with_misses else 0), 2.9))
        axes = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2]) if with_misses else [fig.add_subplot()]
        y = np.arange(len(rows))
        ax = axes[0]
        offering = [r["offering"] for r in rows][::-1]
        full = [r["full"] for r in rows][::-1]
        ax.barh(y, [100.0 if o else 0.0 for o in offering], color=_COLOR_CAPACITY, height=0.6)
        ax.barh(y, [100.0 * f / o if o else 0.0 for f, o in zip(full, offering)], color=_COLOR_ACCENT, height=0.6)
        for yi, f, o in zip(y, full, offering):
            ax.text(101.5, yi, f"{_fmt_int(f)} of {_fmt_int(o)}" if o else "not offered", va="center", fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_yticks(y, [r["short"] for r in rows][::-1])
        ax.set_xlabel("municipalities where it is full (% of those offering it)")
        if with_misses:
            ax2 = axes[1]
            missed = [r["missed"] for r in rows][::-1]
            ax2.barh(y, missed, color=_COLOR_USED, height=0.6)
            for yi, v in zip(y, missed):
                ax2.text(v, yi, " " + _fmt_int(v), va="center", fontsize=8)
            ax2.set_xlabel("unplaced households that lacked it")
            ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=3, integer=True))
            ax2.margins(x=0.2)
            fig.subplots_adjust(wspace=0.45)
        return _png(fig)


# --------------------------------------------------------------------------- data preparation


def _frame(df: pl.DataFrame, required: tuple[str, ...], name: str, schema: dict[str, Any]) -> pl.DataFrame:
    """Keep only the known columns (so nothing else can leak into the report) and check them."""
    if df.width == 0 and df.height == 0:
        return pl.DataFrame(schema=schema)
    missing = [c for c in required if c not in df.columns]
    if missing:
        # Names the columns, never values (privacy rule E).
        raise ValueError(f"{name}: missing column(s) {', '.join(missing)}")
    return df


def _resource_columns(mun: pl.DataFrame) -> list[tuple[str, str, str]]:
    return [r for r in RESOURCES if f"capacity_{r[0]}" in mun.columns and f"used_{r[0]}" in mun.columns]


def _criterion_words(criterion: str) -> str:
    """A scoring criterion (score_<criterion>, weight_<criterion>) in the report's words."""
    return _CRITERIA_LABELS.get(criterion, criterion.replace("_", " "))


def _config_label(key: str) -> str:
    """A round parameter's label with its unit; an unknown key in words."""
    if key.startswith("weight_"):
        return f"Weight: {_criterion_words(key.removeprefix('weight_'))}"
    return _CONFIG_LABELS.get(key, _humanise(key))


def _solver_label(key: str) -> str:
    """A solver summary entry's label; a stage the table does not know still reads as words."""
    stage = re.fullmatch(r"stage_(\w+)_gap", key)
    if key not in _SOLVER_LABELS and stage:
        return f"Optimality gap, stage: {stage.group(1).replace('_', ' ')}"
    return _SOLVER_LABELS.get(key, _humanise(key))


def _masked_config(config: Mapping[str, Any], solved_by: Any = None, period_used: Any = None) -> list[dict[str, str]]:
    """The round parameters' rows; solved_by: the solver that answered (solver.json's backend), period_used: the
    intake period the round matched (solver.json's period)."""
    rows = []
    for key, value in config.items():
        if _SECRET_KEY.search(str(key)):
            shown = "(hidden)"
        elif str(key) == "backend" and isinstance(solved_by, str) and value and solved_by != f"ortools-{value}" and not solved_by.startswith(f"ortools-{value}+"):
            # A national round's parameters said `Solver (backend) cbc` beside `ortools-scip+lagrangian`: large rounds
            # go to the large-round method whatever the backend (docs/operations.md).
            shown = f"{value} (not used: rounds this large go to the large-round method, {solved_by})"
        elif str(key) == "period" and not value and period_used:
            # Left empty, the round takes the latest period with offers: the row said nothing at all.
            shown = f"{period_used} (left empty: the latest period with offers)"
        elif str(key) == "relative_gap" and _number(value) is not None:
            shown = f"{100.0 * value:.2g} %"  # a fraction, shown as the solver table shows gaps
        else:
            shown = _fmt_value(value)
        rows.append({"label": _config_label(str(key)), "value": shown})
    return rows


def _number(value: Any) -> float | None:
    """A finite number from the solver summary, else None (missing, null, NaN, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _offers_named(offers: Sequence[str], mun: pl.DataFrame) -> list[str]:
    """engine.diagnosis' capacity offers ("1 more integration course place in 03358 would place …") with the place's
    name beside its AGS, as every other table of the report names it: a bare key was read in no other place."""
    names = dict(mun.select("municipality_id", "municipality_name").iter_rows())

    def named(match: re.Match[str]) -> str:
        name = names.get(match.group(1))
        return f" in {name} ({match.group(1)}) would place" if name else match.group(0)

    return [re.sub(r" in (\d{5}|\d{8}) would place", named, offer) for offer in offers]


def _erased_since(solver: Mapping[str, Any], households: int) -> list[str]:
    """A sentence when households of the round were erased after it ran ([] otherwise). An erasure writes the
    report again from the warehouse, which no longer holds them, while the solver's figures (persons placed, the
    bound, the score), the mechanisms comparison and the intake counts were recorded with the round and still
    count them: without it, the headline's 951 persons placed stood beside "Persons: 957 placed"."""
    solved = _number(solver.get("households"))
    erased = int(solved) - households if solved is not None and households < solved else 0
    if not erased:
        return []
    them = "it" if erased == 1 else "them"
    return [
        f"{_plural(erased, 'household')} of this round {'was' if erased == 1 else 'were'} erased since it ran (rematch erase):"
        f" the headline, the tables below and the round's CSV files leave {them} out; the solver's figures (here and"
        f" in Round details), the comparison with deferred acceptance and the fixed key, and the intake counts"
        f" (households in the pool included) are as the round ran, with {them}."
    ]


def _bound_text(solver: Mapping[str, Any], objective: Any) -> list[str]:
    """The bounds in words: how far this answer could at most be from the best possible one.

    Lexicographic rounds (persons, then score) and maximin rounds (persons, lowest score, then score among the
    assignments keeping both).
    """
    lines = []
    maximin = objective == "maximin"
    for stage, what in (("min_score", "lowest household score"), ("score", "total score")):
        if solver.get(f"stage_{stage}_status") not in (None, "optimal", "feasible"):
            # The stage kept the previous stage's answer, then exchanges between households of the same needs
            # (engine.exchange) weighed the scores locally: better than unweighed, with no bound to say how far off.
            lines.append(
                f"The time limit ran out before the solver found any answer for the {what}: these proposals place the"
                f" most persons{', keep the lowest score below,' if maximin and stage == 'score' else ''} and their"
                " scores were only improved by swapping households with the same needs between places, with no"
                " bound on how far they are from the best possible (the mean score shows it). Run the round again"
                " with a longer time_limit_seconds before sending them."
            )
    lowest, lowest_bound = _number(solver.get("stage_min_score_value")), _number(solver.get("stage_min_score_bound"))
    if maximin and lowest is not None:
        # The maximin stage's value is per placement unit: a link group's score divided by its households.
        lines.append(
            f"Lowest score: every placed household scores at least {_fmt_float(lowest)} points (linked households: on"
            " average over their group)"
            + (f"; no assignment placing as many persons can raise that above {_fmt_float(lowest_bound)} (the bound)."
               if lowest_bound is not None else ".")
        )
    if objective not in (None, "lexicographic", "maximin"):
        return lines
    persons, persons_bound = _number(solver.get("persons_placed")), _number(solver.get("persons_bound"))
    if persons is not None and persons_bound is not None:
        more = max(0, math.floor(persons_bound + 1e-6) - int(persons))
        lines.append(
            f"Persons: {_fmt_int(persons)} placed; no assignment of this round can place more than {_fmt_int(math.floor(persons_bound + 1e-6))}"
            + (" (proven: none places more)." if more == 0 else f", so at most {_fmt_int(more)} more could be placed.")
        )
    score, bound, gap = _number(solver.get("total_score")), _number(solver.get("bound")), _number(solver.get("gap"))
    # Maximin's score stage maximises the total among assignments that keep its lowest score.
    keeping = " with no household below the lowest score" if maximin else ""
    if score is not None and bound is not None and gap is not None and gap <= 1e-9:
        lines.append(f"Score: the proposals add up to {_fmt_float(score)} points, proven the best possible for this many persons{keeping} (gap 0 %).")
    elif score is not None and bound is not None and gap is not None:
        lines.append(
            f"Score: the proposals add up to {_fmt_float(score)} points; no assignment placing as many persons{keeping} can exceed "
            f"{_fmt_float(bound)} (the bound), so the answer is at most {100.0 * gap:.2f} % below the best possible (the gap)."
            " The remaining gap is partly in the answer and partly in the bound, which the solver could not tighten in the time limit."
        )
    # An answer the time limit cut short may differ in a repeat, bound and all: one sentence, not two that disagree.
    if solver.get("bound_reproducible") is False and solver.get("reproducible") is not False:
        lines.append("The time limit cut the bound's refinement short: a repeat of the round proposes the same, but may report a slightly different bound and gap.")
    if solver.get("reproducible") is False:
        lines.append("The time limit cut the solve short: a repeat of the round may propose otherwise (see solver.json).")
    return lines


_MECHANISM_ROWS: tuple[tuple[str, str], ...] = (
    ("households_placed", "Households placed"),
    ("persons_placed", "Persons placed"),
    ("households_forbidden", "Households placed where a hard rule forbids it"),
    ("total_score", "Total score"),
    ("mean_score", "Mean score of the households placed where the rules allow"),
    ("places_below_minimum_intake", "Municipalities below their minimum intake"),
    ("blocking_pairs", "Blocking pairs (a household and a municipality that would both rather be together)"),
    ("units_in_blocking_pairs", "Placement units in a blocking pair"),
    ("units_with_justified_envy", "Placement units with justified envy"),
    ("justified_envy", "Justified envy (pairs of units)"),
)


def _mechanism_cell(summary: Mapping[str, Any] | None, key: str) -> str:
    """One cell of the comparison. The optimiser and deferred acceptance place only candidate pairs (the rules
    hold, a link group is one unit), so nothing they place is forbidden and a unit's score is its households'
    sum; the distribution key brings its own count and mean, and its stability counts (a dash in rounds stored
    before they were computed for it)."""
    if not summary:
        return ""
    if key == "mean_score" and key in summary:
        return _fmt_float(summary.get(key))
    if key in summary:
        return _fmt_value(summary.get(key))
    if "key" in summary:  # the distribution key of a round stored before its stability counts
        return "–"
    if key == "households_forbidden":
        return _fmt_int(0)
    if key == "mean_score":
        placed = summary.get("households_placed")
        return _fmt_float(float(summary.get("total_score", 0.0)) / placed) if placed else "–"
    return _fmt_value(None)


def _mechanism_rows(mechanisms: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """Rows of the optimiser / deferred acceptance / distribution key comparison ([] when it was not computed;
    the key's cells are "" in rounds stored before it was computed)."""
    optimiser, da, key = mechanisms.get("optimiser"), mechanisms.get("deferred_acceptance"), mechanisms.get("distribution_key")
    if not optimiser or not da:
        return []
    return [
        {
            "label": label,
            "optimiser": _mechanism_cell(optimiser, k),
            "deferred_acceptance": _mechanism_cell(da, k),
            "distribution_key": _mechanism_cell(key, k),
        }
        for k, label in _MECHANISM_ROWS
    ]


def _distribution_key_text(mechanisms: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Sentences on the fixed distribution key ([] when it was not computed): what it was keyed by, and how many
    households it would have sent where a hard rule forbids, rule by rule."""
    key = mechanisms.get("distribution_key")
    if not key:
        return []
    # solver.json `key`: the weight within a Land, after "koenigstein+" when the Länder step was applied.
    between_lander, _, within = str(key.get("key", "")).rpartition("+")
    by = (
        "the population of each municipality (reference 2020)"
        if within == "population"
        else "the persons capacity each municipality offered (a municipality of the round has no reference population)"
    )
    shares = (
        "between the Länder of the round by the Königsteiner Schlüssel (2017), then within each Land in proportion to "
        + by + ", both steps by largest remainder,"
        if between_lander
        else "in proportion to " + by + ", by largest remainder,"
    )
    lines = [
        "The fixed distribution key (the quota used today) shares the persons of the pool out " + shares
        + " and sends the households in pseudonym order each to the municipality furthest"
        " below its share that still has room for its persons. It looks at nothing else: no preferences, no score,"
        " no hard rule."
    ]
    if "households_locked" in key:  # rounds stored before the key kept the coordinator's pairs say nothing of them
        locked = int(key.get("households_locked", 0))
        forbids = "no household goes where the coordinator forbade it or a household linked to it."
        lines.append(
            "As the optimiser and deferred acceptance do, it keeps the coordinator's locks and forbids (Locks and forbids): "
            f"{_plural(locked, 'locked household goes', 'locked households go')} to {'its' if locked == 1 else 'their'}"
            f" municipality first, counted against its share, and {forbids}"
            if locked
            else "No household was locked. As the optimiser and deferred acceptance do, it keeps the coordinator's"
            f" forbids (Locks and forbids): {forbids}"
        )
    if "blocking_pairs" in key:
        lines.append(
            "Its blocking pairs and justified envy are counted as for the other columns. A household the key sends where"
            " a hard rule forbids counts as placed nowhere acceptable: it would rather have any municipality the rules"
            " allow, and the municipality ranks it below every household it may take. Linked households the key splits"
            " are no placement: they count as unplaced, and each keeps its room where it was sent, ranked last there."
        )
    forbidden = int(key.get("households_forbidden", 0))
    by_rule = [
        f"{rule_words(rule)} {_fmt_int(n)}" for rule, n in (key.get("forbidden_by_rule") or {}).items() if n
    ]
    sentence = f"The fixed key: {_plural(forbidden, 'household', 'households')} to a place a hard rule forbids"
    lines.append(sentence + (f" ({'; '.join(by_rule)}; one household can break several)." if by_rule else "."))
    over = int(key.get("places_over_capacity", 0))
    if over:
        lines.append(
            f"It keeps only the persons capacity: {_plural(over, 'municipality gets', 'municipalities get')} more dwellings,"
            " accessible dwellings, childcare, school or course places than offered."
        )
    return lines


def _decisions_text(decisions: Mapping[str, int]) -> list[str]:
    """Sentences on what earlier decisions of the period did to this round ([] when there were none)."""
    lines = []
    accepted = int(decisions.get("accepted_households", 0))
    if accepted:
        lines.append(
            f"{_plural(accepted, 'household', 'households')} ({_plural(int(decisions.get('accepted_persons', 0)), 'person', 'persons')}) "
            "accepted a proposal of an earlier round of this intake period: they keep that municipality, are not matched "
            "again, and their places count as used in the tables below."
        )
    declined = int(decisions.get("declined_households", 0))
    if declined:
        lines.append(
            f"{_plural(declined, 'household', 'households')} of this round declined an earlier proposal: "
            + _plural(int(decisions.get("declined_placed_elsewhere", 0)), "is proposed elsewhere now", "are proposed elsewhere now")
            + " (never where they declined)"
        )
        unplaced = int(decisions.get("declined_unplaced", 0))
        lines[-1] += f", {_fmt_int(unplaced)} received no proposal." if unplaced else "."
    return lines


def _coordinator_context(pairs: pl.DataFrame | None, proposals: pl.DataFrame, mun: pl.DataFrame) -> dict[str, Any]:
    """The coordinator's locked and forbidden pairs, each with what the round proposed for it, and the
    locked proposals (a lock holds the household's whole link group)."""
    proposed = set(proposals.select("household_pseudonym", "municipality_id").iter_rows())
    names = dict(mun.select("municipality_id", "municipality_name").iter_rows())
    if pairs is None:
        pairs = pl.DataFrame(schema={"kind": pl.String, "entry": pl.Int64, "household_pseudonym": pl.String, "municipality_id": pl.String})
    rows = []
    counts = {"locked": 0, "forbidden": 0}
    # Locks first, each list in config order.
    ordered = pairs.select("kind", "entry", "household_pseudonym", "municipality_id").sort("kind", "entry", descending=[True, False])
    for kind, entry, h, m in ordered.iter_rows():
        counts[kind] += 1
        rows.append({
            "entry": f"{'locked_pairs' if kind == 'locked' else 'forbidden_pairs'}[{entry}]",
            "kind": kind,
            "pseudonym": h,
            "municipality": f"{names.get(m) or ''} ({m})".strip(),
            "outcome": "proposed" if (h, m) in proposed else "not proposed",
        })
    locked = proposals.filter(pl.col("locked"))
    return {
        "rows": rows,
        "locked_pairs": _fmt_int(counts["locked"]),
        "forbidden_pairs": _fmt_int(counts["forbidden"]),
        "locked_proposals": _plural(locked.height, "proposal", "proposals"),
        "locked_persons": _plural(int(locked["persons"].sum()) if locked.height else 0, "person", "persons"),
    }


@dataclass(frozen=True)
class _Frames:
    """The report's input frames, typed and cut to the documented columns (nothing else can leak out)."""

    proposals: pl.DataFrame
    households: pl.DataFrame
    # The capacity ledger per municipality with this round's proposals (proposals, households, persons_placed,
    # mean_score), full_<r> (the round uses all of an offered capacity: it binds) and the reasons, if recorded.
    municipalities: pl.DataFrame
    criteria: list[str]
    resources: list[tuple[str, str, str]]


def _frames(data: RoundReportData) -> _Frames:
    """The input frames checked and typed, and the per-municipality frame that the report's tables and
    municipalities.csv both read (one definition of proposed, full and the reasons)."""
    proposals = _frame(
        data.proposals, PROPOSAL_COLUMNS, "proposals",
        {"household_pseudonym": pl.String, "municipality_id": pl.String, "municipality_name": pl.String,
         "persons": pl.Int64, "score": pl.Float64},
    )
    households = _frame(
        data.households, HOUSEHOLD_COLUMNS, "households",
        {"household_pseudonym": pl.String, "persons": pl.Int64, "placed": pl.Boolean, "unplaced_reason": pl.String},
    )
    mun = _frame(
        data.municipalities, MUNICIPALITY_COLUMNS, "municipalities",
        {"municipality_id": pl.String, "municipality_name": pl.String, "latitude": pl.Float64, "longitude": pl.Float64},
    )
    criteria = [c for c in proposals.columns if c.startswith("score_")]
    resources = _resource_columns(mun)
    proposals = proposals.select(
        pl.col("household_pseudonym").cast(pl.String),
        pl.col("municipality_id").cast(pl.String),
        pl.col("municipality_name").cast(pl.String),
        pl.col("persons").cast(pl.Int64).fill_null(0),
        pl.col("score").cast(pl.Float64),
        *(pl.col(c).cast(pl.Float64).fill_null(0.0) for c in criteria),
        # Optional: proposals the coordinator locked (rounds before locks existed: none).
        (pl.col("locked") if "locked" in proposals.columns else pl.lit(False)).cast(pl.Boolean).fill_null(False).alias("locked"),
    )
    households = households.select(
        pl.col("household_pseudonym").cast(pl.String),
        pl.col("persons").cast(pl.Int64).fill_null(0),
        pl.col("placed").cast(pl.Boolean).fill_null(False),
        pl.col("unplaced_reason").cast(pl.String),
    )
    accepted = ["persons", *(r for r, _, _ in resources if r != "persons")]
    mun = mun.select(
        pl.col("municipality_id").cast(pl.String),
        pl.col("municipality_name").cast(pl.String),
        pl.col("latitude").cast(pl.Float64),
        pl.col("longitude").cast(pl.Float64),
        *(pl.col(f"{k}_{r}").cast(pl.Int64).fill_null(0) for r, _, _ in resources for k in ("capacity", "used")),
        # Optional: what proposals accepted in earlier rounds of the period hold (0 when not given).
        *(
            (pl.col(f"accepted_{r}") if f"accepted_{r}" in mun.columns else pl.lit(0)).cast(pl.Int64).fill_null(0).alias(f"accepted_{r}")
            for r in accepted
        ),
        (pl.col("accepted_households") if "accepted_households" in mun.columns else pl.lit(0)).cast(pl.Int64).fill_null(0).alias("accepted_households"),
        # Optional: the minimum intake this round had to meet (what earlier acceptances left of it; 0 = none).
        (pl.col("min_persons") if "min_persons" in mun.columns else pl.lit(0)).cast(pl.Int64).fill_null(0).alias("min_persons"),
    ).sort("municipality_id")

    # Per municipality: what this round placed (from proposals) next to the capacity ledger.
    per_mun = proposals.group_by("municipality_id").agg(
        pl.len().alias("proposals"),
        pl.col("household_pseudonym").n_unique().alias("households"),
        pl.col("persons").sum().alias("persons_placed"),
        pl.col("score").mean().alias("mean_score"),
    )
    mun = mun.join(per_mun, on="municipality_id", how="left").with_columns(
        pl.col("proposals").fill_null(0), pl.col("households").fill_null(0), pl.col("persons_placed").fill_null(0),
        # A capacity binds when this round (with earlier acceptances) uses all of it, or more (an offer lowered
        # below what was accepted there, to none even).
        *(
            (((pl.col(f"capacity_{r}") > 0) & (pl.col(f"used_{r}") >= pl.col(f"capacity_{r}"))) | (pl.col(f"used_{r}") > pl.col(f"capacity_{r}"))).alias(f"full_{r}")
            for r, _, _ in resources
        ),
    )
    reasons = data.municipality_reasons
    if reasons is not None and reasons.height:
        reasons = reasons.select(
            pl.col("municipality_id").cast(pl.String),
            *(pl.col(c).cast(pl.Int64) for c in ("compatible_households", "excluded_households", "main_rule_households")),
            pl.col("main_rule").cast(pl.String),
            *(pl.col(f"missed_{r}").cast(pl.Int64).fill_null(0) for r, _, _ in RESOURCES if f"missed_{r}" in reasons.columns),
        )
        mun = mun.join(reasons, on="municipality_id", how="left")
    return _Frames(proposals, households, mun, criteria, resources)


def _reason_and_place(column: str, reason: str, place: str) -> tuple[pl.Expr, pl.Expr]:
    """An unplaced reason split as the report groups it: the reason, and apart the AGS of a capacity miss
    (engine.diagnosis: "capacity: persons exhausted at 05158"); the place is null for other reasons.

    A capacity reason names its resources in the order of the capacity columns (RESOURCES). engine.diagnosis
    names them largest shortfall first, so households short of the same resources made several reasons (seen:
    `Kita places and integration course places` 11 households, `integration course places and Kita places` 4, two
    rows apart in the report, households.csv and the UI's summary); the one short by most is still counted in
    municipalities.csv's unplaced_short_of_<resource>."""
    text = pl.col(column).str.extract(_PLACED_REASON, 1).fill_null(pl.col(column))
    short = text.str.extract(_CAPACITY_REASON, 1).str.split(" and ")
    known = [short.list.contains(r) for r, _, _ in RESOURCES]
    ordered = pl.concat_str([pl.when(k).then(pl.lit(r)) for k, (r, _, _) in zip(known, RESOURCES)], separator=" and ", ignore_nulls=True)
    return (
        # A resource this report does not know keeps the reason as written.
        pl.when(short.list.len() == pl.sum_horizontal(known))
        .then(pl.concat_str([pl.lit("capacity: "), ordered, pl.lit(" exhausted")]))
        .otherwise(text)
        .alias(reason),
        pl.col(column).str.extract(_PLACED_REASON, 2).alias(place),
    )


def _yes_no(column: str) -> pl.Expr:
    """A boolean column as a spreadsheet reader expects it (yes / no; empty when unknown)."""
    return pl.when(pl.col(column)).then(pl.lit("yes")).when(pl.col(column).not_()).then(pl.lit("no")).otherwise(None).alias(column)


def municipality_table(data: RoundReportData) -> pl.DataFrame:
    """municipalities.csv: one row per municipality (AGS) of the round, the Municipalities table of the report
    in numbers. Per resource: <r>_offered for the period, <r>_used_this_round (this round's proposals),
    <r>_used_accepted_earlier (proposals accepted in earlier rounds of the period), <r>_left; `full` lists the
    resources it has no room left in; min_persons_this_round, the minimum intake this round had to meet (0 or at
    least that many persons; what persons accepted earlier left of the period's minimum); proposals, households_proposed and persons_proposed of this round; and,
    when recorded, compatible_households, excluded_households (kept out by a hard rule), main_rule (the rule
    keeping most out) with main_rule_households, and unplaced_short_of_<r> (unplaced households whose nearest
    miss was this municipality, for lack of that resource). Aggregates only, no household."""
    frames = _frames(data)
    mun = frames.municipalities
    resources = [r for r, _, _ in frames.resources]
    reason_columns = ("compatible_households", "excluded_households", "main_rule", "main_rule_households")
    return mun.select(
        "municipality_id",
        "municipality_name",
        *(
            expr
            for r in resources
            for expr in (
                pl.col(f"capacity_{r}").alias(f"{r}_offered"),
                (pl.col(f"used_{r}") - pl.col(f"accepted_{r}")).alias(f"{r}_used_this_round"),
                pl.col(f"accepted_{r}").alias(f"{r}_used_accepted_earlier"),
                (pl.col(f"capacity_{r}") - pl.col(f"used_{r}")).alias(f"{r}_left"),
            )
        ),
        pl.concat_str([pl.when(pl.col(f"full_{r}")).then(pl.lit(r)) for r in resources], separator=" ", ignore_nulls=True).alias("full")
        if resources else pl.lit("").alias("full"),
        pl.col("min_persons").alias("min_persons_this_round"),
        pl.col("proposals"),
        pl.col("households").alias("households_proposed"),
        pl.col("persons_placed").alias("persons_proposed"),
        pl.col("accepted_households").alias("households_accepted_earlier"),
        pl.col("mean_score").round(4),
        # Rounds run before the reasons were recorded: empty cells, same header.
        *(pl.col(c) if c in mun.columns else pl.lit(None).alias(c) for c in reason_columns),
        *(
            (pl.col(f"missed_{r}") if f"missed_{r}" in mun.columns else pl.lit(None)).alias(f"unplaced_short_of_{r}")
            for r, _, _ in RESOURCES
        ),
    )


# Why a household of the period is not in a round's pool at all (assets.matching.complete_link_groups).
WAITING_REASON = "linked household not in this round's pool: its link group waits"


def _waiting(data: RoundReportData) -> pl.DataFrame:
    """The round's waiting linked households as rows of the household list (placed no, WAITING_REASON)."""
    rows = data.waiting if data.waiting is not None else pl.DataFrame(schema={"household_pseudonym": pl.String, "persons": pl.Int64})
    return rows.select(
        pl.col("household_pseudonym").cast(pl.String), pl.col("persons").cast(pl.Int64),
        pl.lit(False).alias("placed"), pl.lit(WAITING_REASON).alias("unplaced_reason"),
    )


def household_table(data: RoundReportData) -> pl.DataFrame:
    """households.csv: one row per household of the round's pool, by pseudonym only: persons, placed (yes/no),
    the proposed municipality, score and locked (yes/no) of a placed household, and for an unplaced one the
    reason as the report's unplaced section counts it, with the AGS of its nearest miss when a capacity ran
    out there or its minimum intake was not reached (unplaced_nearest_municipality_id). Linked households that waited outside the pool (a household of
    their group was not in it) are listed too, unplaced with WAITING_REASON: a coordinator looks for them here."""
    frames = _frames(data)
    proposed = frames.proposals.select(
        "household_pseudonym", "municipality_id", "municipality_name", pl.col("score").round(4), "locked"
    ).unique("household_pseudonym", keep="first", maintain_order=True)
    households = pl.concat([frames.households.select("household_pseudonym", "persons", "placed", "unplaced_reason"), _waiting(data)])
    return (
        households.join(proposed, on="household_pseudonym", how="left")
        .with_columns(*_reason_and_place("unplaced_reason", "unplaced_reason", "unplaced_nearest_municipality_id"))
        .select(
            "household_pseudonym",
            "persons",
            _yes_no("placed"),
            "municipality_id",
            "municipality_name",
            "score",
            _yes_no("locked"),
            "unplaced_reason",
            "unplaced_nearest_municipality_id",
        )
        .sort("household_pseudonym")
    )


def _unplaced_reason_rows(households: pl.DataFrame, mun: pl.DataFrame) -> list[dict[str, Any]]:
    """Unplaced households counted by reason, most first: one row per reason with the places where it happened
    most. engine.diagnosis names the place of a capacity miss ("capacity: persons exhausted at 05158") and of a
    minimum intake not reached, so 401 districts do not make 401 rows."""
    unplaced = households.filter(~pl.col("placed"))
    if not unplaced.height:
        return []
    split = unplaced.with_columns(pl.col("unplaced_reason").fill_null("(no reason recorded)")).with_columns(
        *_reason_and_place("unplaced_reason", "reason", "municipality_id"),
    )
    by_reason = (
        split.group_by("reason")
        .agg(pl.len().alias("households"), pl.col("persons").sum().alias("persons"))
        .sort(["households", "reason"], descending=[True, False])
    )
    names = dict(zip(mun["municipality_id"].to_list(), mun["municipality_name"].to_list()))
    places = (
        split.filter(pl.col("municipality_id").is_not_null())
        .group_by("reason", "municipality_id")
        .agg(pl.len().alias("households"))
        .sort(["reason", "households", "municipality_id"], descending=[False, True, False])
    )
    where: dict[str, str] = {}
    for reason, group in places.group_by("reason", maintain_order=True):
        shown = [f"{names.get(m) or ''} ({m}): {_fmt_int(n)}".lstrip() for m, n in group.select("municipality_id", "households").head(_WHERE_PLACES).iter_rows()]
        more = group.height - len(shown)
        where[str(reason[0])] = ", ".join(shown) + (f" and {_plural(more, 'more place', 'more places')}" if more > 0 else "")
    return [
        {"reason": r["reason"], "reason_words": _reason_words(r["reason"]), "households": int(r["households"]), "persons": int(r["persons"]),
         "households_text": _fmt_int(r["households"]), "persons_text": _fmt_int(r["persons"]),
         "where": where.get(r["reason"], "")}
        for r in by_reason.iter_rows(named=True)
    ]


def unplaced_markdown(data: RoundReportData) -> str:
    """The report's unplaced households by reason as a Markdown table, for the round report's metadata in the
    Dagster UI (which cannot open the report file): reasons, counts and places, no household."""
    frames = _frames(data)
    rows = _unplaced_reason_rows(frames.households, frames.municipalities)
    if not rows:
        return "every household of the pool received a proposal"
    lines = ["| why not placed | households | persons | where most |", "|---|---:|---:|---|"]
    lines += [f"| {r['reason']} | {r['households_text']} | {r['persons_text']} | {r['where']} |" for r in rows]
    return "\n".join(lines)


def _build_context(data: RoundReportData) -> dict[str, Any]:
    frames = _frames(data)
    proposals, households, mun = frames.proposals, frames.households, frames.municipalities
    criteria, resources = frames.criteria, frames.resources

    warnings: list[str] = []
    nothing_placed = proposals.height == 0

    # ---- headline
    placed_households = proposals["household_pseudonym"].n_unique() if not nothing_placed else 0
    if proposals.height != placed_households:
        extra = proposals.height - placed_households
        warnings.append(
            f"{_plural(extra, 'proposal', 'proposals')} more than households: "
            "some households have more than one proposal."
        )
    flagged = int(households["placed"].sum()) if households.height else 0
    if households.height and flagged != placed_households:
        warnings.append(
            f"The household list marks {_plural(flagged, 'household', 'households')} as placed, "
            f"but there are proposals for {_fmt_int(placed_households)}."
        )
    # The pool as it stands (an erasure since the round ran leaves its households out of the headline; the intake
    # counts keep them, as the round ran).
    eligible = int(data.counts.get("households_eligible", households.height))
    persons_placed = int(proposals["persons"].sum()) if not nothing_placed else 0
    persons_round = int(households["persons"].sum()) if households.height else None
    scores = proposals["score"].drop_nulls().to_numpy()
    mean_score = float(scores.mean()) if scores.size else None
    gap = data.solver.get("gap")
    gap_ok = isinstance(gap, (int, float)) and not isinstance(gap, bool) and math.isfinite(gap)
    gap_text = f"{100.0 * float(gap):.2f} %" if gap_ok else None

    status_words = solved_words(str(data.solver.get("status", "unknown")))
    headline = {
        "households_placed": _fmt_int(placed_households),
        "households_eligible": _fmt_int(eligible),
        "households_share": _fmt_pct(placed_households, eligible),
        "persons_placed": _fmt_int(persons_placed),
        "persons_round": _plural(persons_round, "person") if persons_round is not None else None,
        "persons_share": _fmt_pct(persons_placed, persons_round),
        "mean_score": _fmt_float(mean_score),
        # In the words of the run's log and metadata: the card shows the outcome, its note what it means.
        "solver_status": status_words.partition(" (")[0],
        "solver_status_note": status_words.partition(" (")[2].removesuffix(")"),
        "solver_gap": gap_text,
    }

    # ---- capacity
    capacity_rows = []
    for r, short, label in resources:
        cap = int(mun[f"capacity_{r}"].sum())
        used = int(mun[f"used_{r}"].sum())
        over = int((mun[f"used_{r}"] > mun[f"capacity_{r}"]).sum())
        if over:
            # The solve never exceeds a capacity: proposals accepted before the offer was lowered do.
            warnings.append(
                f"{label}: {_plural(over, 'municipality uses', 'municipalities use')} more than offered now: proposals accepted"
                f" earlier in the period exceed an offer lowered since (negative {r}_left in municipalities.csv);"
                " settle it with the municipality."
            )
        capacity_rows.append({
            "resource": r, "short": short, "label": label, "capacity": cap, "used": used,
            "share": used / cap if cap else None,
            "used_text": _fmt_int(used), "capacity_text": _fmt_int(cap), "share_text": _fmt_pct(used, cap),
        })

    waiting = _waiting(data).height
    if waiting:
        # Not in the pool: a row of the intake, said here, listed in households.csv.
        warnings.append(
            f"{_plural(waiting, 'linked household waits', 'linked households wait')} outside this round: a household of"
            " their link group is not in its pool (a later period, accepted or held out), and linked households go"
            " together or not at all; households.csv lists them."
        )

    unknown = proposals.filter(~pl.col("municipality_id").is_in(mun["municipality_id"].implode()))["municipality_id"].n_unique()
    if unknown:
        warnings.append(
            f"{_plural(unknown, 'proposed municipality is', 'proposed municipalities are')} "
            "missing from the municipality table."
        )
    has_reasons = "compatible_households" in mun.columns

    def mun_row(row: dict[str, Any]) -> dict[str, Any]:
        cap_p = row.get("capacity_persons")
        used_p = row.get("used_persons")
        full = [_CHIPS.get(r, short) for r, short, _ in resources if row[f"full_{r}"]]
        missed = sorted(((-(row.get(f"missed_{r}") or 0), i, _CHIPS.get(r, short)) for i, (r, short, _) in enumerate(RESOURCES)))
        main_rule = row.get("main_rule")
        offered = not (main_rule and main_rule.startswith("resource_") and row.get(f"capacity_{main_rule.removeprefix('resource_')}") == 0)
        # The round judged the resource rule on what accepted proposals left (matching.remaining_capacity).
        accepted_use = bool(main_rule and main_rule.startswith("resource_") and row.get(f"accepted_{main_rule.removeprefix('resource_')}"))
        rule_text = f"{rule_words(main_rule, offered, accepted_use)} ({_fmt_int(row.get('main_rule_households'))})" if main_rule else "–"
        return {
            "full": full,
            "missed": ", ".join(f"{chip}: {_fmt_int(-n)}" for n, _, chip in missed if n) or "–",
            "compatible": _fmt_int(row.get("compatible_households")),
            "excluded": _fmt_int(row.get("excluded_households")),
            "main_rule": rule_text,
            "main_rule_name": main_rule or "",
            "accepted_persons": _fmt_int(row["accepted_persons"]),
            "id": row["municipality_id"],
            "name": row["municipality_name"] or "",
            "households": _fmt_int(row["households"]),
            "persons_placed": _fmt_int(row["persons_placed"]),
            "capacity_persons": _fmt_int(cap_p),
            "used_persons": _fmt_int(used_p),
            "share_persons": _fmt_pct(used_p, cap_p, 0),
            "mean_score": _fmt_float(row["mean_score"]),
            "resources": [
                f"{_fmt_int(row[f'used_{r}'])} / {_fmt_int(row[f'capacity_{r}'])}" for r, _, _ in resources
            ],
        }

    top = (
        mun.sort(["used_persons", "municipality_id"], descending=[True, False]).head(TOP_MUNICIPALITIES)
        if "used_persons" in mun.columns else mun.head(0)
    )

    # ---- which capacities bind: full municipalities per resource, and the unplaced households lacking it
    binding_rows = [
        {
            "short": short,
            "offering": int((mun[f"capacity_{r}"] > 0).sum()),
            "full": int(mun[f"full_{r}"].sum()),
            "missed": int(mun[f"missed_{r}"].fill_null(0).sum()) if f"missed_{r}" in mun.columns else 0,
        }
        for r, short, _ in resources
    ]
    # The right panel only when some unplaced household lacked a capacity (an empty panel has no scale).
    with_misses = any(row["missed"] for row in binding_rows)

    # ---- figures
    figures: dict[str, str | None] = {
        "binding": _fig_binding(binding_rows, with_misses) if binding_rows and mun.height else None,
        "capacity": _fig_capacity(capacity_rows) if capacity_rows else None,
        "scores": _fig_score_hist(scores) if scores.size else None,
        "criteria": None,
        "map": None,
        "unplaced": None,
    }
    criteria_means: list[tuple[str, float]] = []
    if criteria and not nothing_placed:
        criteria_means = sorted(
            ((_criterion_words(c.removeprefix("score_")), float(proposals[c].mean())) for c in criteria),
            key=lambda kv: (-kv[1], kv[0]),
        )
        figures["criteria"] = _fig_criteria(criteria_means)

    located = mun.filter(pl.col("latitude").is_not_null() & pl.col("longitude").is_not_null())
    if located.height:
        if "capacity_persons" in located.columns:
            share = located.select(
                pl.when(pl.col("capacity_persons") > 0)
                .then(pl.col("used_persons") / pl.col("capacity_persons"))
                .otherwise(None)
            ).to_series().fill_null(float("nan")).to_numpy().astype(float)
        else:
            share = np.full(located.height, np.nan)
        figures["map"] = _fig_map(
            located["longitude"].to_numpy().astype(float),
            located["latitude"].to_numpy().astype(float),
            located["persons_placed"].to_numpy().astype(float),
            share,
        )

    # ---- unplaced households, counts by reason only
    unplaced = households.filter(~pl.col("placed"))
    reason_rows = _unplaced_reason_rows(households, mun)
    if reason_rows:
        figures["unplaced"] = _fig_unplaced(reason_rows)

    # ---- weakest proposals, by pseudonym, for a second look before they go out
    review = proposals.sort(["score", "household_pseudonym"], nulls_last=False).head(REVIEW_PROPOSALS)
    review_rows = [
        {
            "pseudonym": r["household_pseudonym"],
            "municipality": f"{r['municipality_name'] or ''} ({r['municipality_id']})",
            "persons": _fmt_int(r["persons"]),
            "score": _fmt_float(r["score"]),
            "locked": "locked" if r["locked"] else "",
            "criteria": [_fmt_float(r[c]) for c in criteria],
        }
        for r in review.iter_rows(named=True)
    ]

    solver_rows = [
        {
            "label": _solver_label(str(k)),
            # Gaps are fractions (0.004 = 0.4 %): shown as the headline shows them.
            "value": f"{100.0 * v:.2f} %" if str(k).endswith("gap") and _number(v) is not None
            else solved_words(v) if str(k).endswith("status") and isinstance(v, str) else _fmt_value(v),
        }
        for k, v in data.solver.items()
    ]
    count_rows = [
        {"label": _COUNT_LABELS.get(k, _humanise(str(k))), "value": _fmt_value(v)} for k, v in data.counts.items()
    ]

    return {
        "round_id": data.round_id,
        "period": data.period,
        "created_at": data.created_at,
        "nothing_placed": nothing_placed,
        "headline": headline,
        "warnings": warnings,
        "config_rows": _masked_config(data.config, data.solver.get("backend"), data.solver.get("period")),
        "solver_rows": solver_rows,
        "count_rows": count_rows,
        "capacity_rows": capacity_rows,
        "resources": resources,
        "top_municipalities": [mun_row(r) for r in top.iter_rows(named=True)],
        # The heading counts the rows shown: a round of 4 municipalities shows 4, not "the 15".
        "top_title": (
            f"The {_plural(top.height, 'municipality', 'municipalities')} with the highest persons use"
            if top.height < mun.height else f"{'The municipality' if top.height == 1 else 'All ' + _plural(top.height, 'municipality')} by persons use"
        ),
        "municipalities": [mun_row(r) for r in mun.iter_rows(named=True)],
        "has_reasons": has_reasons,
        "binding_with_misses": with_misses,
        "criteria": [_criterion_words(c.removeprefix("score_")) for c in criteria],
        "criteria_means": [{"name": n, "mean": _fmt_float(v, 3)} for n, v in criteria_means],
        "reason_rows": reason_rows,
        "capacity_offers": _offers_named(data.capacity_offers, mun),
        "decisions": _decisions_text(data.earlier_decisions),
        "mechanism_rows": _mechanism_rows(data.mechanisms),
        "distribution_key_text": _distribution_key_text(data.mechanisms),
        "distribution_key": bool(data.mechanisms.get("distribution_key")),
        "bound_text": _erased_since(data.solver, households.height) + _bound_text(data.solver, data.config.get("objective")),
        "unplaced_summary": (
            f"{_plural(unplaced.height, 'household', 'households')} with "
            f"{_plural(int(unplaced['persons'].sum()) if unplaced.height else 0, 'person', 'persons')}"
        ),
        "review_rows": review_rows,
        "coordinator": _coordinator_context(data.coordinator_pairs, proposals, mun),
        "review_summary": _plural(len(review_rows), "proposal", "proposals"),
        "review_total": _fmt_int(proposals.height),
        "figures": figures,
        "files": [{"name": name, "what": what} for name, what in data.files],
    }


# --------------------------------------------------------------------------- public API


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATE_DIR),
        autoescape=True,  # names and reasons are data: escape everything, whatever the file name
        undefined=jinja2.StrictUndefined,  # a typo in the template fails the test instead of printing ""
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_round_report(data: RoundReportData) -> str:
    """Render the round report as one self-contained HTML document.

    The document has inline CSS and base64 PNG figures, no scripts and no external URLs.
    Identical input gives byte-identical output. Only pseudonyms and aggregate numbers
    appear; columns of the input frames other than the documented ones are ignored.

    Raises:
        ValueError: if a frame lacks a required column (the message names the column only).
    """
    context = _build_context(data)
    return _environment().get_template("round_report.html").render(**context)


def write_round_report(data: RoundReportData, path: str | Path) -> Path:
    """Render the report and write it to ``path`` (UTF-8); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_round_report(data), encoding="utf-8")
    return target
