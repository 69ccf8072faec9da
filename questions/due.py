"""When a written question's answer is due, and how late it came: the rule of docs/due-dates.md.

The API gives each Commons question a date for answer. A named-day question must be answered on that day. For
an ordinary one it is only the first day it may be answered (two sitting days after tabling); Ministers are to
answer within a working week of tabling, so it is due three working days after that date. The API's date
already skips any recess between tabling and answer, so counting from it leaves recesses out where counting
from the tabling date would not. Without a date for answer, an ordinary question is due five working days
after it was tabled.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import holidays

# A working week from tabling: the date for answer is two sitting days in, the rest come after it.
WORKING_DAYS_AFTER_DATE_FOR_ANSWER = 3
WORKING_DAYS_AFTER_TABLING = 5


# A date a source got wrong (year 1, year 9999) is still given a due date, with no bank holidays that far off.
HOLIDAY_YEARS = range(1900, 2200)


@cache
def _bank_holidays(year: int) -> frozenset[dt.date]:
    if year not in HOLIDAY_YEARS:
        return frozenset()
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def is_working_day(day: dt.date) -> bool:
    """Monday to Friday, and not a bank holiday in England (where Whitehall works)."""
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def working_days_after(day: dt.date, count: int) -> dt.date | None:
    """The `count`th working day after `day`; None past the calendar's end."""
    while count:
        if day == dt.date.max:
            return None
        day += dt.timedelta(days=1)
        count -= is_working_day(day)
    return day


def due_date(date_tabled: dt.date | None, date_for_answer: dt.date | None, is_named_day: bool) -> dt.date | None:
    """The last day on which the answer is on time; None where neither date is known."""
    if is_named_day:
        return date_for_answer
    if date_for_answer is not None:
        return working_days_after(date_for_answer, WORKING_DAYS_AFTER_DATE_FOR_ANSWER)
    if date_tabled is not None:
        return working_days_after(date_tabled, WORKING_DAYS_AFTER_TABLING)
    return None
