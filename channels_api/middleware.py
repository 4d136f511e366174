"""Async-native middleware, so an HTTP request never leaves the event loop for a thread.

Django runs a ``MiddlewareMixin`` middleware's hooks through ``sync_to_async`` under ASGI:
one thread hand-off per hook per request (and a new thread per request context), which
cost more than the rest of a publish. These do the same work inline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import cast

from django.http import HttpRequest, HttpResponseBase
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware
from django.utils.decorators import async_only_middleware
from django_prometheus.middleware import Metrics

from .metrics import method_label

GetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

UNROUTED_VIEW = "<unnamed view>"
"""The ``view`` label of every request no route matched (django-prometheus's own value)."""


@async_only_middleware
def prometheus_middleware(get_response: GetResponse) -> Callable[[HttpRequest], Awaitable[HttpResponseBase]]:
    """django-prometheus's per-view metrics: responses by status/view/method and latency by view/method.

    Every label value is the server's own: the status it answered, the name of the route
    (one fixed value for every unrouted path) and the method when it is a standard one
    (:func:`~channels_api.metrics.method_label`). Nothing the client sends becomes a label
    value, so the number of series stays bounded.
    """
    metrics = Metrics.get_instance()
    by_status = metrics.responses_by_status_view_method
    latency = metrics.requests_latency_by_view_method

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = await get_response(request)
        match = request.resolver_match
        view = (match.view_name if match else None) or UNROUTED_VIEW
        method = method_label(request.method)
        by_status.labels(str(response.status_code), view, method).inc()
        latency.labels(view, method).observe(time.perf_counter() - started)
        return response

    return middleware


class SecurityMiddleware(DjangoSecurityMiddleware):
    """Django's ``SecurityMiddleware``, its (CPU-only) hooks run inline instead of in a thread."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request) or await cast(GetResponse, self.get_response)(request)
        return self.process_response(request, response)  # type: ignore[arg-type]  # any response works
