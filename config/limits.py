"""`{% limit "name" %}` in every template (a builtin, emails included): the numbers that pages and emails tell
people, read from where each is enforced rather than typed again beside it."""

from __future__ import annotations

from django import template

register = template.Library()


def limits() -> dict[str, int]:
    from alerts import tokens
    from alerts.subscribing import ARCHIVE_COUNT_CAP, PREVIEW_DAYS
    from questions.search import MAX_LENGTH, MAX_TERMS, MIN_PREFIX

    return {
        "query_characters": MAX_LENGTH,
        "query_terms": MAX_TERMS,
        "wildcard_letters": MIN_PREFIX,
        "count_cap": ARCHIVE_COUNT_CAP,
        "preview_days": PREVIEW_DAYS,
        "confirm_link_days": tokens.MAX_AGE[tokens.CONFIRM].days,
        "manage_link_days": tokens.MAX_AGE[tokens.MANAGE].days,
        "new_email_link_hours": int(tokens.MAX_AGE[tokens.NEW_EMAIL].total_seconds() // 3600),
    }


@register.simple_tag
def limit(name: str) -> str:
    """The number called `name` in `limits()`, as prose writes it ("1,000"); an unknown name is an error,
    never a blank on the page."""
    return f"{limits()[name]:,}"
