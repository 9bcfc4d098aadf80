"""Erasure on request: a household leaves the identity store and every derived table."""

from __future__ import annotations

from dagster_duckdb import DuckDBResource

from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import IdentityStore, pseudonym
from rematch_pipeline.resources.warehouse import warehouse_connection

# Warehouse columns that carry a household pseudonym.
_HOUSEHOLD_COLUMNS = ("household_pseudonym", "household_ref_pseudonym")


def erase_household(home: RematchHome, household_ref: str) -> int:
    """Delete a household everywhere; the erasure itself is recorded by pseudonym only. Returns rows removed."""
    identity = IdentityStore(home=home)
    target = pseudonym(home.secret(), "household", household_ref)
    removed = 0
    with warehouse_connection(DuckDBResource(database=str(home.warehouse_path))) as con:
        submissions = [r[0] for r in con.execute("SELECT DISTINCT submission_id FROM raw_households WHERE household_pseudonym = ?", [target]).fetchall()]
        con.execute("BEGIN TRANSACTION")
        tables = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE column_name IN ('household_pseudonym', 'household_ref_pseudonym', 'submission_id')"
        ).fetchall()
        for table, column in tables:
            if table == "erasures":
                continue
            if column in _HOUSEHOLD_COLUMNS:
                removed += len(con.execute(f'DELETE FROM "{table}" WHERE "{column}" = ? RETURNING 1', [target]).fetchall())
            elif submissions:
                placeholders = ", ".join("?" for _ in submissions)
                removed += len(con.execute(f'DELETE FROM "{table}" WHERE submission_id IN ({placeholders}) RETURNING 1', submissions).fetchall())
        con.execute("INSERT INTO erasures VALUES (?, now())", [target])
        con.execute("COMMIT")
    removed += identity.erase_household(target)
    return removed
