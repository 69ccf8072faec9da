import contextlib
import hashlib
import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.feedgenerator import Atom1Feed, Rss201rev2Feed
from django.utils.http import urlencode

from config.proxy import client_host
from questions.allowance import TooManySearches, public_search, refusal
from questions.budget import TooCostly
from questions.charts import chart
from questions.forms import SearchForm
from questions.health import CHECKS, health
from questions.models import Question
from questions.records import text
from questions.search import Node, parse, parse_or_none
from questions.search.hints import comma_hint
from questions.searching import (
    CACHE_ERRORS,
    CappedPaginator,
    Filters,
    cache_guard,
    departments,
    find_question,
    kept,
    matching,
    member_names,
)
from questions.timeliness import (
    Month,
    department_slug,
    department_timeliness,
    department_url,
    named,
    overdue_links,
    search_url,
)

PAGE_SIZE = 20
FEED_SIZE = 50


def search_page(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    context = {"form": form, "node": None, "page": None, "query_error": None, "searched": False}
    if form.is_bound and form.is_valid():
        query = form.cleaned_data["q"]
        filters = form.filters()
        node = parse(query) if query else None
        questions = matching(node, filters) if node else Question.objects.filter(filters.q())
        try:
            with public_search(client_host(request), node):
                context["page"] = CappedPaginator(questions, PAGE_SIZE).get_page(request.GET.get("page"))
        except (TooCostly, TooManySearches) as refused:
            return _refused(request, context, refused)
        context["node"] = node
        # Filters alone are a search too: its count, and its alert, are what the visitor asked for.
        context["searched"] = bool(node) or filters != Filters()
        context["filtered"] = filters != Filters()
        params = {k: v for k, v in request.GET.items() if k != "page" and v}
        context["params"] = urlencode(params)
        context["alert_query"] = form.alert_query()
        context["alert_on"] = form.alert_on()
        context["page_only_filters"] = form.page_only_filters()
        context["suggestions"] = suggestions(query, params)
        if node:
            context["rss_url"] = reverse("search-rss") + "?" + urlencode(params)
            context["atom_url"] = reverse("search-atom") + "?" + urlencode(params)
    elif form.is_bound:
        error = form.query_error()
        if error:
            message, position = error
            query = request.GET.get("q", "")
            context["query_error"] = message
            if position is not None and position < len(query):
                context["error_before"], context["error_at"], context["error_after"] = (
                    query[:position], query[position], query[position + 1:])
    else:
        latest = Question.objects.public().order_by("-date_tabled", "-id")
        context["page"] = CappedPaginator(latest, PAGE_SIZE).get_page(1)
    status = 400 if context["query_error"] else 200
    return render(request, "questions/search.html", context, status=status)


def _refused(request: HttpRequest, context: dict, refused: TooCostly | TooManySearches) -> HttpResponse:
    """The search page saying why a valid search was not run."""
    context["query_error"], context["refused"] = refusal(refused), True
    return _refusal_status(render(request, "questions/search.html", context), refused)


def _refusal_status(response: HttpResponse, refused: TooCostly | TooManySearches) -> HttpResponse:
    """A valid search not run: too costly for one request (a 422, as a refused query is a 400), or one search
    too many for now (a 429 saying when to come back)."""
    response.status_code = 422
    if isinstance(refused, TooManySearches):
        response.status_code, response["Retry-After"] = 429, str(refused.retry_after)
    return response


MEMBERS_KEY = "questions:members"
# Only text that could be someone's name is looked up: letters, spaces and the punctuation names have.
NAME_LIKE = re.compile(r"[^\W\d_]+(?:[ '’.-]+[^\W\d_]+){1,5}\.?")


@dataclass(frozen=True)
class Suggestion:
    kind: str  # "department", "member" or "commas": what the page says about it
    name: str  # the department or member, or the search with OR
    url: str


def _members() -> list[str]:
    """The names of the members who asked questions, kept for ten minutes: one index probe per member, which
    each search need not cost."""
    try:
        with cache_guard():
            found = cache.get(MEMBERS_KEY)
    except CACHE_ERRORS:
        return []  # a suggestion is not worth a thousand index probes on every search
    if found is None:
        found = member_names()
        with contextlib.suppress(*CACHE_ERRORS), cache_guard():
            cache.set(MEMBERS_KEY, found, 600)
    return found


def _named(text: str, names: list[str]) -> str:
    """The one of `names` that `text` is, whatever its case and spacing; or ""."""
    wanted = " ".join(text.split()).casefold()
    return next((name for name in names if " ".join(name.split()).casefold() == wanted), "")


def suggestions(query: str, params: dict[str, str]) -> list[Suggestion]:
    """Searches the visitor more likely meant: a member's or a department's name typed as words finds only
    questions that mention it, and commas do not separate topics. Each keeps the page's filters."""

    def url(suggested: str) -> str:
        return reverse("search") + "?" + urlencode({**params, "q": suggested})

    found = []
    text = query.strip()
    if len(text) > 2 and text[0] in '"“„' and text[-1] in '"”':
        text = text[1:-1].strip()
    department = _named(text, departments())
    if department and '"' not in department:
        found.append(Suggestion("department", department, url(f'department:"{department}"')))
    member = _named(text, _members()) if NAME_LIKE.fullmatch(text) else ""
    if member and '"' not in member:
        found.append(Suggestion("member", member, url(f'member:"{member}"')))
    hint = comma_hint(query)
    if hint:
        found.append(Suggestion("commas", hint, url(hint)))
    return found


def healthz(request: HttpRequest) -> JsonResponse:
    """The default checks, or those named in ?checks=database,broker (what a load balancer should ask: a
    Parliament outage must not take the site, and its unsubscribe links, out of rotation), or
    ?checks=delivery (are alerts reaching inboxes: for monitoring, not for a load balancer)."""
    # Each check once, however often it is named: the page is public.
    names = [name for name in dict.fromkeys(request.GET.get("checks", "").split(",")) if name in CHECKS]
    healthy, checks = health(names or None)
    return JsonResponse({"status": "ok" if healthy else "failing", "checks": checks}, status=200 if healthy else 503)


def help_page(request: HttpRequest) -> HttpResponse:
    return render(request, "questions/help.html")


def question_page(request: HttpRequest, key: str) -> HttpResponse:
    question = find_question(key)
    if question is None:
        raise Http404("No such question")
    return render_question(request, question)


def question_by_row(request: HttpRequest, pk: int) -> HttpResponse:
    """Questions whose id cannot stand in a URL (a feed's guid is itself a URL)."""
    return render_question(request, get_object_or_404(Question.objects.public(), pk=pk))


def render_question(request: HttpRequest, question: Question, form=None, status: int = 200) -> HttpResponse:
    """A question's page; `form` is its "email me when this is answered" form sent back with its errors."""
    return render(request, "questions/question.html",
                  {"question": question, "form": form, "follow_days": settings.FOLLOW_WINDOW_DAYS}, status=status)


def departments_page(request: HttpRequest) -> HttpResponse:
    """Every department's timeliness together, and a link to each department's own."""
    names = departments()
    links = [(name, department_url(name, names)) for name in names]
    return _timeliness_page(request, None, {"departments": links})


def department_page(request: HttpRequest, slug: str) -> HttpResponse:
    """One department's timeliness. A department the archive has never had a question for is a 404, not a page
    of noughts that would read as a record: a mistyped or made-up address must not look like a department."""
    asked = request.GET.get("name")
    if asked is not None:
        # Any name works this way, even one the list of departments (kept for ten minutes) has not seen yet.
        if department_slug(asked) != slug or not Question.objects.public().filter(answering_body_name=asked).exists():
            raise Http404("No such department")
        return _timeliness_page(request, asked, {})
    found = named(slug, departments())
    if not found:
        raise Http404("No such department")
    if len(found) > 1:
        names = departments()
        return render(request, "questions/department_choice.html",
                      {"departments": [(name, department_url(name, names)) for name in found]})
    return _timeliness_page(request, found[0], {})


def _timeliness_page(request: HttpRequest, department: str | None, context: dict) -> HttpResponse:
    today = timezone.localdate()
    # Kept for ten minutes, like the list of departments: the page of every department reads a year of questions.
    key = "questions:timeliness:" + hashlib.sha256(repr((department, today)).encode()).hexdigest()
    figures = kept(key, lambda: department_timeliness(department, today))
    total = figures.total
    context = {"departments": None, **context, "department": department, "figures": figures, "total": total,
               "rows": [(month, _links(department, month)) for month in figures.months],
               "total_links": _links(department, total), "chart": chart(figures),
               "overdue": overdue_links(department)}
    return render(request, "questions/timeliness.html", context)


def _links(department: str | None, month: Month) -> dict[str, str]:
    return {"due": search_url(department, month), "late": search_url(department, month, "late"),
            "overdue": search_url(department, month, "overdue")}


# What XML 1.0 allows (its Char production); anything else makes a feed no reader will parse.
XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value):
    """`value` with the characters XML 1.0 forbids taken out; lists and tuples of text item by item."""
    if isinstance(value, str):
        return XML_FORBIDDEN.sub("", value)
    if isinstance(value, list | tuple):
        return type(value)(xml_text(part) for part in value)
    return value


class XMLSafeFeedMixin:
    """Cleans every field of the feed and of its items as they are handed to the writer: the archive holds
    whatever its sources sent (C0 controls, U+FFFE, ...), and one such character makes the whole feed
    unreadable, or makes Django refuse to write it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*xml_text(args), **{key: xml_text(value) for key, value in kwargs.items()})

    def add_item(self, *args, **kwargs):
        super().add_item(*xml_text(args), **{key: xml_text(value) for key, value in kwargs.items()})


class XMLSafeRssFeed(XMLSafeFeedMixin, Rss201rev2Feed):
    pass


class XMLSafeAtomFeed(XMLSafeFeedMixin, Atom1Feed):
    pass


@dataclass(frozen=True)
class FeedSearch:
    """One request's search, handed from method to method as the feed's object: the Feed instance is
    shared by every request (and thread), so it must hold nothing of any one of them."""

    query: str
    node: Node
    filters: Filters


class RefusedSearch(Exception):
    """A feed's search that cannot be run: get_object can only hand Feed an object, so it raises this."""


class SearchRSSFeed(Feed):
    """The newest results of a search, for feed readers."""

    feed_type = XMLSafeRssFeed
    description_template = "questions/feed_item.html"

    def __call__(self, request, *args, **kwargs):
        try:
            with public_search(client_host(request), parse_or_none(request.GET.get("q", ""))):
                return super().__call__(request, *args, **kwargs)
        except RefusedSearch as refused:
            return HttpResponseBadRequest(str(refused), content_type="text/plain; charset=utf-8")
        except (TooCostly, TooManySearches) as refused:
            return _refusal_status(HttpResponse(refusal(refused), content_type="text/plain; charset=utf-8"), refused)

    def get_object(self, request, *args, **kwargs) -> FeedSearch:
        form = SearchForm(request.GET)
        if not form.is_valid() or not form.cleaned_data["q"]:
            error = form.query_error()
            raise RefusedSearch(error[0] if error else "A feed needs a search: ?q=...")
        query = form.cleaned_data["q"]
        return FeedSearch(query=query, node=parse(query), filters=form.filters())

    def title(self, search: FeedSearch):
        return f"Written questions matching {text(search.query)}"

    def link(self, search: FeedSearch):
        return reverse("search") + "?" + urlencode({"q": search.query})

    def description(self, search: FeedSearch):
        return f"The newest written questions and answers matching the search {text(search.query)}."

    def items(self, search: FeedSearch):
        return matching(search.node, search.filters)[:FEED_SIZE]

    def item_title(self, question):
        return question.title

    def item_link(self, question):
        return question.get_absolute_url()

    def item_pubdate(self, question):
        return question.created_at

    def item_updateddate(self, question):
        return question.updated_at

    def item_author_name(self, question):
        return question.asking_member_name or None


class SearchAtomFeed(SearchRSSFeed):
    feed_type = XMLSafeAtomFeed
    subtitle = SearchRSSFeed.description
