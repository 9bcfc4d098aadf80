"""Decoding the text files people export: encodings and separators a German office produces."""

from __future__ import annotations

from rematch_pipeline.formats.errors import InputFileError, Violation


UTF8_BOM = b"\xef\xbb\xbf"


def decode_text(data: bytes, file: str) -> str:
    """UTF-8 (with or without BOM), else Windows-1252 (a CSV re-saved by a German Excel)."""
    return decoded(data, file)[0]


def decoded(data: bytes, file: str) -> tuple[str, str, bool]:
    """decode_text's text, with the encoding it took and whether a UTF-8 BOM led the bytes (to write them back alike)."""
    bom = data.startswith(UTF8_BOM)
    body = data[len(UTF8_BOM) :] if bom else data
    # Windows-1252 decodes almost any bytes: UTF-16 (Excel's "Unicode Text") would pass as noise
    # and fail later as an unknown header.
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputFileError(Violation(file, None, None, "encoding: UTF-16 (Excel's Unicode Text); save as CSV UTF-8 or CSV (Trennzeichen-getrennt)"))
    if b"\x00" in body:
        raise InputFileError(Violation(file, None, None, "encoding: NUL bytes, not a text file (or UTF-16 without a byte order mark)"))
    for encoding in ("utf-8", "cp1252"):
        try:
            return body.decode(encoding), encoding, bom
        except UnicodeDecodeError as exc:
            error = exc
    raise InputFileError(Violation(file, None, None, "encoding: neither UTF-8 nor Windows-1252")) from error


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
