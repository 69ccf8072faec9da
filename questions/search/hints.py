"""Suggestions for what a person probably meant, shown beside what they typed."""

from __future__ import annotations

import re


def comma_hint(query: str) -> str:
    """People often type topics separated by commas, which the language reads as one phrase-less AND."""
    if '"' in query or re.search(r"\b(AND|OR|NOT)\b", query):
        return ""
    parts = [part.strip() for part in query.split(",") if part.strip()]
    if len(parts) < 2:
        return ""
    quoted = [f'"{part}"' if " " in part else part for part in parts]
    return " OR ".join(quoted)
