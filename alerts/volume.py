"""How much a search would bring: questions, answers and emails a week, estimated from the archive.

The estimate counts what the search matched over a window of the archive: the last `WINDOW_DAYS` days,
or the archive's whole span if it is shorter, ending on the newest date the archive holds (or today, if a
record claims a later one). It ends on the newest date rather than on today so that an archive that has
stopped growing, such as the sample one, still gives a rate rather than nothing.

- Questions a week: matching questions whose `date_tabled` is in the window, over the window's weeks.
- Answers a week: matching questions whose `date_answered` is in the window, over the same weeks.
- Emails a week, for each choice of what to be emailed about (new questions, answers, or both):
  - daily digest: the days in the window with a matching question tabled (or answered), per week: a day
    with a match is a digest, so it is never more than 7;
  - weekly digest: the same, never more than 1;
  - as it happens: new questions are published in a daily batch, so one email for each day with new
    matches, but answers come out through the day as each department publishes them, and the archive
    holds only their dates, so each matching answer may be an email of its own. This is the most an
    alert could send; answers published together arrive together, and then it sends fewer.
- Share: the matching questions over all the questions in the archive, whatever their dates. Below
  `MIN_ARCHIVE_FOR_SHARE` questions a share says little about the search, so no search is called broad.

It costs three aggregate queries, whatever the archive's size, and loads no rows: one over the archive
(its size and its first and last dates), one over the search's matches (counts and distinct days, through
`questions.searching.matching`, the search page's own filter, so the two agree on every database), and one
counting the days on which a match was tabled or answered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field, replace

from celery import current_app
from django.core.cache import cache
from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from alerts.models import Subscription
from questions import budget
from questions.models import Question
from questions.search import Node, QueryError, canonical, parse_canonical
from questions.searching import CACHE_ERRORS, Filters, cache_guard, matching

# A year evens out Parliament's recesses and the rush before them.
WINDOW_DAYS = 365
# Fewer days than a week would turn one busy day into a weekly rate seven times too high.
MIN_WINDOW_DAYS = 7
# A search that matches one question in ten brings hundreds of questions a week from a full archive, more
# than anyone reads; "the" or "government" match far more than that.
BROAD_SHARE = 0.10
MIN_ARCHIVE_FOR_SHARE = 200
# Three emails a day is where an inbox starts to fill with one alert; a daily digest sends one.
BUSY_EMAILS_PER_DAY = 3
# Estimates are kept this long: the archive changes by a day's questions at a time.
ESTIMATE_CACHE_SECONDS = 60 * 60
# ...or until the archive has grown by this share (an import, a source's backlog, a run of polls on a small
# archive): a search after a large import is estimated afresh at once, while a day's polls on a large archive
# leave what is kept alone.
ARCHIVE_GROWTH = 0.01
# A page listing many alerts works out only this many estimates not kept; the rest are asked of a worker.
ESTIMATES_NOW_PER_PAGE = 3
# A page works an estimate out itself only when it is quick; a common word over a year of a million questions
# takes seconds, so a worker works it out (within its own budget) for the next preview, a few at a time: each
# takes the worker from matching and sending for as long.
ESTIMATE_NOW_SECONDS = 0.3
ESTIMATE_WORKER_SECONDS = 30
ESTIMATES_ASKED_PER_MINUTE = 6
WINDOW_CACHE_SECONDS = 10 * 60

log = logging.getLogger(__name__)


def amount(rate: float, noun: str) -> str:
    """A rate in words, as a person would say it: "about 12 answers", "fewer than one answer", "no answers"."""
    if rate <= 0:
        return f"no {noun}s"
    if rate < 0.95:
        return f"fewer than one {noun}"
    if rate < 1.5:
        return f"about one {noun}"
    number = f"{rate:.1f}".removesuffix(".0") if rate < 10 else f"{round(rate):,}"
    return f"about {number} {noun}s"


def _at_most(words: str) -> str:
    # As it happens, the estimate is the most an alert could send: each answer in an email of its own.
    return f"up to {words}" if words.startswith("about") else words


@dataclass(frozen=True)
class Emails:
    """Emails a week an alert would send at each frequency, for one choice of what it emails about."""

    alert_on: Subscription.AlertOn
    immediate: float
    daily: float
    weekly: float

    @property
    def immediate_per_day(self) -> float:
        return self.immediate / 7

    @property
    def too_many_as_it_happens(self) -> bool:
        return self.immediate_per_day >= BUSY_EMAILS_PER_DAY

    @property
    def about(self) -> str:
        return self.alert_on.label

    @property
    def immediate_text(self) -> str:
        return _at_most(amount(self.immediate, "email"))

    @property
    def immediate_per_day_text(self) -> str:
        return _at_most(amount(self.immediate_per_day, "email"))

    @property
    def daily_text(self) -> str:
        return amount(self.daily, "email")

    @property
    def weekly_text(self) -> str:
        return amount(self.weekly, "email") if self.weekly < 1 else "one email"


@dataclass(frozen=True)
class Volume:
    archive: int
    matching: int
    window_from: dt.date | None = None
    window_to: dt.date | None = None
    questions: int = 0
    answers: int = 0
    question_days: int = 0
    answer_days: int = 0
    # Days on which a match was tabled or answered, or both.
    days: int = 0
    emails: list[Emails] = field(default_factory=list)
    # The newest question's id when it was counted (see `holds`).
    newest_id: int = 0

    def holds(self, newest_id: int) -> bool:
        """Whether the estimate still holds, the archive's newest id being `newest_id` now."""
        return _holds(self.newest_id, self.archive, newest_id)

    @property
    def window_days(self) -> int:
        if self.window_from is None or self.window_to is None:
            return 0
        return (self.window_to - self.window_from).days + 1

    @property
    def weeks(self) -> float:
        return _weeks(self.window_days)

    @property
    def questions_per_week(self) -> float:
        return self.questions / self.weeks if self.window_to else 0.0

    @property
    def answers_per_week(self) -> float:
        return self.answers / self.weeks if self.window_to else 0.0

    @property
    def questions_text(self) -> str:
        return amount(self.questions_per_week, "new question")

    @property
    def answers_text(self) -> str:
        return amount(self.answers_per_week, "answer")

    @property
    def share(self) -> float:
        return self.matching / self.archive if self.archive else 0.0

    @property
    def share_percent(self) -> int:
        return round(self.share * 100)

    @property
    def broad(self) -> bool:
        return self.archive >= MIN_ARCHIVE_FOR_SHARE and self.share >= BROAD_SHARE

    @property
    def matching_text(self) -> str:
        return f"{self.matching:,}"

    @property
    def archive_text(self) -> str:
        return f"{self.archive:,}"

    def emails_for(self, alert_on: str) -> Emails | None:
        return next((emails for emails in self.emails if emails.alert_on == alert_on), None)


@dataclass(frozen=True)
class Caution:
    """What a form warns about before an alert is made (signup, adding from the manage page, editing): a search
    that matches too much, and "as it happens" that would email many times a day. Adding and editing make the
    alert at once, so they make it only once its owner has seen each warning that applies (`seen`, sent back
    with the form) for this very search."""

    canonical_query: str = ""
    broad: Volume | None = None
    # The emails "as it happens" would send, when that is too many.
    busy: Emails | None = None
    # The estimate is not ready (a worker is still working it out, or it cost too much to run now), so whether
    # the search is broad or busy is not known: the broadest searches are the slowest to count.
    unknown: bool = False

    def __bool__(self) -> bool:
        return self.broad is not None or self.busy is not None or self.unknown

    @property
    def _names(self) -> set[str]:
        return {name for name in ("broad", "busy") if getattr(self, name) is not None} | (
            {"unknown"} if self.unknown else set())

    @property
    def seen(self) -> str:
        return ",".join(sorted(self._names)) + ":" + self.canonical_query

    def was_seen(self, seen: str) -> bool:
        names, _, query = seen.partition(":")
        return query == self.canonical_query and self._names <= set(names.split(","))


def caution(found: Volume | None, node: Node | None, frequency: str, alert_on: str) -> Caution:
    """The warnings an alert of this search, frequency and choice of what to email about gets: none while the
    search is refused, and "not known yet" while its estimate is not ready."""
    if node is None:
        return Caution()
    if found is None:
        return Caution(canonical(node), unknown=True)
    emails = found.emails_for(alert_on)
    busy = frequency == Subscription.Frequency.IMMEDIATE and emails is not None and emails.too_many_as_it_happens
    return Caution(canonical(node), found if found.broad else None, emails if busy else None)


def _weeks(days: int) -> float:
    return max(days, MIN_WINDOW_DAYS) / 7


# The archive's size, and the first and last day of the window rates are counted over.
Window = tuple[int, dt.date | None, dt.date | None]


def _window(today: dt.date) -> Window:
    """The archive's size, and the first and last day of the window the rates are counted over."""
    bounds = Question.objects.public().order_by().aggregate(
        archive=Count("pk"), first_tabled=Min("date_tabled"), first_answered=Min("date_answered"),
        last_tabled=Max("date_tabled"), last_answered=Max("date_answered"))
    firsts = [day for day in (bounds["first_tabled"], bounds["first_answered"]) if day]
    lasts = [day for day in (bounds["last_tabled"], bounds["last_answered"]) if day]
    if not lasts:
        return bounds["archive"], None, None
    last = min(max(lasts), today)
    first = min(max(min(firsts), last - dt.timedelta(days=WINDOW_DAYS - 1)), last)
    return bounds["archive"], first, last


def estimate(node: Node, today: dt.date | None = None, window: Window | None = None) -> Volume:
    """How much the parsed search would bring; see the module's docstring for how it is worked out.
    `window` is the archive's, if already known (it is the same for every search)."""
    archive, first, last = window or _window(today or timezone.localdate())
    if not archive:
        return Volume(archive=0, matching=0)
    matches = matching(node).order_by()
    if last is None:
        return Volume(archive=archive, matching=matches.count())
    tabled = Filters(tabled_from=first, tabled_to=last).q()
    answered = Q(date_answered__gte=first, date_answered__lte=last)
    counts = matches.aggregate(
        matching=Count("pk"), questions=Count("pk", filter=tabled), answers=Count("pk", filter=answered),
        question_days=Count("date_tabled", filter=tabled, distinct=True),
        answer_days=Count("date_answered", filter=answered, distinct=True))
    # UNION, not UNION ALL: a day with a match tabled and another answered is one day.
    days = (matches.filter(tabled).values_list("date_tabled")
            .union(matches.filter(answered).values_list("date_answered")).count())
    weeks = _weeks((last - first).days + 1)

    def emails(alert_on: str, immediate: int, days: int) -> Emails:
        return Emails(alert_on, immediate / weeks, days / weeks, min(days / weeks, 1.0))

    return Volume(archive=archive, window_from=first, window_to=last, days=days, **counts, emails=[
        emails(Subscription.AlertOn.BOTH, counts["question_days"] + counts["answers"], days),
        emails(Subscription.AlertOn.NEW, counts["question_days"], counts["question_days"]),
        emails(Subscription.AlertOn.ANSWERS, counts["answers"], counts["answer_days"]),
    ])




def _cached(key: str, seconds: int, work, fresh=lambda kept: True):
    """What `work()` gives, kept in the cache for `seconds` while `fresh(kept)`; worked out afresh when the cache
    is down."""
    try:
        with cache_guard():
            found = cache.get(key)
    except CACHE_ERRORS:
        return work()
    if found is None or not fresh(found):
        found = work()
        with contextlib.suppress(*CACHE_ERRORS), cache_guard():
            cache.set(key, found, seconds)
    return found


def _newest_id() -> int:
    # An index's last entry, however large the archive. Ids only grow, with every question stored by an import
    # or a poll alike, so the newest is at least the archive's size, and how far it moved is how many came.
    return Question.objects.aggregate(newest=Max("pk"))["newest"] or 0


def _holds(made_at_id: int, archive: int, newest_id: int) -> bool:
    """Whether what was counted over an archive of `archive` questions, when its newest id was `made_at_id`,
    still holds now that it is `newest_id`: until the questions stored since come to ARCHIVE_GROWTH of it."""
    return newest_id - made_at_id < max(1.0, ARCHIVE_GROWTH * archive)


def _estimate_key(node: Node, today: dt.date) -> str:
    # The version of the query language: a search's text may keep its spelling and change its meaning.
    return "volume:v2:" + hashlib.sha256(canonical(node).encode()).hexdigest() + ":" + today.isoformat()


def cached_estimate(node: Node, today: dt.date | None = None, newest_id: int | None = None) -> Volume:
    """`estimate`, kept for an hour per search and day, and the archive's window for ten minutes, each until the
    archive grows by ARCHIVE_GROWTH: counting a common word over a year of a large archive is a scan, which the
    signup page (a GET anyone can repeat) must not cost every time."""
    today = today or timezone.localdate()
    newest_id = _newest_id() if newest_id is None else newest_id

    def window() -> Window:
        return _cached(f"volume:window:v2:{today.isoformat()}", WINDOW_CACHE_SECONDS,
                       lambda: (newest_id, _window(today)),
                       fresh=lambda kept: _holds(kept[0], kept[1][0], newest_id))[1]

    return _cached(_estimate_key(node, today), ESTIMATE_CACHE_SECONDS,
                   lambda: replace(estimate(node, today, window()), newest_id=newest_id),
                   fresh=lambda kept: kept.holds(newest_id))


def estimate_now_or_later(node: Node, today: dt.date | None = None, newest_id: int | None = None) -> Volume | None:
    """The estimate, if it is kept or quick to work out; otherwise None, and a worker is asked to work it out
    for the next preview (see ESTIMATE_NOW_SECONDS)."""
    today = today or timezone.localdate()
    # Outside the budget: an index's last entry, and what is kept is served however short the budget.
    newest_id = _newest_id() if newest_id is None else newest_id
    try:
        with budget.budget(ESTIMATE_NOW_SECONDS):
            return cached_estimate(node, today, newest_id)
    except budget.TooCostly:
        _ask_a_worker(node, today)
        return None


def broad_searches(canonical_queries: list[str], today: dt.date | None = None) -> dict[str, Volume]:
    """The estimates of those of these searches that are broad, for a page listing alerts: from the estimates
    kept, read at once, and a few more worked out as a preview would; the others are asked of a worker, to be
    found next time. An archive too small for any search to be broad costs one query, whatever the number."""
    if not canonical_queries or not Question.objects.public()[MIN_ARCHIVE_FOR_SHARE - 1:].exists():
        return {}
    today = today or timezone.localdate()
    newest_id = _newest_id()
    nodes = {}
    for query in dict.fromkeys(canonical_queries):
        with contextlib.suppress(QueryError):  # saved under rules since changed: its edit page says why
            nodes[query] = parse_canonical(query)
    keys = {query: _estimate_key(node, today) for query, node in nodes.items()}
    try:
        with cache_guard():
            kept = cache.get_many(list(keys.values()))
    except CACHE_ERRORS:
        kept = {}
    found = {query: kept[key] for query, key in keys.items() if key in kept and kept[key].holds(newest_id)}
    for number, query in enumerate([query for query in nodes if query not in found]):
        if number >= ESTIMATES_NOW_PER_PAGE:
            _ask_a_worker(nodes[query], today)
        elif (volume := estimate_now_or_later(nodes[query], today, newest_id)) is not None:
            found[query] = volume
    return {query: estimated for query, estimated in found.items() if estimated.broad}


def _ask_a_worker(node: Node, today: dt.date) -> None:
    key = _estimate_key(node, today)
    minute = int(timezone.now().timestamp() // 60)
    try:
        with cache_guard():
            if not cache.add(f"{key}:asked", 1, ESTIMATE_WORKER_SECONDS * 2):
                return  # already asked for
            cache.add(f"volume:asked:{minute}", 0, 120)
            if cache.incr(f"volume:asked:{minute}") > ESTIMATES_ASKED_PER_MINUTE:
                cache.delete(f"{key}:asked")  # not asked after all: the next preview may ask
                return
        # By the task's name: alerts.tasks, a shell over this module, is not imported here.
        current_app.tasks["alerts.estimate_volume"].delay(canonical(node), today.isoformat())
    except (*CACHE_ERRORS, BrokerError) as error:
        # Without the cache there is nowhere to keep it; without the broker, no worker to ask: the preview
        # shows the rest.
        log.warning("estimate not asked for", extra={"error": str(error)[:200]})


def estimate_for_later(canonical_query: str, today: dt.date) -> bool:
    """Work out and keep the estimate a preview asked for; False if it would not fit the worker's budget."""
    try:
        with budget.budget(ESTIMATE_WORKER_SECONDS):
            cached_estimate(parse_canonical(canonical_query), today)
    except budget.TooCostly:
        return False
    return True
