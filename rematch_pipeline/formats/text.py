"""Decoding the text files people export: encodings and separators a German office produces."""

from __future__ import annotations

import re

from rematch_pipeline.formats.errors import InputFileError, Violation


UTF8_BOM = b"\xef\xbb\xbf"
# A multi-byte UTF-8 character ("ü" is C3 BC); Windows-1252 text of German names rarely holds one.
MIXED_ENCODING = "encoding: UTF-8 with a byte of another encoding"
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


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
    try:
        return body.decode("utf-8"), "utf-8", bom
    except UnicodeDecodeError as exc:
        if _UTF8_SEQUENCE.search(body):
            # Mostly UTF-8 (its umlauts would turn into "Ã¼" as Windows-1252), with a stray byte: lines
            # pasted in from a file of the other encoding. Reading either way would garble names silently.
            line = body.count(b"\n", 0, exc.start) + 1
            raise InputFileError(
                Violation(file, None, None, f"{MIXED_ENCODING} (Windows-1252?) on line {line}; save the file again as CSV UTF-8")
            ) from exc
    try:
        return body.decode("cp1252"), "cp1252", bom
    except UnicodeDecodeError as exc:
        # Excel's "CSV (MS-DOS)" (code page 850: its ü is a byte Windows-1252 does not have) ends here, for one.
        raise InputFileError(
            Violation(file, None, None, "encoding: neither UTF-8 nor Windows-1252 (Excel's CSV (MS-DOS) or CSV (Macintosh)?); save the file again as CSV UTF-8")
        ) from exc


# Excel's separator line above the header (`sep=;`, `sep=,`, `sep=` and a tab): some scripts write it so that Excel
# splits the file by double-click, and Excel itself hides it. It names the separator; the header is the next line.
_EXCEL_SEPARATOR_LINE = re.compile(r"sep=([;,\t])[ ]*(?:\r\n|\n|\r|$)", re.IGNORECASE)


def excel_separator(text: str) -> str | None:
    """The separator Excel's separator line names where the text's first line is one (`sep=;` → `;`), else None."""
    match = _EXCEL_SEPARATOR_LINE.match(text)
    return match.group(1) if match else None


def sniff_delimiter(text: str) -> str:
    """The separator Excel's separator line names (`sep=;`), else `;`, `,` or tab: the one most frequent outside
    quotes in the first record (ties: `,`). The readers and erasure's line rewriting split a file alike by it."""
    named = excel_separator(text)
    if named is not None:
        return named
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
