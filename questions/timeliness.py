"""How quickly departments answer: per month of the last twelve, by the month answers were due (questions.due),
how many were due, answered on time, answered late, and are still overdue; and the median time from tabling to a
full answer. The same words as the help page's "When an answer is due" and the search page's timing filter."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from django.db.models import Count, F, Q
from django.db.models.functions import TruncMonth
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.text import slugify

from questions.conditions import answered_in_full, answered_late, overdue
from questions.models import PUBLIC, Question
from questions.search import words

MONTHS = 12


@dataclass(frozen=True)
class Month:
    """The questions due in one month, or in all of them (`Timeliness.total`)."""

    first_day: dt.date
    last_day: dt.date
    due: int = 0
    on_time: int = 0
    late: int = 0
    overdue: int = 0
    # Answered in full with both days known: what the median is worked out over.
    timed: int = 0

    @property
    def other(self) -> int:
        """Due in the month but none of the three: not yet due, withdrawn, or answered on a day not recorded."""
        return self.due - self.on_time - self.late - self.overdue


@dataclass(frozen=True)
class Timeliness:
    department: str | None  # None: every department
    today: dt.date
    months: tuple[Month, ...]  # oldest first, the last one today's
    median_days: float | None  # from tabling to a full answer, of the questions due in these months

    @property
    def total(self) -> Month:
        return Month(self.months[0].first_day, self.months[-1].last_day,
                     **{name: sum(getattr(month, name) for month in self.months)
                        for name in ("due", "on_time", "late", "overdue", "timed")})


def month_start(day: dt.date, back: int = 0) -> dt.date:
    """The first day of the month `back` months before `day`'s."""
    index = day.year * 12 + day.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)


def month_end(first_day: dt.date) -> dt.date:
    return month_start(first_day, -1) - dt.timedelta(days=1)


def department_timeliness(department: str | None, today: dt.date) -> Timeliness:
    """The figures of `department` (every department's together for None) over the twelve months that end with
    `today`'s, by the month each answer was due. Two statements: the counts grouped by month, then the middle
    one or two of the times to answer."""
    starts = [month_start(today, back) for back in range(MONTHS - 1, -1, -1)]
    questions = Question.objects.filter(PUBLIC, date_due__gte=starts[0], date_due__lte=month_end(starts[-1]))
    if department is not None:
        questions = questions.filter(answering_body_name=department)

    full = answered_in_full()
    timed = full & Q(date_answered__isnull=False, date_tabled__isnull=False)
    rows = (questions.annotate(month=TruncMonth("date_due")).order_by().values("month")
            .annotate(due=Count("pk"),
                      on_time=Count("pk", filter=full & Q(date_answered__lte=F("date_due"))),
                      late=Count("pk", filter=answered_late()),
                      overdue=Count("pk", filter=overdue(today)),
                      timed=Count("pk", filter=timed)))
    # SQLite's TruncMonth of a date column gives a date, PostgreSQL's may give a datetime at midnight.
    counts = {_as_date(row.pop("month")): row for row in rows}
    months = tuple(Month(start, month_end(start), **counts.get(start, {})) for start in starts)

    total = sum(month.timed for month in months)
    median = None
    if total:
        middle = (questions.filter(timed).annotate(days=F("date_answered") - F("date_tabled"))
                  .order_by("days").values_list("days", flat=True)[(total - 1) // 2: total // 2 + 1])
        values = [days.days for days in middle]
        median = sum(values) / len(values) if values else None
    return Timeliness(department=department, today=today, months=months, median_days=median)


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


@lru_cache(maxsize=4096)
def department_slug(name: str) -> str:
    """The readable part of a department's address; names that share one are told apart by ?name=."""
    return slugify(name, allow_unicode=True) or "department"


def named(slug: str, names: list[str]) -> list[str]:
    """The departments of `names` whose address is `slug`."""
    return [name for name in names if department_slug(name) == slug]


def search_url(department: str | None, month: Month, timing: str = "") -> str:
    """The search page listing the questions behind a figure: due in `month`, and `timing` ("late", "overdue")."""
    params = {"department": department or "", "timing": timing, "due_from": month.first_day.isoformat(),
              "due_to": month.last_day.isoformat()}
    return reverse("search") + "?" + urlencode({key: value for key, value in params.items() if value})


def overdue_query(department: str | None) -> str:
    """The saved search of `department`'s questions that are overdue (every department's for None): what its
    page offers as an alert for the day each goes overdue, and as a feed of those overdue now."""
    found = words(department or "")
    return f'department:"{" ".join(found)}" due:overdue' if found else "due:overdue"


def overdue_links(department: str | None) -> dict[str, str]:
    """Where the department's page sends those who want to hear of its overdue questions: the search of them, its
    feeds, and the form for an alert of those that go overdue (to be confirmed by email, as every alert is)."""
    query = urlencode({"q": overdue_query(department)})
    return {"search": reverse("search") + "?" + query, "rss": reverse("search-rss") + "?" + query,
            "atom": reverse("search-atom") + "?" + query,
            "alert": reverse("alerts:signup") + "?" + query + "&" + urlencode({"alert_on": "overdue"})}


def department_url(name: str, names: list[str]) -> str:
    """A department's page: its slug alone where that names it among `names` (the archive's departments), else
    with the name too, which any name can be (spaces, commas, "&", "/", quotes)."""
    slug = department_slug(name)
    url = reverse("department", args=[slug])
    return url if named(slug, names) == [name] else url + "?" + urlencode({"name": name})
