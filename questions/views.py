from django.contrib.syndication.views import Feed
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.utils.http import urlencode

from questions.forms import SearchForm
from questions.health import CHECKS, health
from questions.models import Question
from questions.records import text
from questions.search import parse
from questions.searching import CappedPaginator, find_question, matching

PAGE_SIZE = 20
FEED_SIZE = 50


def search_page(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    context = {"form": form, "node": None, "page": None, "query_error": None}
    if form.is_bound and form.is_valid():
        query = form.cleaned_data["q"]
        node = parse(query) if query else None
        questions = matching(node, form.filters()) if node else Question.objects.filter(form.filters().q())
        context["page"] = CappedPaginator(questions, PAGE_SIZE).get_page(request.GET.get("page"))
        context["node"] = node
        params = {k: v for k, v in request.GET.items() if k != "page" and v}
        context["params"] = urlencode(params)
        if node:
            context["alert_query"] = form.alert_query()
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
        context["page"] = CappedPaginator(Question.objects.order_by("-date_tabled", "-id"), PAGE_SIZE).get_page(1)
    status = 400 if context["query_error"] else 200
    return render(request, "questions/search.html", context, status=status)


def healthz(request: HttpRequest) -> JsonResponse:
    """All checks, or those named in ?checks=database,broker (what a load balancer should ask: a
    Parliament outage must not take the site, and its unsubscribe links, out of rotation)."""
    names = [name for name in request.GET.get("checks", "").split(",") if name in CHECKS]
    healthy, checks = health(names or None)
    return JsonResponse({"status": "ok" if healthy else "failing", "checks": checks}, status=200 if healthy else 503)


def help_page(request: HttpRequest) -> HttpResponse:
    return render(request, "questions/help.html")


def question_page(request: HttpRequest, key: str) -> HttpResponse:
    question = find_question(key)
    if question is None:
        raise Http404("No such question")
    return render(request, "questions/question.html", {"question": question})


def question_by_row(request: HttpRequest, pk: int) -> HttpResponse:
    """Questions whose id cannot stand in a URL (a feed's guid is itself a URL)."""
    return render(request, "questions/question.html", {"question": get_object_or_404(Question, pk=pk)})


class SearchRSSFeed(Feed):
    """The newest results of a search, for feed readers."""

    description_template = "questions/feed_item.html"

    def __call__(self, request, *args, **kwargs):
        form = SearchForm(request.GET)
        if not form.is_valid() or not form.cleaned_data["q"]:
            error = form.query_error()
            return HttpResponseBadRequest(error[0] if error else "A feed needs a search: ?q=...",
                                          content_type="text/plain; charset=utf-8")
        self.form = form
        return super().__call__(request, *args, **kwargs)

    def get_object(self, request, *args, **kwargs):
        return self.form

    def title(self, form):
        return f"Written questions matching {text(form.cleaned_data['q'])}"

    def link(self, form):
        return reverse("search") + "?" + urlencode({"q": form.cleaned_data["q"]})

    def description(self, form):
        return f"The newest written questions and answers matching the search {text(form.cleaned_data['q'])}."

    def items(self, form):
        return matching(parse(form.cleaned_data["q"]), form.filters())[:FEED_SIZE]

    def item_title(self, question):
        return question.heading

    def item_link(self, question):
        return question.get_absolute_url()

    def item_guid(self, question):
        return question.official_url or question.external_id

    def item_pubdate(self, question):
        return question.created_at

    def item_updateddate(self, question):
        return question.updated_at

    def item_author_name(self, question):
        return question.asking_member_name or None


class SearchAtomFeed(SearchRSSFeed):
    feed_type = Atom1Feed
    subtitle = SearchRSSFeed.description
