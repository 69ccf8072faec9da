"""Signup, confirmation, the manage page and unsubscribing: thin shells over alerts.subscribing."""

from __future__ import annotations

import contextlib
import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django_ratelimit.core import get_usage
from kombu.exceptions import OperationalError as BrokerDown

from alerts import subscribing, tasks, tokens
from alerts.forms import AlertFields, EmailForm, SignupForm
from alerts.models import Subscription
from questions.search import QueryError
from questions.searching import CACHE_ERRORS

log = logging.getLogger(__name__)


def rate_limited(request: HttpRequest, exception=None) -> HttpResponse:
    return render(request, "alerts/rate_limited.html", status=429)


def try_again_soon(request: HttpRequest) -> HttpResponse:
    """What a form says when the cache that counts its limits, or the queue that takes its work, is down:
    nothing was done, so nothing is owed, and the same request in a minute will most likely go through."""
    response = render(request, "alerts/try_again.html", status=503)
    response["Retry-After"] = "60"
    return response


class LimitsUnavailable(Exception):
    """The cache holding the rate-limit counters did not answer."""


def _limits(form: str, email: str) -> list[dict]:
    return [
        {"group": f"{form}-ip", "key": "ip", "rate": settings.RATELIMIT_SIGNUP_PER_IP},
        # One budget per address, whichever form asks: each request sends that address an email.
        {"group": "emails-to-address", "key": lambda group, request: email.strip().lower(),
         "rate": settings.RATELIMIT_SIGNUP_PER_ADDRESS},
    ]


def _usage(request: HttpRequest, limits: list[dict], increment: bool) -> list[dict | None]:
    try:
        return [get_usage(request, increment=increment, **limit) for limit in limits]
    except CACHE_ERRORS as error:
        log.warning("rate limits unavailable, request refused: %s", error)
        raise LimitsUnavailable from error


def _has_room(request: HttpRequest, limits: list[dict]) -> bool:
    """A look that counts nothing: a request refused for one limit uses up nothing of the other, so a
    flood from one IP cannot lock an address out for everybody.

    Raises LimitsUnavailable when the cache is down. Refusing then, rather than letting everything
    through, is deliberate: these limits are all that stops a stranger using us to flood an inbox."""
    return all(usage is None or usage["count"] < usage["limit"] for usage in _usage(request, limits, False))


def _hand_over(request: HttpRequest, form: str, email: str, task, **work) -> HttpResponse:
    """Check the limits, then queue the address-dependent work and show the page every address gets.

    Whether an address is known, unsubscribed or bounced decides what the task does, never what this
    request does: the same checks, one message to the broker, the same page, in the same time. The
    task writes the Delivery row (the durable queue) before anything is sent; if the broker will not
    take the message, the person is asked to try again in a minute, so nothing is owed that could be
    lost."""
    limits = _limits(form, email)
    try:
        if not _has_room(request, limits):
            return rate_limited(request)
        task.apply_async(kwargs={"email": email, **work})
    except LimitsUnavailable:
        return try_again_soon(request)
    except BrokerDown:
        log.warning("the broker did not take a %s request; asked to try again", form, exc_info=True)
        return try_again_soon(request)
    # Counted only once the work is queued: what was refused or not taken uses up no limit.
    with contextlib.suppress(LimitsUnavailable):  # the work is queued all the same
        _usage(request, limits, True)
    return redirect("alerts:check-inbox")


def _bad_link(request: HttpRequest, error: tokens.LinkError) -> HttpResponse:
    return render(request, "alerts/bad_link.html", {"reason": error.reason, "form": EmailForm()}, status=400)


def _previewing(request: HttpRequest, form) -> bool:
    """"Preview" re-shows the form with what the search would have sent, saving nothing; only the
    search's own mistakes are worth showing then."""
    if "preview" not in request.POST:
        return False
    form.is_valid()
    for name in [name for name in form.errors if name != "q"]:
        del form.errors[name]
    return True


def _preview(form, query: str) -> subscribing.Preview | None:
    """What the form's search would have sent lately; nothing while the search is refused."""
    if not query or form.errors.get("q"):
        return None
    try:
        return subscribing.preview(query)
    except QueryError:
        return None


def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = SignupForm(request.POST)
        if not _previewing(request, form) and form.is_valid():
            data = form.cleaned_data
            if data["website"]:
                # A bot filled the hidden field: it is shown success and nothing happens.
                return redirect("alerts:check-inbox")
            return _hand_over(request, "signup", data["email"], tasks.take_signup_task, query=data["q"],
                              frequency=data["frequency"], alert_on=data["alert_on"], label=data["label"])
    else:
        form = SignupForm(initial={"q": request.GET.get("q", "")})
    query = form["q"].value() or ""
    preview = _preview(form, query)
    return render(request, "alerts/signup.html", {"form": form, "preview": preview,
                                                  "hint": subscribing.comma_hint(query)},
                  status=400 if form.errors else 200)


def check_inbox(request: HttpRequest) -> HttpResponse:
    return render(request, "alerts/check_inbox.html")


def request_link(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data["website"]:
            return redirect("alerts:check-inbox")
        return _hand_over(request, "link", form.cleaned_data["email"], tasks.take_link_request_task)
    return render(request, "alerts/request_link.html", {"form": form}, status=400 if form.errors else 200)


def confirm(request: HttpRequest, token: str) -> HttpResponse:
    # A GET only shows a button: mail scanners follow links, and must not confirm anything.
    try:
        link = tokens.read(token, tokens.CONFIRM)
    except tokens.LinkError as error:
        return _bad_link(request, error)
    if request.method == "POST":
        if not subscribing.confirm(link):
            return render(request, "alerts/bad_link.html", {"reason": "superseded", "form": EmailForm()}, status=400)
        return redirect("alerts:manage", token=tokens.make(link.subscriber, tokens.MANAGE))
    subscriptions = link.subscriber.subscriptions.filter(pk__in=link.data.get("subscriptions", []))
    return render(request, "alerts/confirm.html", {"subscriptions": subscriptions})


def _manage_link(request: HttpRequest, token: str) -> tokens.Link | HttpResponse:
    try:
        return tokens.read(token, tokens.MANAGE)
    except tokens.LinkError as error:
        return _bad_link(request, error)


def manage(request: HttpRequest, token: str) -> HttpResponse:
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    subscriber = link.subscriber
    return render(request, "alerts/manage.html", {
        "subscriber": subscriber, "token": token,
        "subscriptions": subscriber.subscriptions.all(),
        "unsubscribe_all_url": reverse("alerts:unsubscribe", args=[tokens.make(subscriber, tokens.UNSUBSCRIBE)]),
    })


def edit(request: HttpRequest, token: str, pk: int) -> HttpResponse:
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    subscription = get_object_or_404(Subscription, pk=pk, subscriber=link.subscriber)
    # ?q= is the "did you mean" hint's suggestion, offered in place of the saved words.
    initial = {"q": request.GET.get("q", subscription.query), "label": subscription.label,
               "frequency": subscription.frequency, "alert_on": subscription.alert_on}
    form = AlertFields(request.POST or None, initial=initial)
    duplicate = False
    if request.method == "POST" and not _previewing(request, form) and form.is_valid():
        data = form.cleaned_data
        try:
            subscribing.update_subscription(subscription, query=data["q"], label=data["label"],
                                            frequency=data["frequency"], alert_on=data["alert_on"])
        except subscribing.DuplicateSearch:
            duplicate = True
        else:
            return redirect("alerts:manage", token=token)
    query = form["q"].value() or ""
    preview = _preview(form, query)
    return render(request, "alerts/edit.html", {
        "form": form, "subscription": subscription, "token": token, "preview": preview, "duplicate": duplicate,
        "hint": subscribing.comma_hint(query),
    }, status=400 if form.errors or duplicate else 200)


def act(request: HttpRequest, token: str, pk: int, action: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    link = _manage_link(request, token)
    if isinstance(link, HttpResponse):
        return link
    subscription = get_object_or_404(Subscription, pk=pk, subscriber=link.subscriber)
    if action in ("pause", "resume"):
        subscribing.set_paused(subscription, action == "pause")
    elif action == "delete":
        subscribing.unsubscribe(link.subscriber, subscription.pk)
    return redirect("alerts:manage", token=token)


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
