"""Pairs a coordinator sets for a round: locked (the household goes there) and forbidden (never there).

A pair names the household by pseudonym and the municipality by AGS, as proposals and report.html
show them: run config is kept in the Dagster instance, so a reference or a name never belongs in it.
Pseudonyms and AGS are no personal data, so the messages here may name them; a value that does not
have the shape of either may be anything typed in by mistake and is never repeated.

A lock holds the household's link group (its unit in the assignment): linked households move together,
so locking one locks them all to that municipality. A forbidden pair of one linked household keeps its
whole group away from that municipality (a group goes only where each of its households may go).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from rematch_pipeline.engine.compatibility import exclusion_counts
from rematch_pipeline.features import CAPACITY_COLUMNS, RESOURCES
from rematch_pipeline.schemas.models import HOUSEHOLD_PSEUDONYM_PATTERN
from rematch_pipeline.schemas.parsing import AGS_PATTERN
from rematch_pipeline.wording import number_runs, rule_words

LOCKED, FORBIDDEN = "locked", "forbidden"
# Config field of each kind of pair: messages name the field and the entry as Dagster does (from 0).
FIELDS: dict[str, str] = {LOCKED: "locked_pairs", FORBIDDEN: "forbidden_pairs"}
# Rule name of a forbidden pair beside the hard rules (engine.compatibility.RULES) in round_exclusions.
FORBIDDEN_RULE = "forbidden_by_coordinator"
# round_coordinator_pairs: one row per config entry.
PAIRS_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.Utf8,
    "entry": pl.Int64,
    "household_pseudonym": pl.Utf8,
    "municipality_id": pl.Utf8,
}

# A household field of the Launchpad that is not a pseudonym. proposals.csv, the coordinators' list, shows the household
# reference (household_ref), not the pseudonym: "as the proposals show it" sent coordinators to the one file without it.
PSEUDONYM_RULE = (
    "format: a household pseudonym (H- and 20 hex digits) as report.html and households.csv show it;"
    " not the household reference of proposals.csv, never a name"
)

@dataclass(frozen=True)
class CoordinatorPairs:
    """The round's locked and forbidden pairs, each a (household_pseudonym, municipality_id) in config order."""

    locked: tuple[tuple[str, str], ...] = ()
    forbidden: tuple[tuple[str, str], ...] = ()

    def entries(self) -> list[tuple[str, int, str, str]]:
        """(kind, entry, household_pseudonym, municipality_id) of every pair, locks first."""
        return [(LOCKED, i, h, m) for i, (h, m) in enumerate(self.locked)] + [
            (FORBIDDEN, i, h, m) for i, (h, m) in enumerate(self.forbidden)
        ]

    def frame(self) -> pl.DataFrame:
        """The pairs as rows of round_coordinator_pairs."""
        return pl.DataFrame(self.entries(), schema=PAIRS_SCHEMA, orient="row")

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> CoordinatorPairs:
        """The pairs stored in round_coordinator_pairs, back in config order."""
        def pick(kind: str) -> tuple[tuple[str, str], ...]:
            rows = frame.filter(pl.col("kind") == kind).sort("entry")
            return tuple(rows.select("household_pseudonym", "municipality_id").iter_rows())

        return cls(locked=pick(LOCKED), forbidden=pick(FORBIDDEN))

    def field_problems(self) -> list[str]:
        """Mistakes visible in the pairs alone (shape, duplicates, a pair both locked and forbidden):
        `field[entry]...: rule`, the value never repeated. [] when there are none."""
        problems = []
        for kind, i, h, m in self.entries():
            if not re.fullmatch(HOUSEHOLD_PSEUDONYM_PATTERN, h):
                problems.append(f"{FIELDS[kind]}[{i}].household_pseudonym: {PSEUDONYM_RULE}")
            if not re.fullmatch(AGS_PATTERN, m):
                problems.append(f"{FIELDS[kind]}[{i}].municipality_id: format: an AGS of 5 or 8 digits (quoted in YAML, so a leading zero stays)")
        first_lock: dict[str, int] = {}
        for i, (h, _) in enumerate(self.locked):
            first = first_lock.setdefault(h, i)
            if first != i:
                problems.append(f"locked_pairs[{i}]: duplicate: locked_pairs[{first}] locks the same household already (one lock per household)")
        locked_at = {pair: i for i, pair in reversed(list(enumerate(self.locked)))}
        first_forbid: dict[tuple[str, str], int] = {}
        for i, pair in enumerate(self.forbidden):
            first = first_forbid.setdefault(pair, i)
            if first != i:
                problems.append(f"forbidden_pairs[{i}]: duplicate: the same pair as forbidden_pairs[{first}]")
            if pair in locked_at:
                problems.append(f"forbidden_pairs[{i}]: conflict: locked_pairs[{locked_at[pair]}] locks the same pair; a pair is locked or forbidden, not both")
        return problems

    def round_problems(
        self,
        period: str,
        known: pl.DataFrame,
        pool: pl.DataFrame,
        municipalities: pl.DataFrame,
        pairs: pl.DataFrame,
        offers: pl.DataFrame | None = None,
    ) -> list[str]:
        """Mistakes against the round, after field_problems found none: a household not in the pool or a
        municipality without an offer, and locks that break a hard rule, split a link group or together
        exceed a municipality's remaining capacity. [] when the round can keep every pair.

        known: household_features rows (household_pseudonym, submitted_period, accepted_municipality_id) of
        the households named, to say why one is not in the pool; pool: the round's households (features,
        link_group); municipalities: their remaining capacities; pairs: the candidate pairs (every hard rule);
        offers: the municipalities' capacities before accepted proposals took theirs (None: the same), so that a
        lock kept out only by what accepted proposals took is said once, as capacity, not as a hard rule.
        """
        in_pool = set(pool.get_column("household_pseudonym").to_list())
        places = set(municipalities.get_column("municipality_id").to_list())
        status = {row["household_pseudonym"]: row for row in known.iter_rows(named=True)}
        problems = []
        for kind, i, h, m in self.entries():
            if h not in in_pool:
                problems.append(f"{FIELDS[kind]}[{i}].household_pseudonym: reference: {h} is not in this round's pool ({_why_not_in_pool(status.get(h), period)})")
            if m not in places:
                problems.append(f"{FIELDS[kind]}[{i}].municipality_id: reference: {m} has no validated offer for period {period}")
        if problems or not self.locked:
            return problems

        group_of = dict(zip(pool.get_column("household_pseudonym").to_list(), pool.get_column("link_group").to_list(), strict=True))
        members: dict[str, list[str]] = defaultdict(list)
        for h, g in sorted(group_of.items()):
            members[g].append(h)
        # Only the pairs of the locked link groups at their places: a set of every candidate pair would hold
        # ~15 M Python tuples in a national round (+1.5 GiB, measured).
        wanted = pl.DataFrame(
            [(other, m) for h, m in self.locked for other in members[group_of[h]]],
            schema={"household_pseudonym": pl.String, "municipality_id": pl.String},
            orient="row",
        )
        candidate = set(
            pairs.select("household_pseudonym", "municipality_id").join(wanted.unique(), on=["household_pseudonym", "municipality_id"], how="semi").iter_rows()
        )
        forbidden_at = {pair: i for i, pair in reversed(list(enumerate(self.forbidden)))}
        group_lock: dict[str, tuple[int, str]] = {}
        locked_groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, (h, m) in enumerate(self.locked):
            group = group_of[h]
            first, place = group_lock.setdefault(group, (i, m))
            if place != m:
                problems.append(
                    f"locked_pairs[{i}]: linked households: locked_pairs[{first}] locks a household of the same link group to {place};"
                    " linked households move together, so lock them to one municipality"
                )
                continue
            locked_groups[m][group].append(i)
            for other in members[group]:
                if other != h and (other, m) in forbidden_at:
                    problems.append(
                        f"locked_pairs[{i}]: linked households: forbidden_pairs[{forbidden_at[other, m]}] forbids {other},"
                        f" linked to this household, at {m}; linked households move together"
                    )
            blocked = [other for other in members[group] if (other, m) not in candidate]
            blocked_pool = pool.filter(pl.col("household_pseudonym").is_in(blocked))
            rules = _rules_against(blocked_pool, municipalities.filter(pl.col("municipality_id") == m))
            whole = rules if offers is None else _rules_against(blocked_pool, offers.filter(pl.col("municipality_id") == m))
            for other in blocked:
                who = other if other == h else f"{other} (linked to this household)"
                # A resource the whole offer has room for but accepted proposals took: _capacity_problems names it
                # with what is left ("needs more persons than offered" read as wrong for an offer of 23 and 2 persons).
                named = [rule for rule in rules.get(other, []) if not rule.startswith("resource_") or rule in whole.get(other, [])]
                if rules.get(other) and not named:
                    continue
                # The rules in the report's words: a code such as largest_unit says nothing to the coordinator who typed the lock.
                broken = ", ".join(rule_words(rule) for rule in named)
                problems.append(f"locked_pairs[{i}]: hard rule: {who} cannot go to {m} ({broken or 'not a candidate pair'})")
        return problems + _capacity_problems(locked_groups, pool, municipalities, period)


def _why_not_in_pool(row: dict | None, period: str) -> str:
    """Why a household named in a pair is not among the round's households."""
    if row is None:
        return "no validated household has this pseudonym: mistyped, erased, or held out by validation"
    if row.get("accepted_municipality_id"):
        return f"it accepted a proposal to {row['accepted_municipality_id']} earlier and is kept there"
    if row.get("submitted_period") and row["submitted_period"] > period:
        return f"it submitted after period {period}"
    return "a household linked to it is not in the pool, so its link group waits"


def _rules_against(households: pl.DataFrame, municipality: pl.DataFrame) -> dict[str, list[str]]:
    """Per household, the hard rules (engine.compatibility.RULES order) that keep it from the one municipality."""
    if households.is_empty() or municipality.is_empty():
        return {}
    counts = exclusion_counts(households, municipality).filter((pl.col("rule") != "any") & (pl.col("municipalities_excluded") > 0))
    rules: dict[str, list[str]] = defaultdict(list)
    for h, rule in counts.select("household_pseudonym", "rule").iter_rows():
        rules[h].append(rule)
    return rules


def _capacity_problems(locked_groups: dict[str, dict[str, list[int]]], pool: pl.DataFrame, municipalities: pl.DataFrame, period: str) -> list[str]:
    """Municipalities whose locked households together need more of a resource than is left there."""
    problems = []
    for m in sorted(locked_groups):
        groups = locked_groups[m]
        need = pool.filter(pl.col("link_group").is_in(list(groups))).select(pl.col(r).fill_null(0).sum() for r in RESOURCES).row(0, named=True)
        left = municipalities.filter(pl.col("municipality_id") == m).row(0, named=True)
        over = [
            f"{int(need[r])} {r} ({int(left[CAPACITY_COLUMNS[r]] or 0)} left)"
            for r in RESOURCES
            if need[r] > (left[CAPACITY_COLUMNS[r]] or 0)
        ]
        if over:
            entries = f"locked_pairs[{_entry_ranges(sorted(i for found in groups.values() for i in found))}]"
            problems.append(f"{entries}: capacity: the locks at {m} need {', '.join(over)} in period {period}; lock fewer households there")
    return problems


def _entry_ranges(indices: Sequence[int]) -> str:
    """Sorted list entries as runs, `0..4,7,9`: one field name however many locks a municipality has
    (listed one by one, 200 locks at one place made a line of 3,000 characters)."""
    return number_runs(indices, through="..", separator=",")


def exclusions_with_forbidden(
    exclusions: pl.DataFrame, by_municipality: pl.DataFrame, forbidden: pl.DataFrame, forbidden_candidates: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The exclusion tables (engine.compatibility.exclusion_tables) with the forbidden pairs as one more rule.

    FORBIDDEN_RULE counts every forbidden pair (rules are counted independently); "any" grows by the
    forbidden pairs that were candidates, so "any" still counts the pairs that are not candidates.
    """
    def added(table: pl.DataFrame, key: str, counted: str) -> pl.DataFrame:
        per_key = forbidden.group_by(key).agg(pl.len().cast(pl.Int64).alias("_forbidden"))
        newly = forbidden_candidates.group_by(key).agg(pl.len().cast(pl.Int64).alias("_newly"))
        rule_rows = (
            table.filter(pl.col("rule") == "any")
            .select(key)
            .join(per_key, on=key, how="left")
            .select(key, pl.lit(FORBIDDEN_RULE).alias("rule"), pl.col("_forbidden").fill_null(0).alias(counted))
        )
        updated = (
            table.join(newly, on=key, how="left")
            .with_columns(
                pl.when(pl.col("rule") == "any").then(pl.col(counted) + pl.col("_newly").fill_null(0)).otherwise(pl.col(counted)).alias(counted)
            )
            .drop("_newly")
        )
        return pl.concat([updated, rule_rows.cast(updated.schema)], how="vertical")

    return added(exclusions, "household_pseudonym", "municipalities_excluded"), added(by_municipality, "municipality_id", "households_excluded")
