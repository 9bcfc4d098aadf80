"""Decoding the text files people export: encodings and separators a German office produces."""

from __future__ import annotations

import re

from rematch_pipeline.formats.errors import InputFileError, Violation


UTF8_BOM = b"\xef\xbb\xbf"
# A multi-byte UTF-8 character ("ü" is C3 BC); Windows-1252 text of German names rarely holds one.
MIXED_ENCODING = "encoding: UTF-8 with a byte of another encoding"
CUT_INSIDE_CHARACTER = "encoding: UTF-8 that ends inside a character"
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def decode_text(data: bytes, file: str, check_code_page: bool = True) -> str:
    """UTF-8 (with or without BOM), else Windows-1252 (a CSV re-saved by a German Excel); the readers' decoding.

    A file in code page 850 or Mac Roman that Windows-1252 happens to decode (refused_code_page) is refused, unless
    check_code_page is off: an archived copy of a file a version without that check ingested is read as it landed.
    """
    text, encoding, bom = decoded(data, file)
    if encoding == "cp1252" and check_code_page:
        refused_code_page(data[len(UTF8_BOM) :] if bom else data, file)
    return text


def decoded(data: bytes, file: str) -> tuple[str, str, bool]:
    """decode_text's text, with the encoding it took and whether a UTF-8 BOM led the bytes (to write them back alike).

    It does not refuse a code page 850 or Mac Roman file that decodes as Windows-1252 (decode_text does): erasure
    rewrites files through it byte for byte, which such a file survives."""
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
        mostly_utf8 = _UTF8_SEQUENCE.search(body) is not None
        if exc.reason == "unexpected end of data" and mostly_utf8:
            # UTF-8 up to its last bytes, which start a character and stop: a file cut off in transfer inside a
            # name's "ü", not a byte of another encoding (the rule below sent users to re-save a file that was fine).
            line = body.count(b"\n") + 1
            raise InputFileError(
                Violation(file, None, None, f"{CUT_INSIDE_CHARACTER} on line {line} (cut off in transfer?); download or copy the file again")
            ) from exc
        if mostly_utf8:
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


# Excel's "CSV (MS-DOS)" (code page 850) and "CSV (Macintosh)" (Mac Roman) write a German letter as a byte Windows-1252
# decodes too, as punctuation or a letter of the wrong case: "Jäger" as "J„ger" (850) or "JŠger" (Mac Roman), "Köln"
# as "K”ln", "MÜNCHEN" as "MšNCHEN". Only cp850's ü (0x81) and a few Mac letters are bytes Windows-1252 lacks.
_CODE_PAGES = (("cp850", "Excel's CSV (MS-DOS), code page 850"), ("mac_roman", "Excel's CSV (Macintosh), Mac Roman"))
_GERMAN_LETTERS = "äöüßÄÖÜé"
_CODE_PAGE_LETTER_BYTES = bytes(sorted({b for page, _ in _CODE_PAGES for b in range(0x80, 0x100) if bytes([b]).decode(page) in _GERMAN_LETTERS}))
# Such a byte inside a word: a letter (ASCII, or any byte past 0x7F, judged once decoded) on either side. The
# pattern starts with the byte (the look-behind after it), which lets the regex engine skip ahead: 5x faster.
_LETTER_BYTES_CLASS = b"[" + b"".join(b"\\x%02x" % b for b in _CODE_PAGE_LETTER_BYTES) + b"]"
_CODE_PAGE_LETTER_IN_WORD = re.compile(
    _LETTER_BYTES_CLASS + rb"(?<=[A-Za-z\x80-\xff]" + _LETTER_BYTES_CLASS + rb")(?=[A-Za-z\x80-\xff])"
)
# The same letters as Windows-1252 writes them: a file holding them is a Windows-1252 file.
_WINDOWS_1252_LETTER_BYTES = _GERMAN_LETTERS.encode("cp1252")


def _fits_word(trigram: str) -> bool:
    """Whether the middle of three characters is a letter that fits between its neighbours, as a German letter
    inside a name does: all three letters, a capital only between capitals ("KÖLN"), a small letter only before a
    small one ("Köln", "Jäger"); ß fits either way ("STRAßE")."""
    before, letter, after = trigram
    if not (before.isalpha() and letter.isalpha() and after.isalpha()):
        return False
    if letter == "ß":
        return True
    if letter.isupper():
        return before.isupper() and after.isupper()
    if letter.islower():
        return after.islower()
    return True


def refused_code_page(body: bytes, file: str) -> None:
    """Refuse a file (without BOM) Windows-1252 decodes but that code page 850 or Mac Roman wrote: read as
    Windows-1252 its umlauts would be garbled in names and answers without a word.

    The rule, conservative (docs/decisions.md, thirty-fourth session): a code page's evidence is each byte inside
    a word that the code page reads as a German letter fitting its neighbours (_fits_word) where Windows-1252 reads
    punctuation or a letter that does not fit ("J„ger", "JŠger"; "Košice" fits, so is no evidence); Windows-1252's
    evidence is each of its own German letters (ä ö ü ß Ä Ö Ü é) in the file. The file is refused when a code page
    has evidence and more of it than Windows-1252. The message names the file, the likely source and a line, never
    a value.
    """
    windows_1252_evidence = sum(body.count(b) for b in _WINDOWS_1252_LETTER_BYTES)
    evidence = {page: 0 for page, _ in _CODE_PAGES}
    first_at: dict[str, int] = {}
    for match in _CODE_PAGE_LETTER_IN_WORD.finditer(body):
        if max(evidence.values()) > windows_1252_evidence:
            break  # decided: the rest of a large file need not be scanned
        at = match.start()
        trigram = body[at - 1 : at + 2]
        as_windows_1252 = _fits_word(trigram.decode("cp1252"))
        for page, _ in _CODE_PAGES:
            read = trigram.decode(page)
            if read[1] in _GERMAN_LETTERS and _fits_word(read) and not as_windows_1252:
                evidence[page] += 1
                first_at.setdefault(page, at)
    page, source = max(_CODE_PAGES, key=lambda p: evidence[p[0]])  # ties: code page 850, Excel's default on Windows
    if evidence[page] == 0 or evidence[page] <= windows_1252_evidence:
        return
    line = body.count(b"\n", 0, first_at[page]) + 1
    raise InputFileError(
        Violation(
            file,
            None,
            None,
            f"encoding: {source}? read as Windows-1252 its umlauts would be garbled (first on line {line}); save the file again as CSV UTF-8",
        )
    )


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
