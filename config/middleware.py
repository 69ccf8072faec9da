"""Every web request named by an id, and counted by the route it took, its status and its time."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram
from whitenoise.middleware import WhiteNoiseFileResponse

from config.observability import HEADER, start_request
from config.proxy import from_trusted_proxy

REQUESTS = Counter("wqa_http_requests", "Web requests answered, by method, status and route (the URL pattern's name, "
                   "\"static\" for a static file, \"unmatched\" when no route took the request).",
                   ["method", "status", "route"])
REQUEST_SECONDS = Histogram("wqa_http_request_duration_seconds", "Time to answer each web request, by method and "
                            "route.", ["method", "route"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# Any other method a client makes up is counted as "other": a label value per made-up word would have no end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def route(request: HttpRequest, response: HttpResponse) -> str:
    """The route's name, never the path: one series per route however many paths reach it."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.view_name
    if isinstance(response, WhiteNoiseFileResponse):
        return "static"
    return "unmatched"


class RequestIdMiddleware:
    """Names the request by the X-Request-ID a trusted proxy gave it, if that is fit to log, or a new one, for
    every line logged while handling it and every task it queues; the response says which. A client's own
    id is not taken: anyone could file their lines under someone else's."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = start_request(request.headers.get(HEADER, "") if from_trusted_proxy(request) else "")
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


class RequestMetricsMiddleware:
    """Counts every response, errors and refusals of the middleware after it included."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in METHODS else "other"
        name = route(request, response)
        REQUESTS.labels(method, str(response.status_code), name).inc()
        REQUEST_SECONDS.labels(method, name).observe(time.perf_counter() - started)
        return response
