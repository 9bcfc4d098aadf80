"""Coordinators record accept/decline decisions from the Dagster UI: a decisions file in landing/.

The Launchpad's run config is stored in the Dagster instance, so a decision names the household
by its pseudonym (as report.html shows it), never by its reference. The file written is an
ordinary contract-D decisions file: the landing sensor ingests it and validation applies it,
exactly as for a file a coordinator drops into landing/decisions/.
"""

import datetime as dt
import enum
import re

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from rematch_pipeline.assets.failures import CONSOLE_LOGGER_RUN_CONFIG, reason_first, refused
from rematch_pipeline.coordinator_pairs import PSEUDONYM_RULE
from rematch_pipeline.formats.writers import write_csv
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.warehouse import table_exists, warehouse_connection
from rematch_pipeline.schemas.contract import DECISION, DECISION_ALIASES, DECISION_FIELDS, DECISION_REASON
from rematch_pipeline.schemas.models import HOUSEHOLD_PSEUDONYM_PATTERN
from rematch_pipeline.schemas.parsing import spelled_code
from rematch_pipeline.validation import NO_ROUND_RULE, NOT_A_PROPOSAL_RULE, NOT_PROPOSED_HOUSEHOLD_RULE, REPLACED_PROPOSAL_RULE
from rematch_pipeline.wording import counted

DECISION_COLUMNS: tuple[str, ...] = ("round_id", "household_pseudonym", "municipality_id", "decision", "reason")


# The reason's codes as the Launchpad offers them. A closed list in the config schema, so that Dagster refuses a
# sentence typed there before it makes a run: a run's config stays in Dagster's run storage and its UI.
DecisionReason = enum.Enum("DecisionReason", {code: code for code in DECISION_REASON})
# The decision's words as the Launchpad takes them: the codes and contract D's German words (DECISION_ALIASES), each in
# lower case, Capitalised and UPPER CASE. A closed list too: a word that is neither (a name typed in the wrong field)
# is refused by Dagster's config check before the run, and its config, exist. A file's cell is read in any case and
# with spaces around (parsing.code_spelled); Dagster's enum can only take listed words, and these are the ones typed.
DECISION_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        spelled for word in (*DECISION, *(alias for alias, _ in DECISION_ALIASES)) for spelled in (word, word.capitalize(), word.upper())
    )
)
DecisionWord = enum.Enum("DecisionWord", {word: word for word in DECISION_WORDS})


class Decision(dg.Config):
    """One answer to a proposal of the round."""

    household_pseudonym: str = Field(
        description="The household's pseudonym (H- and 20 hex digits) as report.html and households.csv show it; not the household reference of proposals.csv, never a name."
    )
    municipality_id: str = Field(description="AGS of the municipality the round proposed to this household (quote it in YAML: \"01001\").")
    decision: DecisionWord = Field(
        description=f"{' or '.join(DECISION)}, or the German {', '.join(alias for alias, _ in DECISION_ALIASES)}"
        " (lower case, Capitalised or UPPER CASE)."
    )
    # One of the contract's codes, or left out: a closed list, so a sentence is refused before a run exists.
    reason: DecisionReason | None = Field(
        default=None, description=f"Why, for a decline (optional): one of {', '.join(DECISION_REASON)}. No free text: run config is kept."
    )


class DecisionsConfig(dg.Config):
    """The round whose proposals are answered, and the answers."""

    round_id: str = Field(description="The round whose proposals are answered: its partition of `rounds` (e.g. r1).")
    decisions: list[Decision] = Field(
        description="One entry per household answered: household_pseudonym, municipality_id, decision (accept or decline) and an optional reason."
        " Linked households count only once every household of their group is answered alike."
    )


def decision_problems(
    config: DecisionsConfig,
    proposals: set[tuple[str, str]],
    accepted_elsewhere: dict[str, str] | None = None,
    link_groups: dict[str, str] | None = None,
    replaced: dict[tuple[str, str], str] | None = None,
) -> list[str]:
    """Why entries cannot be recorded, by entry (counted from 0, as Dagster's config errors and the round's
    locked_pairs[i] count them), field and rule (no values); [] when all can. link_groups: the round's proposed
    households that are linked with others, by pseudonym → link group. replaced: proposals of the round id's earlier
    runs (household, AGS) → when the round was last run, as validation's replaced_proposals."""
    problems = []
    proposed = {household for household, _ in proposals}
    for i, entry in enumerate(config.decisions):
        if entry.decision not in DECISION:
            problems.append(f"decisions[{i}].decision: code: not one of {', '.join(DECISION)}")
        # Name the field to correct, as validation does for a decisions file; a reference copied from proposals.csv
        # is told apart from a pseudonym the round did not propose.
        if not re.fullmatch(HOUSEHOLD_PSEUDONYM_PATTERN, entry.household_pseudonym):
            problems.append(f"decisions[{i}].household_pseudonym: {PSEUDONYM_RULE}")
        elif (entry.household_pseudonym, entry.municipality_id) in (replaced or {}) and (entry.household_pseudonym, entry.municipality_id) not in proposals:
            # Answered from the proposals a run again replaced: said as validation says it of a decisions file.
            field = "municipality_id" if entry.household_pseudonym in proposed else "household_pseudonym"
            run_again = (replaced or {})[entry.household_pseudonym, entry.municipality_id]
            problems.append(f"decisions[{i}].{field}: {REPLACED_PROPOSAL_RULE.format(run_again=run_again)}")
        elif entry.household_pseudonym not in proposed:
            problems.append(f"decisions[{i}].household_pseudonym: {NOT_PROPOSED_HOUSEHOLD_RULE}")
        elif (entry.household_pseudonym, entry.municipality_id) not in proposals:
            problems.append(f"decisions[{i}].municipality_id: {NOT_A_PROPOSAL_RULE}")
        other_round = (accepted_elsewhere or {}).get(entry.household_pseudonym)
        if entry.decision == "accept" and other_round is not None:
            # Validation would count neither accept (a household goes to one municipality).
            problems.append(
                f"decisions[{i}].decision: duplicate: the household accepted a proposal of round {other_round};"
                " it can go to one municipality only (decline that one first)"
            )
        earlier = [n for n, e in enumerate(config.decisions[:i]) if e.household_pseudonym == entry.household_pseudonym]
        if earlier:  # two answers for one household in one run: which one the coordinator meant is unknown
            problems.append(f"decisions[{i}].household_pseudonym: duplicate: the same household as decisions[{earlier[0]}]")
        group = (link_groups or {}).get(entry.household_pseudonym)
        differs = [
            n for n, e in enumerate(config.decisions[:i])
            if group is not None and (link_groups or {}).get(e.household_pseudonym) == group and e.decision != entry.decision
        ]
        if differs:  # validation would count none of the group's answers: linked households go together or not at all
            problems.append(f"decisions[{i}].decision: linked households: answered otherwise than its linked household in decisions[{differs[0]}]")
    return problems


def unanswered_partners(config: DecisionsConfig, link_groups: dict[str, str]) -> list[str]:
    """Lines for entries whose linked households (same link group in the round) this run leaves unanswered:
    validation holds the group's decisions back until every household of it is answered alike."""
    answered = {e.household_pseudonym for e in config.decisions}
    members: dict[str, list[str]] = {}
    for household, group in sorted(link_groups.items()):
        members.setdefault(group, []).append(household)
    lines = []
    for i, entry in enumerate(config.decisions):
        group = link_groups.get(entry.household_pseudonym)
        missing = [h for h in members.get(group, []) if h not in answered] if group is not None else []
        if missing:
            lines.append(
                f"decisions[{i}]: linked with {', '.join(missing)} in this round; the decision counts once every household"
                f" of the group is answered alike (in this run or another)"
            )
    return lines


def with_codes_spelled(config: DecisionsConfig) -> DecisionsConfig:
    """The config with each entry's decision read as a decisions file's cell is (`Accept`, `DECLINE`, `Zusage`
    are accept and decline: parsing.spelled_code, the file reader's own code path). Every word the Launchpad takes
    (DecisionWord) is a code's; a word that is no code would stay as typed, and decision_problems refuses it."""
    field = next(f for f in DECISION_FIELDS if f.name == "decision")
    # The config's member is read by its word; model_copy does not validate, so the entry then holds the code as text.
    entries = [e.model_copy(update={"decision": spelled_code(field, getattr(e.decision, "value", e.decision))}) for e in config.decisions]
    return config.model_copy(update={"decisions": entries})


def decisions_frame(config: DecisionsConfig) -> pl.DataFrame:
    """The entries as the rows of a contract-D decisions file."""
    rows = [(config.round_id, e.household_pseudonym, e.municipality_id, e.decision, e.reason.value if e.reason else "") for e in config.decisions]
    return pl.DataFrame(rows, schema=dict.fromkeys(DECISION_COLUMNS, pl.Utf8), orient="row")


@dg.op(pool="duckdb")
@reason_first
def record_decisions(context: dg.OpExecutionContext, config: DecisionsConfig, home: RematchHome, warehouse: DuckDBResource) -> None:
    """Check the entries against the round's proposals and write them to landing/decisions/ (all or none)."""
    config = with_codes_spelled(config)
    if not config.decisions:
        raise refused("nothing recorded: ", ["decisions: empty: add one entry per household answered (household_pseudonym, municipality_id, decision)"])
    with warehouse_connection(warehouse) as con:
        rows = (
            con.execute("SELECT household_pseudonym, municipality_id FROM proposals WHERE round_id = ?", [config.round_id]).fetchall()
            if table_exists(con, "proposals")
            else []
        )
        # Households proposed with others of their link group in this round (validation wants the group answered alike).
        linked = (
            dict(
                con.execute(
                    "SELECT household_pseudonym, link_group FROM round_households WHERE round_id = ? AND link_group IN"
                    " (SELECT link_group FROM round_households WHERE round_id = ? GROUP BY 1 HAVING count(*) > 1)",
                    [config.round_id, config.round_id],
                ).fetchall()
            )
            if table_exists(con, "round_households")
            else {}
        )
        replaced = {
            (h, m): run_again
            for h, m, run_again in con.execute(
                "SELECT DISTINCT p.household_pseudonym, p.municipality_id, strftime(r.started_at, '%Y-%m-%d %H:%M')"
                " FROM replaced_proposals p JOIN rounds r USING (round_id) WHERE round_id = ?",
                [config.round_id],
            ).fetchall()
        }
        accepted = dict(
            con.execute(
                "SELECT household_pseudonym, min(round_id) FROM decisions WHERE decision = 'accept' AND round_id != ? GROUP BY 1",
                [config.round_id],
            ).fetchall()
            if table_exists(con, "decisions")
            else []
        )
    if not rows:
        # Not echoed: the field is free text, and a name typed there by mistake would land in the run's failure.
        raise refused("nothing recorded: ", [f"round_id: {NO_ROUND_RULE} (run the round first, or check the id: its partition of `rounds`)"])
    problems = decision_problems(config, {(h, m) for h, m in rows}, accepted, linked, replaced)
    if problems:
        raise refused("nothing recorded: ", problems)
    for line in unanswered_partners(config, linked):
        context.log.warning(line)
    home.prepare()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    safe_round = re.sub(r"[^A-Za-z0-9_-]", "_", config.round_id)
    path = home.landing("decisions") / f"decisions-{safe_round}-ui-{stamp}.csv"
    write_csv(decisions_frame(config), path)
    accepted = sum(entry.decision == "accept" for entry in config.decisions)
    context.log.info(
        f"{counted(len(config.decisions), 'decision')} of round {config.round_id} ({accepted} accept) written to landing/decisions/{path.name}; "
        "the landing sensor ingests them (or run `rematch ingest`)"
    )
    # Nothing returned: an output would be pickled to the instance's storage, with a log line the run view shows.


# Its default run config names the console logger (failures.CONSOLE_LOGGER_RUN_CONFIG), as every job's does. A default
# config must be complete, and the op's config is required: it holds the op's fields empty, which the Launchpad shows as
# the form to fill in; launched as it is, the op refuses it (`decisions: empty`) with no stack on the terminal.
RECORD_DECISIONS_DEFAULT_CONFIG: dict[str, dict] = {
    **CONSOLE_LOGGER_RUN_CONFIG,
    "ops": {"record_decisions": {"config": {"round_id": "", "decisions": []}}},
}


@dg.job(config=RECORD_DECISIONS_DEFAULT_CONFIG, description="Record coordinators' accept/decline decisions on a round's proposals (households by pseudonym).")
def record_decisions_job() -> None:
    record_decisions()
