"""Keeping the tokens of the links we email out of logs: whoever reads a manage token in a log line can
change that person's alerts for 90 days, and a change-of-address token carries the new address, readable
by anyone (it is signed, not encrypted)."""

import logging
import re

# The path segment after each prefix is a signed token (see alerts/urls.py).
TOKEN_IN_PATH = re.compile(r"(/(?:alerts/manage|alerts/confirm|alerts/new-address|unsubscribe)/)[^/?#\s'\"]+")
REDACTED = "[token]"


def redact(text: str) -> str:
    return TOKEN_IN_PATH.sub(rf"\1{REDACTED}", text)


class RedactTokens(logging.Filter):
    """Takes tokens out of a record's message and of the request Django attaches to its own records
    (a 404 or 400 on a link is logged with the path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if TOKEN_IN_PATH.search(message):
            record.msg, record.args = redact(message), ()
        request = getattr(record, "request", None)
        if request is not None and not isinstance(request, str):
            record.request = redact(str(request))
        return True
