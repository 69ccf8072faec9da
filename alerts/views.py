"""Signup, confirmation, the manage page and unsubscribing: thin shells over alerts.subscribing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt
from django_ratelimit.core import get_usage

from alerts import form_requests, subscribing, tasks, tokens, volume
from alerts.activity import alert_activity, questions_last_checked
from alerts.emails import asked_for
from alerts.forms import AlertFields, EmailForm, SignupForm
from alerts.models import Subscriber, Subscription
from config.proxy import client_host, client_network
from questions.allowance import TooManySearches, public_search, refusal
from questions.budget import TooCostly
from questions.models import Question
from questions.search import MAX_LENGTH, QueryError, parse_or_none
from questions.search.hints import comma_hint
from questions.searching import CACHE_ERRORS, departments
from questions.views import render_question

log = logging.getLogger(__name__)

# What "Check your inbox" repeats back: the address as typed, so that a typo can be spotted. It is kept
# a quarter of an hour in a signed cookie of the visitor's own, so the server holds nothing for it.
SENT_TO = "sent_to"
SENT_TO_SECONDS = 15 * 60
# A longer search is not repeated: the cookie must stay well inside what browsers keep.
SENT_TO_MAX_QUERY = 300
UNDO_SALT = "alerts.undo-delete"
UNDO_SECONDS = 60 * 60


def in_about(seconds: int) -> str:
    """When a limit's window turns over, as a person would say it: "in about 40 minutes"."""
    minutes = max(round(seconds / 60), 1)
    return "in about a minute" if minutes == 1 else f"in about {minutes} minutes"


def _retry_after(response: HttpResponse, seconds: int | None) -> HttpResponse:
    if seconds is not None:
        response["Retry-After"] = str(max(seconds, 1))
    return response


def rate_limited(request: HttpRequest, exception=None, retry_after: int | None = None) -> HttpResponse:
    return _retry_after(render(request, "alerts/rate_limited.html", {
        "retry_in": in_about(retry_after) if retry_after is not None else ""}, status=429), retry_after)


def try_again_soon(request: HttpRequest) -> HttpResponse:
    """What a form says when the cache that counts its limits, or the database that keeps its request, is
    down: nothing was saved, so nothing is owed, and the same request in a minute will most likely go through."""
    response = render(request, "alerts/try_again.html", status=503)
    response["Retry-After"] = "60"
    return response


class LimitsUnavailable(Exception):
    """The cache holding the rate-limit counters did not answer."""


def _limits(form: str, email: str) -> list[dict]:
    """The IP's limit, then the address's: first from the client's network, then from everywhere.

    Each request asks for an email to `email`, which is someone's inbox, maybe not the asker's. The
    address's allowance is split by network (config.proxy.NETWORK_PREFIX): a stranger spends only their
    own network's share of it, never the owner's. The ceiling across all networks is what stops a flood
    from many networks; it is set well above one network's share, so that a stranger must ask from many
    networks at once to reach it (see README, "Rate limits")."""
    address = email.strip().lower()
    return [
        {"group": f"{form}-ip", "key": "ip", "rate": settings.RATELIMIT_SIGNUP_PER_IP},
        # One budget per address, whichever form asks: each request sends that address an email. The
        # network goes in the group, not the key: windows are staggered by key, and all of an address's
        # counters then turn over together.
        {"group": lambda request: f"emails-to-address-from:{client_network(request)}",
         "key": lambda group, request: address, "rate": settings.RATELIMIT_SIGNUP_PER_ADDRESS},
        {"group": "emails-to-address", "key": lambda group, request: address,
         "rate": settings.RATELIMIT_SIGNUP_PER_ADDRESS_TOTAL},
    ]


def _refused(request: HttpRequest, limits: list[dict]) -> int | None:
    """Count the request against each limit in turn, stopping at the first that is full: None if all had
    room, else the seconds until the full one's window turns over (django-ratelimit staggers each key's
    hour, so this is that limit's own moment, not the top of the hour). With Redis, counting is its atomic
    increment, so requests arriving together cannot all slip through (the database cache reads then writes:
    a burst may get a few over). A request refused by one limit is not counted against the next, so a flood
    from one IP (refused by the IP's limit) uses up nothing of an address's, nor one network's of the ceiling.

    Raises LimitsUnavailable when the cache is down. Refusing then, rather than letting everything
    through, is deliberate: these limits are all that stops a stranger using us to flood an inbox."""
    try:
        for limit in limits:
            group = limit["group"](request) if callable(limit["group"]) else limit["group"]
            usage = get_usage(request, increment=True, **(limit | {"group": group}))
            if usage is not None and usage["should_limit"]:
                # The window's last second is still its own: the next starts a second after it.
                return max(usage["time_left"], 0) + 1
    except CACHE_ERRORS as error:
        log.warning("rate limits unavailable, request refused", extra={"error": str(error)})
        raise LimitsUnavailable from error
    return None


def _check_inbox(request: HttpRequest, email: str, purpose: str, query: str = "",
                 question: int | None = None) -> HttpResponse:
    """The page every address gets. What it repeats comes from the form, never from the database, so a
    known and an unknown address read the same. It goes in a short-lived signed cookie, not the URL, so
    the address stays out of logs and history, nor a session, which would keep every address typed (and
    a row for every form a bot sends) on the server."""
    response = redirect("alerts:check-inbox")
    sent_to = {"email": email, "purpose": purpose, "q": query if len(query) <= SENT_TO_MAX_QUERY else "",
               "question": question}
    response.set_cookie(SENT_TO, signing.dumps(sent_to, salt=SENT_TO, compress=True), max_age=SENT_TO_SECONDS,
                        path=reverse("alerts:check-inbox"), secure=settings.SESSION_COOKIE_SECURE, httponly=True,
                        samesite="Lax")
    return response


def _sent_to(request: HttpRequest) -> dict:
    try:
        sent_to = signing.loads(request.COOKIES.get(SENT_TO, ""), salt=SENT_TO, max_age=SENT_TO_SECONDS)
    except signing.BadSignature:
        return {}
    return sent_to if isinstance(sent_to, dict) else {}


def _hand_over(request: HttpRequest, form: str, email: str,
               over_limit: Callable[[int], HttpResponse] | None = None, **work) -> HttpResponse:
    """Check the limits, then save the address-dependent work for a worker and show the page every address gets.

    Whether an address is known, unsubscribed or bounced decides what the worker does, never what this request
    does: the same checks, one row written, one wake-up to the broker, the same page, in the same time. The row
    is committed before the page answers, so the request outlives the broker: if the broker will not take the
    wake-up, beat's sweep takes the row within a minute or so, and the page says "check your inbox" all the
    same. Only when the row cannot be written (the database is down) is the person asked to try again, nothing
    having been saved.

    An IP over its limit is told so (429), and when to try again: by `over_limit(seconds)`, the form's own
    page with what was typed, or the plain page. An address over its limits is not: the page is the one every
    address gets, in the same time, and the row is marked held, which the worker drops, so a stranger
    learns nothing and the inbox hears nothing more."""
    ip_limit, *address_limits = _limits(form, email)
    try:
        if (wait := _refused(request, [ip_limit])) is not None:
            return over_limit(wait) if over_limit else rate_limited(request, retry_after=wait)
        # Written either way, held or not, so that a request over the address's limits takes the time any
        # other does: how long the page takes must not tell a stranger that someone else asked for it.
        held = _refused(request, address_limits) is not None
        saved = form_requests.record(form, {"email": email, **work}, held)
    except LimitsUnavailable:
        return try_again_soon(request)
    except DatabaseError as error:
        # Not the error's text: the database's can quote the row it refused, address and all.
        log.warning("a form request could not be saved; asked to try again",
                    extra={"form": form, "error": type(error).__name__})
        return try_again_soon(request)
    try:
        tasks.take_form_request_task.apply_async(kwargs={"request_id": saved.pk})
    except Exception:  # noqa: BLE001 - the row is saved: the sweep takes it
        log.warning("the broker did not take a wake-up; the sweep will take the request",
                    extra={"form": form, "request": saved.pk}, exc_info=True)
    purpose = tokens.MANAGE if form == "link" else tokens.CONFIRM
    return _check_inbox(request, email, purpose, work.get("query", ""), work.get("question_id"))


def _bad_link(request: HttpRequest, error: tokens.LinkError) -> HttpResponse:
    return render(request, "alerts/bad_link.html", {"reason": error.reason, "purpose": error.purpose,
                                                     "form": EmailForm()}, status=400)


def _previewing(request: HttpRequest, form) -> bool:
    """"Preview" re-shows the form with what the search would have sent, saving nothing; only the
    search's own mistakes are worth showing then."""
    if "preview" not in request.POST:
        return False
    form.is_valid()
    for name in [name for name in form.errors if name != "q"]:
        del form.errors[name]
    return True


@dataclass(frozen=True)
class PreviewNotRun:
    """Why a valid search was not previewed: it would cost too much, now or for one request."""

    refused: str


def _preview(request: HttpRequest, form, query: str) -> subscribing.Preview | PreviewNotRun | None:
    """What the form's search would have sent lately; nothing while the search is refused. The alert itself
    can still be made: matching it against new questions costs little, however broad the search."""
    if not query or form.errors.get("q"):
        return None
    try:
        with public_search(client_host(request), parse_or_none(query)):
            return subscribing.preview(query)
    except QueryError:
        return None
    except (TooCostly, TooManySearches) as refused:
        return PreviewNotRun(refusal(refused))


def _caution(form, preview: subscribing.Preview | PreviewNotRun | None) -> volume.Caution:
    """The warnings of the form's alert, from its preview's estimate: one rule for every form that makes one."""
    return volume.caution(preview.volume if isinstance(preview, subscribing.Preview) else None,
                          parse_or_none(form["q"].value() or ""), form["frequency"].value(), form["alert_on"].value())


def _unwarned(request: HttpRequest, form, preview) -> volume.Caution | None:
    """The warnings an alert about to be made has that its owner has not yet been shown on this form."""
    caution = _caution(form, preview)
    return caution if caution and not caution.was_seen(request.POST.get("warned", "")) else None


def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = SignupForm(request.POST)
        if not _previewing(request, form) and form.is_valid():
            data = form.cleaned_data
            if data["website"]:
                # A bot filled the hidden field: it is shown success and nothing happens.
                return _check_inbox(request, data["email"], tokens.CONFIRM, data["q"])
            return _hand_over(request, "signup", data["email"], query=data["q"], frequency=data["frequency"],
                              alert_on=data["alert_on"], label=data["label"],
                              over_limit=lambda wait: _signup_page(request, form, retry_after=wait))
    else:
        # A link may choose what to email about too, as a department's page does for its overdue questions.
        alert_on = request.GET.get("alert_on", "")
        form = SignupForm(initial={"q": request.GET.get("q", ""),
                                   **({"alert_on": alert_on} if alert_on in Subscription.AlertOn.values else {})})
    return _signup_page(request, form)


def _signup_page(request: HttpRequest, form: SignupForm, retry_after: int | None = None) -> HttpResponse:
    """The form with its preview. Over the connection's limit (`retry_after`, seconds) it keeps what was
    typed and says when it will be taken; the limit is the connection's, so this tells nothing of the address."""
    query = form["q"].value() or ""
    preview = _preview(request, form, query)
    response = render(request, "alerts/signup.html", {
        "form": form, "preview": preview, "caution": _caution(form, preview), "hint": comma_hint(query),
        "retry_in": in_about(retry_after) if retry_after is not None else ""},
        status=429 if retry_after is not None else 400 if form.errors else 200)
    return _retry_after(response, retry_after)


def check_inbox(request: HttpRequest) -> HttpResponse:
    sent_to = _sent_to(request)
    purpose = sent_to.get("purpose") if sent_to.get("purpose") in (tokens.CONFIRM, tokens.MANAGE) else tokens.CONFIRM
    question = sent_to.get("question")
    return render(request, "alerts/check_inbox.html", {
        "email": sent_to.get("email", ""), "purpose": purpose, "query": sent_to.get("q", ""),
        # After a follow, asking again is on the question's own page.
        "question": question if isinstance(question, int) else None,
        "days": tokens.MAX_AGE[purpose].days,
        # This page reads the same for every address; a message left from another page waits for the next.
        "hold_messages": True,
    })


def request_link(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data["website"]:
            return _check_inbox(request, form.cleaned_data["email"], tokens.MANAGE)
        return _hand_over(request, "link", form.cleaned_data["email"])
    return render(request, "alerts/request_link.html", {"form": form}, status=400 if form.errors else 200)


def confirm(request: HttpRequest, token: str) -> HttpResponse:
    # A GET only shows a button: mail scanners follow links, and must not confirm anything.
    try:
        link = tokens.read(token, tokens.CONFIRM)
    except tokens.LinkError as error:
        return _bad_link(request, error)
    subscriptions = link.subscriber.subscriptions.filter(pk__in=link.data.get("subscriptions", []))
    already = _already_confirmed(link.subscriber, subscriptions)
    if request.method == "POST":
        confirmed = subscribing.confirm(link)
        if confirmed is None:
            return render(request, "alerts/bad_link.html", {"reason": "superseded", "form": EmailForm()}, status=400)
        _say_confirmed(request, link.subscriber.subscriptions.filter(pk__in=confirmed), already)
        return redirect("alerts:manage", token=tokens.make(link.subscriber, tokens.MANAGE))
    return render(request, "alerts/confirm.html", {"subscriptions": asked_for(link.subscriber, link.data),
                                                   "already": already, "email": link.subscriber.email})


def _already_confirmed(subscriber: Subscriber, subscriptions) -> bool:
    """A used link: every alert it names is confirmed and nothing since has stopped the address."""
    return bool(subscriber.may_add_alerts and subscriptions.exists()
                and not subscriptions.filter(confirmed_at__isnull=True).exists())


# What a search's alert emails about, as "we'll email you when … match" (a question's answer follows it).
NEWS = {Subscription.AlertOn.BOTH: "new questions", Subscription.AlertOn.NEW: "new questions",
        Subscription.AlertOn.ANSWERS: "new answers", Subscription.AlertOn.OVERDUE: "questions that go overdue"}


def _names(subscriptions) -> str:
    return ", ".join(f"“{s.name}”" for s in subscriptions)


def _say_confirmed(request: HttpRequest, subscriptions, already: bool) -> None:
    if already:
        messages.info(request, f"You had already confirmed {_names(subscriptions)}: nothing has changed.")
        return
    on = list(subscriptions.receiving())
    over = [s for s in subscriptions if s.confirmed_at is None]
    if over:
        messages.error(request, f"{_names(over)} could not be turned on: this address already has "
                                f"{settings.MAX_SUBSCRIPTIONS_PER_ADDRESS} alerts, as many as an address can have. "
                                "Delete one, then use the link in the email again.")
    # Only what really sends is called on: an alert paused before it was confirmed still sends nothing.
    waiting = [s for s in subscriptions if s not in on and s not in over]
    if on:
        noun = "Your alert is on" if len(on) == 1 else "Your alerts are on"
        follows = [s for s in on if s.is_follow]
        # Each search by what it emails about: an answers-only alert is not about new questions.
        when = [f"when {news} match {_names(searches)}" for news in dict.fromkeys(NEWS.values())
                if (searches := [s for s in on if not s.is_follow and NEWS[s.alert_on] == news])] + (
            [f"when {_names(follows)} {'is' if len(follows) == 1 else 'are'} answered"] if follows else [])
        messages.success(request, f"{noun}: we’ll email you {' and '.join(when)}.")
    if waiting:
        messages.info(request, f"Confirmed {_names(waiting)}, which {'is' if len(waiting) == 1 else 'are'} paused: "
                               "resume it below to get emails.")
    if not on and not waiting and not over:
        messages.success(request, "Your address is confirmed.")


def _manage_link(request: HttpRequest, token: str) -> tokens.Link | HttpResponse:
    try:
        return tokens.read(token, tokens.MANAGE)
    except tokens.LinkError as error:
        return _bad_link(request, error)


def manage(request: HttpRequest, token: str) -> HttpResponse:
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    # ?q= is the add form's "did you mean" suggestion.
    return _manage_page(request, link.subscriber, token, AlertFields(initial={"q": request.GET.get("q", "")}))


def _manage_page(request: HttpRequest, subscriber: Subscriber, token: str, form: AlertFields,
                 duplicate: bool = False, grouping_error: str = "", preview=None,
                 held: volume.Caution | None = None) -> HttpResponse:
    """The manage page; with the add form's `preview` when it was previewed or sent, and `held` when what it
    sent is waiting for its owner to see its warnings."""
    # Someone else's unconfirmed signups of this address are not its owner's alerts: only counted here.
    subscriptions = list(subscribing.confirmed_alerts(subscriber).select_related("question"))
    # "On" comes from the same rule the sender uses, so the page cannot claim an alert the sender skips.
    receiving = set(subscriber.subscriptions.receiving().values_list("pk", flat=True))
    activity = alert_activity(subscriber)
    # Flagged from the same estimate the forms warn from, as kept (see volume.broad_searches).
    broad = volume.broad_searches([s.canonical_query for s in subscriptions if not s.is_follow])
    for subscription in subscriptions:
        subscription.status = "Ended" if subscription.retired_at else _status(subscriber, subscription, receiving)
        subscription.activity = activity.get(subscription.pk)
        subscription.broad = None if subscription.is_follow else broad.get(subscription.canonical_query)
    query = form["q"].value() or ""
    return render(request, "alerts/manage.html", {
        "subscriber": subscriber, "token": token, "subscriptions": subscriptions,
        "suppressed": subscriber.suppressed_at is not None,
        "unsubscribed": subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED,
        "confirm_days": tokens.MAX_AGE[tokens.CONFIRM].days,
        "unsubscribe_all_url": reverse("alerts:unsubscribe", args=[tokens.make(subscriber, tokens.UNSUBSCRIBE)]),
        "form": form, "duplicate": duplicate, "hint": comma_hint(query) if query else "",
        "preview": preview, "caution": _caution(form, preview), "held": held,
        "matched_any": any(s.activity and s.activity.last_matched_at for s in subscriptions),
        "can_add": subscriber.may_add_alerts,
        "max_alerts": settings.MAX_SUBSCRIPTIONS_PER_ADDRESS,
        "last_checked": questions_last_checked(), "quiet_days": settings.QUIET_ALERT_DAYS,
        "groupings": Subscriber.Grouping.choices, "grouping_error": grouping_error,
        "unconfirmed": subscriber.subscriptions.filter(confirmed_at__isnull=True).count(),
        "unconfirmed_days": settings.RETAIN_UNCONFIRMED_DAYS,
    }, status=400 if form.errors or duplicate or grouping_error else 200)


def grouping(request: HttpRequest, token: str) -> HttpResponse:
    """One email for all of an address's alerts, or one per alert: a choice for the address, not an alert."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    choice = request.POST.get("grouping", "")
    try:
        subscribing.set_email_grouping(link.subscriber, choice)
    except ValueError:
        return _manage_page(request, link.subscriber, token, AlertFields(),
                            grouping_error="Choose one email for all your alerts, or one email per alert.")
    if choice == Subscriber.Grouping.SEPARATE:
        messages.success(request, "Saved: each alert will now come in an email of its own.")
    else:
        messages.success(request, "Saved: news from all your alerts will now come together in one email, "
                                  "grouped by alert.")
    return redirect("alerts:manage", token=token)


def add(request: HttpRequest, token: str) -> HttpResponse:
    """Add an alert from the manage page. It sends no email, so no email budget is spent: the limit on
    what a manage link can do is the cap on alerts per address."""
    if request.method != "POST":
        # A refused add is shown at this URL, so the form's relative "did you mean ?q=" link lands here.
        if "q" in request.GET:
            return redirect(f"{reverse('alerts:manage', args=[token])}?q={quote(request.GET['q'])}")
        return HttpResponseNotAllowed(["POST"])
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    subscriber = link.subscriber
    form = AlertFields(request.POST)
    if _previewing(request, form) or not form.is_valid():
        return _manage_page(request, subscriber, token, form, preview=_preview(request, form, form["q"].value()))
    data = form.cleaned_data
    # As on the signup page, a broad or busy alert is made only once its owner has seen why it may be.
    preview = _preview(request, form, data["q"])
    if held := _unwarned(request, form, preview):
        return _manage_page(request, subscriber, token, form, preview=preview, held=held)
    try:
        subscription = subscribing.add_confirmed(subscriber, query=data["q"], label=data["label"],
                                                 frequency=data["frequency"], alert_on=data["alert_on"])
    except subscribing.DuplicateSearch:
        return _manage_page(request, subscriber, token, form, duplicate=True)
    except subscribing.TooMany:
        form.add_error(None, f"You already have {settings.MAX_SUBSCRIPTIONS_PER_ADDRESS} alerts, as many as an "
                             "address can have: delete one to add another.")
        return _manage_page(request, subscriber, token, form)
    except QueryError as error:
        # Where the form's own check would have put it, so the error summary lists it the same way.
        form.add_error("q", error.message)
        return _manage_page(request, subscriber, token, form)
    except subscribing.CannotAdd as refused:
        _say_cannot_add(request, refused.reason, data["q"])
        return redirect("alerts:manage", token=token)
    messages.success(request, f"Added “{subscription.name}”. It starts with the next new question.")
    return redirect("alerts:manage", token=token)


def _say_cannot_add(request: HttpRequest, reason: str, query: str) -> None:
    if reason == "unsubscribed":
        # Coming back is said yes to from the inbox, never from a manage link that may have been forwarded.
        messages.error(request, format_html(
            "You unsubscribed from everything, so no alert can be added here. To start again, "
            '<a href="{}?q={}">sign up for this search</a> and confirm from the email we send.',
            reverse("alerts:signup"), quote(query)))
    elif reason == "unconfirmed":
        messages.error(request, "Your address isn’t confirmed yet, so no alert can be added here: confirm it "
                                "from the email we sent you first.")
    else:
        messages.error(request, "We can’t send email to this address, so no alert can be added to it.")


def _status(subscriber: Subscriber, subscription: Subscription, receiving: set[int]) -> str:
    if subscription.pk in receiving:
        return "On"
    if subscriber.suppressed_at is not None:
        return "Not sending"
    if not subscription.confirmed_at:
        return "Not confirmed"
    if subscription.paused:
        return "Paused"
    return "Not sending"


def edit(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    # A follow has no search to edit: it is paused or deleted from the manage page.
    subscription = get_object_or_404(Subscription, pk=pk, subscriber=link.subscriber, question__isnull=True)
    # ?q= is the "did you mean" hint's suggestion, offered in place of the saved words.
    initial = {"q": request.GET.get("q", subscription.query), "label": subscription.label,
               "frequency": subscription.frequency, "alert_on": subscription.alert_on}
    form = AlertFields(request.POST or None, initial=initial)
    duplicate = False
    saving = request.method == "POST" and not _previewing(request, form) and form.is_valid()
    query = form["q"].value() or ""
    preview = _preview(request, form, query)
    # As on the signup page, a search is made broad or busy only once its owner has seen why it may be.
    held = _unwarned(request, form, preview) if saving else None
    if saving and not held:
        data = form.cleaned_data
        try:
            subscribing.update_subscription(subscription, query=data["q"], label=data["label"],
                                            frequency=data["frequency"], alert_on=data["alert_on"])
        except subscribing.DuplicateSearch:
            duplicate = True
        else:
            messages.success(request, f"Saved your changes to “{subscription.name}”.")
            return redirect("alerts:manage", token=token)
    return render(request, "alerts/edit.html", {
        "form": form, "subscription": subscription, "token": token, "preview": preview, "duplicate": duplicate,
        "hint": comma_hint(query), "caution": _caution(form, preview), "held": held,
    }, status=400 if form.errors or duplicate else 200)


def act(request: HttpRequest, token: str, pk: int, action: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    subscriber = link.subscriber
    if action == "undo":
        # The alert is gone, so `pk` names what the undo token must be for, not a row.
        _undo(request, subscriber, pk)
        return redirect("alerts:manage", token=token)
    subscription = get_object_or_404(Subscription, pk=pk, subscriber=subscriber)
    if action == "resume" and subscriber.suppressed_at is not None:
        # Nothing is sent to this address whatever the alert's own state, so resuming alone would
        # show a switch that does nothing; an unsubscribed address is offered a confirmation instead.
        return _turn_back_on(request, token, subscription)
    if action == "pause":
        subscribing.set_paused(subscription, True)
        messages.success(request, f"Paused “{subscription.name}”: we won’t email you about it until you resume it.")
    elif action == "resume":
        subscribing.set_paused(subscription, False)
        if subscriber.subscriptions.receiving().filter(pk=subscription.pk).exists():
            messages.success(request, f"Resumed “{subscription.name}”: it is on again.")
        else:
            messages.info(request, f"Resumed “{subscription.name}”, but it sends nothing until it is confirmed "
                                   "from the email we sent.")
    elif action == "delete":
        undo = _undo_token(subscription)
        subscribing.unsubscribe(subscriber, subscription.pk)
        messages.success(request, format_html(
            'Deleted “{}”. <form method="post" action="{}" class="undo">'
            '<input type="hidden" name="csrfmiddlewaretoken" value="{}"><input type="hidden" name="undo" value="{}">'
            '<button type="submit" class="link">Undo<span class="visually-hidden"> deleting “{}”</span></button>'
            '</form>',
            subscription.name, reverse("alerts:act", args=[token, pk, "undo"]), get_token(request), undo,
            subscription.name))
    return redirect("alerts:manage", token=token)


def _turn_back_on(request: HttpRequest, token: str, subscription: Subscription) -> HttpResponse:
    subscriber = subscription.subscriber
    if subscriber.suppressed_reason != Subscriber.Suppression.UNSUBSCRIBED:
        messages.error(request, "We can’t send email to this address, so no alert can be turned on for it.")
        return redirect("alerts:manage", token=token)
    # Each press sends an email: the same budget per address as the public forms.
    try:
        if (wait := _refused(request, _limits("turn-on", subscriber.email))) is not None:
            return rate_limited(request, retry_after=wait)
    except LimitsUnavailable:
        return try_again_soon(request)
    if not subscribing.ask_to_turn_back_on(subscription):
        messages.error(request, "We can’t send email to this address, so no alert can be turned on for it.")
        return redirect("alerts:manage", token=token)
    messages.success(request, f"We’ve emailed {subscriber.email} a link to turn “{subscription.name}” back on. "
                              f"It starts once you confirm; the link works for {tokens.MAX_AGE[tokens.CONFIRM].days} "
                              "days.")
    return redirect("alerts:manage", token=token)


def _undo_token(subscription: Subscription) -> str:
    """The deleted alert itself, signed: undoing needs no row kept behind, and only recreates what was there."""
    return signing.dumps({"s": subscription.subscriber_id, "pk": subscription.pk, "q": subscription.query,
                          "question": subscription.question_id,
                          "label": subscription.label, "frequency": subscription.frequency,
                          "alert_on": subscription.alert_on, "paused": subscription.paused,
                          # Undoing must not confirm what the inbox never confirmed.
                          "confirmed": subscription.confirmed_at is not None},
                         salt=UNDO_SALT, compress=True)


def _undo(request: HttpRequest, subscriber: Subscriber, pk: int) -> None:
    try:
        fields = signing.loads(request.POST.get("undo", ""), salt=UNDO_SALT, max_age=UNDO_SECONDS)
    except signing.SignatureExpired:
        messages.error(request, f"It’s too late to undo that: a deleted alert can be brought back for "
                                f"{UNDO_SECONDS // 60} minutes. Set it up again from its search.")
        return
    except signing.BadSignature:
        fields = None
    if not isinstance(fields, dict) or fields.get("s") != subscriber.pk or fields.get("pk") != pk:
        messages.error(request, "That undo button isn’t for this alert, so nothing was changed.")
        return
    name = fields["label"] or fields["q"]
    try:
        subscribing.restore(subscriber, query=fields["q"], label=fields["label"], frequency=fields["frequency"],
                            alert_on=fields["alert_on"], paused=bool(fields.get("paused")),
                            confirmed=fields.get("confirmed") is True, question_id=fields.get("question"))
    except subscribing.DuplicateSearch:
        messages.info(request, f"You already have an alert for “{name}”, so nothing was changed.")
    except Question.DoesNotExist:
        messages.error(request, f"“{name}” can’t come back: its question is no longer in the archive.")
    except subscribing.TooMany:
        messages.error(request, f"“{name}” can’t come back: this address already has "
                                f"{settings.MAX_SUBSCRIPTIONS_PER_ADDRESS} alerts.")
    except QueryError:
        messages.error(request, f"“{name}” can’t come back: its search is no longer one we can run.")
    else:
        messages.success(request, f"Brought back “{name}”.")


def revoke(request: HttpRequest, token: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    subscribing.revoke_links(link.subscriber)
    subscribing.request_manage_link(link.subscriber.email)
    return render(request, "alerts/revoked.html")


def data(request: HttpRequest, token: str) -> HttpResponse:
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    response = HttpResponse(json.dumps(subscribing.export_data(link.subscriber), indent=2),
                            content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="my-written-question-alerts.json"'
    return response


@csrf_exempt
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows one button; POST unsubscribes at once. The POST is the RFC 8058 one-click target:
    mail clients send it with no cookies and no CSRF token, and the signed URL is the authority."""
    try:
        link = tokens.read(token, tokens.UNSUBSCRIBE)
    except tokens.LinkError as error:
        return _bad_link(request, error)
    subscription_id = link.data.get("sub")
    subscription = link.subscriber.subscriptions.filter(pk=subscription_id).first() if subscription_id else None
    if request.method == "POST":
        subscribing.unsubscribe(link.subscriber, subscription_id)
        return render(request, "alerts/unsubscribed.html", {"subscription": subscription, "whole": not subscription_id,
                                                            "query": subscription.query if subscription else ""})
    return render(request, "alerts/unsubscribe.html", {"subscription": subscription, "whole": not subscription_id,
                                                       "gone": subscription_id and not subscription})


def follow(request: HttpRequest, pk: int) -> HttpResponse:
    """"Email me when this is answered" on a question's page: a follow, confirmed from the inbox like any alert."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    # As on the question's own page: the canary's questions are not there for anyone.
    question = get_object_or_404(Question.objects.public(), pk=pk)
    form = EmailForm(request.POST)
    if question.is_settled:
        # The page offers no form then; a form sent all the same is told why.
        form.is_valid()
        form.add_error(None, "This question has been answered or withdrawn, so there is nothing left to follow.")
    if not form.is_valid():
        return render_question(request, question, form, status=400)
    email = form.cleaned_data["email"]
    if form.cleaned_data["website"]:
        return _check_inbox(request, email, tokens.CONFIRM, question=question.pk)
    return _hand_over(request, "follow", email, question_id=question.pk)


def options(request: HttpRequest) -> HttpResponse:
    """The ways to get alerts from where the person stands: the search they made (`q`), the question they read
    (`question`), or a member or department they name. Each lands on the signup or follow form, confirmed from
    the inbox like any alert."""
    question = None
    if (pk := request.GET.get("question", "")).isascii() and pk.isdigit():
        # As on the question's own page: the canary's questions are not there for anyone.
        question = Question.objects.public().filter(pk=int(pk)).first()
    query, member, department = (request.GET.get(name, "")[:MAX_LENGTH] for name in ("q", "member", "department"))
    ways = subscribing.ways_to_subscribe(query, question, member, department)
    named = {way.kind for way in ways}
    return render(request, "alerts/options.html", {
        "question": question, "query": query, "ways": ways, "member": member, "department": department,
        "departments": departments(),
        "member_error": member.strip() and "member" not in named,
        "query_error": query.strip() and "search" not in named,
    })


def change_email(request: HttpRequest, token: str) -> HttpResponse:
    """Ask for the subscriber's alerts to go to another address: a link is emailed there, and nothing changes
    until it is opened from that inbox. What the page says next is the same whatever the address."""
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    subscriber = link.subscriber
    stopped = subscriber.suppressed_reason in subscribing.NEVER_EMAIL
    form = EmailForm(request.POST or None)
    if request.method == "POST" and not stopped and form.is_valid():
        email = form.cleaned_data["email"]
        if email.lower() == subscriber.email.lower():
            form.add_error("email", "That is the address your alerts go to already: enter the new one.")
        else:
            # A bot that filled the hidden field is shown success, and nothing happens.
            answer = None if form.cleaned_data["website"] else _hand_over(
                request, "link", email, subscriber=subscriber.pk, v=subscriber.token_version,
                over_limit=lambda wait: _change_email_page(request, form, token, subscriber, retry_after=wait))
            if answer is not None and answer.status_code != 302:  # held to the asker's limit, or nothing saved
                return answer
            hours = int(tokens.MAX_AGE[tokens.NEW_EMAIL].total_seconds() // 3600)
            messages.success(request, f"We’ve emailed a link to {email}. Open it from that inbox within {hours} "
                                      f"hours to move your alerts there: until then they go to {subscriber.email}.")
            return redirect("alerts:manage", token=token)
    return _change_email_page(request, form, token, subscriber, stopped=stopped)


def _change_email_page(request: HttpRequest, form: EmailForm, token: str, subscriber: Subscriber,
                       stopped: bool = False, retry_after: int | None = None) -> HttpResponse:
    """The form. Over the connection's limit (`retry_after`, seconds) it keeps what was typed and says when it
    will be taken, as signup does."""
    response = render(request, "alerts/change_email.html", {
        "form": form, "token": token, "subscriber": subscriber, "stopped": stopped,
        "retry_in": in_about(retry_after) if retry_after is not None else ""},
        status=429 if retry_after is not None else 400 if form.errors or (stopped and request.method == "POST")
        else 200)
    return _retry_after(response, retry_after)


def confirm_email(request: HttpRequest, token: str) -> HttpResponse:
    """The link emailed to a new address: a GET shows a button (mail scanners follow links), a POST moves the
    alerts there."""
    try:
        link = tokens.read(token, tokens.NEW_EMAIL)
    except tokens.LinkError as error:
        return _bad_link(request, error)
    new_email = str(link.data.get("to", ""))
    if request.method == "POST":
        try:
            holder = subscribing.change_email(link)
        except subscribing.CannotChange as refused:
            return render(request, "alerts/change_email_confirm.html", {
                "new_email": new_email, "refused": refused.reason, "room": refused.room,
                "max_alerts": settings.MAX_SUBSCRIPTIONS_PER_ADDRESS}, status=400)
        messages.success(request, f"Your alerts now go to {holder.email}. Links in emails sent before this no "
                                  "longer open your alerts.")
        return redirect("alerts:manage", token=tokens.make(holder, tokens.MANAGE))
    return render(request, "alerts/change_email_confirm.html", {"new_email": new_email})
