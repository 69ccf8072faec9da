"""A feed's bytes made UTF-8 text before feedparser sees them, so that what is wrong in one item stays in that item.

Left to itself, feedparser re-reads the whole document as windows-1252 when one byte is not in the declared
encoding (garbling every item), and its fallback parser gives up on the whole feed at one character reference to
no character. Here each such fault becomes a marker character the document does not otherwise hold; `restore`
turns markers into U+FFFD and says which faults a piece of text held.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

UNDECODABLE = "\udcff"  # a lone surrogate: no valid decoding yields one


def _undecodable(exc: UnicodeDecodeError) -> tuple[str, int]:
    return UNDECODABLE, exc.end


codecs.register_error("feed-undecodable", _undecodable)

CHARACTER_REFERENCE = re.compile(r"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*?\?>")
DECLARED_ENCODING = re.compile(r"""encoding\s*=\s*(["'])(.*?)\1""")
DECLARED_ENCODING_BYTES = re.compile(rb"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
CHARSET = re.compile(r";\s*charset\s*=\s*[\"']?([^;\"'\s]*)[\"']?", re.IGNORECASE)
# Byte order marks, and how a document without one starts "<?" in each wide encoding: longest first.
SIGNATURES = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
    (b"<\0\0\0", "utf-32-le"), (b"\0\0\0<", "utf-32-be"), (b"<\0?\0", "utf-16-le"), (b"\0<\0?", "utf-16-be"),
)
# A run of bytes only UTF-8 makes: a document with none, for all it says, is not UTF-8.
UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
# Private-use characters, from which the markers are picked: storable, and no XML parser touches them.
MARKER_RANGE = range(0xF0000, 0xFFFFE)

BAD_BYTES = "bytes that are not {encoding}"
NO_CHARACTER = "a character reference to no character"


@dataclass
class Decoded:
    body: bytes  # UTF-8, declared as such
    headers: dict[str, str]
    markers: dict[str, str]  # marker -> which fault it stands for

    def restore(self, value: str) -> tuple[str, list[str]]:
        """The value with each marker made U+FFFD, and the faults it held."""
        faults = [fault for marker, fault in self.markers.items() if marker in value]
        for marker in self.markers:
            value = value.replace(marker, "\ufffd")
        return value, faults

    def plain(self, value: str) -> str:
        return self.restore(value)[0]


def _codec(name: str) -> str | None:
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    # Only text encodings: "base64" and the like are codecs too.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _wide(codec: str) -> bool:
    return codec.startswith(("utf-16", "utf-32"))


def _candidates(body: bytes, headers: dict[str, str]) -> list[str]:
    """The encodings the document may be in, the most trustworthy first (a byte order mark, then the HTTP
    charset, then the XML declaration, then UTF-8)."""
    sniffed = next((codec for start, codec in SIGNATURES if body.startswith(start)), None)
    if sniffed:
        return [sniffed]
    charset = CHARSET.search(_content_type(headers))
    declared = DECLARED_ENCODING_BYTES.match(body)
    names = [charset and charset[1], declared and declared[1].decode("ascii"), "utf-8"]
    codecs_ = [_codec(name) for name in names if name]
    # A document that starts in ASCII is in no wide encoding, whatever it or its server says.
    return list(dict.fromkeys(c for c in codecs_ if c and not _wide(c)))


def _content_type(headers: dict[str, str]) -> str:
    return next((value for key, value in headers.items() if key.lower() == "content-type"), "")


def _decode(body: bytes, candidates: list[str]) -> tuple[str, str]:
    for codec in candidates:
        try:
            return body.decode(codec), codec
        except UnicodeDecodeError:
            continue
    codec = candidates[0]
    if codec == "utf-8" and not UTF8_SEQUENCE.search(body):
        # Said to be UTF-8, but no character in it is: an old site's windows-1252, read as such.
        codec = "cp1252"
    return body.decode(codec, errors="feed-undecodable"), codec


def _no_character(found: re.Match) -> bool:
    digits = (found[1] or found[2]).lstrip("0")
    if len(digits) > 8:  # past Unicode either way, and too long for int() to be asked
        return True
    code = int(digits or "0", 16 if found[1] else 10)
    return 0xD800 <= code <= 0xDFFF or code > 0x10FFFF


def as_utf8(body: bytes, headers: dict[str, str]) -> Decoded:
    """The document as UTF-8 that says so, each byte not in its encoding and each reference to no character
    (a lone surrogate, a number past Unicode) a marker; `headers` with the charset made UTF-8 to match."""
    document, codec = _decode(body, _candidates(body, headers))
    document = document.lstrip("\ufeff")
    present = set(document)
    free = (chr(code) for code in MARKER_RANGE if chr(code) not in present)
    bad_bytes, no_character = next(free, "\ufffd"), next(free, "\ufffd")
    document = document.replace(UNDECODABLE, bad_bytes)
    document = CHARACTER_REFERENCE.sub(lambda found: no_character if _no_character(found) else found[0], document)
    document = XML_DECLARATION.sub(lambda found: DECLARED_ENCODING.sub('encoding="utf-8"', found[0]), document)
    # A charset the server named would be read again over the UTF-8 handed on.
    headers = {key: CHARSET.sub("; charset=utf-8", value) if key.lower() == "content-type" else value
               for key, value in headers.items()}
    faults = {bad_bytes: BAD_BYTES.format(encoding=codec.removesuffix("-sig")), no_character: NO_CHARACTER}
    markers = {marker: fault for marker, fault in faults.items() if marker != "\ufffd"}
    return Decoded(document.encode("utf-8"), headers, markers)
