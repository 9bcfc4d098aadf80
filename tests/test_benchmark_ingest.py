"""The ingestion benchmark suite runs end to end on a tiny round and prints its tables."""

from __future__ import annotations

import resource

import pytest

from benchmarks.__main__ import main


def test_ingest_suite_prints_read_and_ingest_tables(capsys: pytest.CaptureFixture) -> None:
    assert main(["--suite", "ingest", "--sizes", "30", "--municipalities", "4", "--formats", "limesurvey-csv"]) == 0
    out = capsys.readouterr().out
    assert "## Ingestion: 30 households × 4 districts" in out
    assert "| households | limesurvey-csv (limesurvey-csv) | 1 (" in out and "| households | csv (canonical-csv) | 2 (" in out
    # Both formats ingest the whole round: the same validated counts, nothing quarantined.
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith(("| csv | ", "| limesurvey-csv | "))]
    assert len(rows) == 2 and rows[0][5] == rows[1][5] and rows[0][5].startswith("4 / 30 / ") and rows[0][6] == "0 |"
    # A reader's peak is its own process's, not this (larger) forking process's size carried over exec.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    read_peaks = [float(line.split(" | ")[5].replace(",", "")) for line in out.splitlines() if line.startswith("| households | ")]
    assert read_peaks and own > 200 and all(0 < peak < own / 2 for peak in read_peaks), (own, read_peaks)
