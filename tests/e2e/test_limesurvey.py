"""A LimeSurvey export with an incomplete response, through ingestion and erasure."""

from __future__ import annotations

import duckdb
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.schemas.limesurvey_codes import LIMESURVEY_QUESTION_CODES
from tests.formats.fixtures.exports import HOUSEHOLDS, limesurvey_csv, limesurvey_records

FILE = "results-survey123456.csv"
GAVE_UP = "UA-2026-DROPOUT-7"  # the household reference typed by a respondent who gave up on page 2


def _with_reference_in_the_incomplete_response() -> bytes:
    """The fixture export (BOM, `;`, all quoted, CRLF) whose incomplete last response holds a household reference."""
    rows = limesurvey_records(limesurvey_csv())
    rows[-1][rows[0].index(LIMESURVEY_QUESTION_CODES["households"]["household_ref"])] = GAVE_UP
    text = "\r\n".join(";".join(f'"{c}"' for c in row) for row in rows) + "\r\n\r\n"
    return b"\xef\xbb\xbf" + text.encode()


def _query(home: RematchHome, sql: str) -> list[tuple]:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_an_incomplete_response_is_left_out_counted_and_erasable(
    home: RematchHome, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (home.landing("households") / FILE).write_bytes(_with_reference_in_the_incomplete_response())
    monkeypatch.setenv("REMATCH_HOME", str(home.path))
    capsys.readouterr()
    assert main(["ingest"]) == 0
    assert f"left out: {FILE}: incomplete LimeSurvey responses: 1" in capsys.readouterr().out
    assert _query(home, "SELECT count(*) FROM raw_households") == [(len(HOUSEHOLDS) + 1,)]
    assert _query(home, "SELECT count(*) FROM households") == [(len(HOUSEHOLDS),)]
    assert _query(home, "SELECT rule FROM superseded_submissions") == [("left out: incomplete LimeSurvey responses",)]
    # Nothing of it is in quarantine: an unfinished response is no error.
    assert _query(home, "SELECT count(*) FROM quarantine WHERE file_row = 4") == [(0,)]

    # Stored like any response, it is within erasure's reach: its reference leaves the landed and archived export.
    assert main(["erase", GAVE_UP]) == 0
    copies = [home.landing("households") / FILE, *home.archive.glob("*.csv")]
    assert len(copies) == 2
    for path in copies:
        assert GAVE_UP.encode() not in path.read_bytes(), path
    assert _query(home, "SELECT count(*) FROM households") == [(len(HOUSEHOLDS),)]


def test_a_vv_export_is_ingested_and_erasure_keeps_its_two_header_rows(
    home: RematchHome, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from rematch_pipeline.formats.detect import read_export
    from tests.formats.fixtures.exports import limesurvey_vv

    vv = home.landing("households") / "vvexport_654321.csv"
    vv.write_bytes(limesurvey_vv("households"))
    monkeypatch.setenv("REMATCH_HOME", str(home.path))
    capsys.readouterr()
    assert main(["ingest"]) == 0
    assert f"left out: {vv.name}: incomplete LimeSurvey responses: 1" in capsys.readouterr().out
    assert _query(home, "SELECT count(*) FROM households") == [(len(HOUSEHOLDS),)]
    assert _query(home, "SELECT min(file_row) FROM raw_households") == [(3,)]  # row 1 texts, row 2 codes

    reference = HOUSEHOLDS[0]["household_ref"]
    assert main(["erase", reference]) == 0
    for path in [vv, *home.archive.glob("*.csv")]:
        assert reference.encode() not in path.read_bytes(), path
        households = read_export(path, path.read_bytes())[0]
        assert households.frame.height == len(HOUSEHOLDS)  # one erased, the incomplete one still there
    assert _query(home, "SELECT count(*) FROM households") == [(len(HOUSEHOLDS) - 1,)]


def test_yes_and_no_converted_to_1_and_2_at_export_are_ingested(
    home: RematchHome, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # LimeSurvey's "Convert Y to: 1" / "Convert N to: 2" (the values preset on its export page). Before, every household
    # that answered a yes/no question with no was held out (`pets: type: yes/no`).
    (home.landing("households") / FILE).write_bytes(limesurvey_csv(convert=("1", "2")))
    monkeypatch.setenv("REMATCH_HOME", str(home.path))
    capsys.readouterr()
    assert main(["ingest"]) == 0
    out = capsys.readouterr().out
    assert "held out" not in out and "quarantined" not in out
    assert _query(home, "SELECT count(*) FROM quarantine") == [(0,)]
    assert _query(home, "SELECT count(*) FROM households") == [(len(HOUSEHOLDS),)]
    assert sorted(_query(home, "SELECT pets, consent_followup FROM households")) == sorted(
        (h["pets"] == "yes", h["consent_followup"] == "yes") for h in HOUSEHOLDS
    )


def test_participant_columns_under_code_and_text_headings_are_stored_nowhere(
    home: RematchHome, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A households export with Participant control under 'question code & question text' headings was refused; now
    it is ingested, and the participants' names and e-mail addresses are in no table of either store."""
    from tests.formats.fixtures.exports import limesurvey_text_csv
    from tests.formats.test_limesurvey import _with_participant_columns

    secrets = ["Olena-Participant-Qz", "Kovalenko-Participant-Qz", "olena.participant@example.org", "Attribut-Wert-Qz"]
    data = _with_participant_columns(
        limesurvey_text_csv("households", "de", "codetext", system_language="en"),
        ["firstname. First name", "lastname. Last name", "email. Email address", "attribute_1. Amt der Kontaktperson"],
        secrets,
    )
    (home.landing("households") / FILE).write_bytes(data)
    monkeypatch.setenv("REMATCH_HOME", str(home.path))
    capsys.readouterr()
    assert main(["ingest"]) == 0
    said = capsys.readouterr()
    assert "rejected: " not in said.err and not [s for s in secrets if s in said.out + said.err]
    assert _query(home, "SELECT count(*) FROM households") == [(len(HOUSEHOLDS),)]
    for path in (home.warehouse_path, home.identity_path):
        with duckdb.connect(str(path), read_only=True) as con:
            tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
            stored = " ".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
        assert not [s for s in secrets if s in stored], path.name
