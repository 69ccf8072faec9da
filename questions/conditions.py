"""Which questions are in which state, as database conditions: each is a `Question` property or method in SQL,
and what the search page, the department figures, the overdue events and the query language's due field
(`questions.search.sql`) all ask. Not in `questions.models`, which reads the query language's modules: those ask
them too. `prefix` reaches the questions from another model ("question__")."""

from __future__ import annotations

import datetime as dt

from django.db.models import F, Q


def answered_in_full(prefix: str = "") -> Q:
    """Questions with an answer that is not a holding one (`Question.has_substantive_answer`)."""
    return ~Q(**{f"{prefix}answer_text": ""}) & Q(**{f"{prefix}answer_is_holding": False})


def settled(prefix: str = "") -> Q:
    """Questions with nothing more to come but a correction: withdrawn, or answered other than by a holding
    answer. `prefix` reaches them from another model ("question__")."""
    return Q(**{f"{prefix}is_withdrawn": True}) | answered_in_full(prefix)


def overdue(today: dt.date, prefix: str = "") -> Q:
    """Questions overdue on `today` (`Question.is_overdue`): past their due date, and not settled. Written so that
    its negation is exact too: a question with no due date is not overdue, and `~overdue(today)` has it."""
    return (Q(**{f"{prefix}date_due__isnull": False, f"{prefix}date_due__lt": today})
            & ~settled(prefix))


def answered_late(prefix: str = "") -> Q:
    """Questions answered in full after their due date (`Question.days_late` above 0). Both days are asked to be
    known, so that `~answered_late()` holds for a question missing either, as it does in Python."""
    return answered_in_full(prefix) & Q(**{f"{prefix}date_answered__isnull": False,
                                           f"{prefix}date_due__isnull": False,
                                           f"{prefix}date_answered__gt": F(f"{prefix}date_due")})


def named_day(prefix: str = "") -> Q:
    """Named-day questions (`Question.is_named_day`)."""
    return Q(**{f"{prefix}is_named_day": True})
