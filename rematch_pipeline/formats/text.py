"""Decoding the text files people export: encodings and separators a German office produces."""

from __future__ import annotations

from rematch_pipeline.formats.errors import InputFileError, Violation


def decode_text(data: bytes, file: str) -> str:
    """UTF-8 (with or without BOM), else Windows-1252 (a CSV re-saved by a German Excel)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise InputFileError(Violation(file, None, None, "encoding: neither UTF-8 nor Windows-1252")) from exc


def sniff_delimiter(text: str) -> str:
    """`;`, `,` or tab: the one most frequent outside quotes in the first record (ties: `,`)."""
    counts = {";": 0, ",": 0, "\t": 0}
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            if char in "\r\n":
                break
            if char in counts:
                counts[char] += 1
    return max(counts, key=lambda d: (counts[d], d == ","))
