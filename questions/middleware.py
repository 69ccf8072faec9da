"""Refusing addresses that no link of ours and no honest visitor makes, before any view or database sees them."""

from __future__ import annotations

import codecs
import re
from urllib.parse import unquote_to_bytes

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from questions.records import UNSTORABLE, UNSTORABLE_CHARACTERS

# What no stored text may hold (controls, lone surrogates, noncharacters) may not come in either; a path
# has no use for tab, newline or carriage return, which a pasted search may hold.
UNWANTED_IN_TEXT = UNSTORABLE
UNWANTED_IN_PATH = re.compile(f"[\t\n\r{UNSTORABLE_CHARACTERS}]")


def unwanted_character(value: str) -> int | None:
    """Where `value` first holds a control character, lone surrogate or noncharacter; None when it holds none."""
    found = UNWANTED_IN_TEXT.search(value)
    return found.start() if found else None


def describe(character: str) -> str:
    return f"U+{ord(character):04X}"


# Django has already decoded the path, writing each byte that is not UTF-8 as its escape (%FF). No path
# of ours holds a literal "%", so an escape of a byte beyond ASCII there can only be such a byte.
BROKEN_UTF8_IN_PATH = re.compile("%[89A-F][0-9A-F]")


def _raw_query_string(request: HttpRequest) -> bytes:
    value = request.META.get("QUERY_STRING", "")
    if isinstance(request, WSGIRequest):
        try:
            # PEP 3333: the server's bytes, each carried as one latin-1 character.
            return value.encode("latin-1")
        except UnicodeEncodeError:
            pass
    return value.encode("utf-8", "surrogatepass")


def bad_address(request: HttpRequest) -> str | None:
    """Why the request's path or query string cannot be honest text, or None when both can."""
    path = request.path_info
    if BROKEN_UTF8_IN_PATH.search(path):
        return "The address is not valid UTF-8."
    if UNWANTED_IN_PATH.search(path):
        return "The address contains a control character or a Unicode noncharacter."
    # The query string is left as the server got it (Django would quietly turn bad bytes into U+FFFD),
    # escapes and all.
    try:
        query = unquote_to_bytes(_raw_query_string(request).replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return "The address’s query string is not valid UTF-8."
    if UNWANTED_IN_TEXT.search(query):
        return "The address’s query string contains a control character or a Unicode noncharacter."
    return None


def bad_charset(request: HttpRequest) -> str | None:
    """Why the request's declared charset cannot be used to read it, or None when it can. Django decodes
    the query string and a form with it; a charset that does not read plain ASCII as itself (UTF-16,
    UTF-32, EBCDIC) makes nonsense of every field, or fails half way."""
    charset = (getattr(request, "content_params", None) or {}).get("charset")
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None  # Django ignores a charset it does not know, and reads UTF-8.
    try:
        if ASCII_SAMPLE.decode(name) == ASCII_SAMPLE.decode("ascii"):
            return None
    except (LookupError, UnicodeError):
        # A codec Python knows that is no text encoding (rot13, base64, zlib) refuses to decode text; one
        # that is (punycode, utf-7) may fail on plain ASCII: neither can read a form.
        pass
    return f"The request says it is written in {charset[:40]}, which this site cannot read: send it as UTF-8."


ASCII_SAMPLE = b"q=written+questions&page=1"


class RefuseBadAddressesMiddleware:
    """A 400 for a NUL, a control character, a noncharacter or invalid UTF-8 in the path or query string,
    and for a charset that cannot be read (a form declaring UTF-16).
    Placed early, so that static files, redirects, views and the database never see such text (PostgreSQL
    refuses a NUL with an error, which would otherwise be a 500)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        reason = bad_address(request) or bad_charset(request)
        if reason is None:
            return self.get_response(request)
        # Rendered without the request: the page must not depend on what the refused address holds.
        return HttpResponse(render_to_string("400.html", {"reason": reason}), status=400)
