"""webchannel's URLconf plus ``/test-only/crash``, a view that raises (see ``crash_settings``)."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from channels_api.problems import api_view
from webchannel_project.urls import handler400, handler403, handler404, handler500

CRASH_MESSAGE = "the test-only view failed"


@api_view("GET", "POST")
async def crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(CRASH_MESSAGE)


urlpatterns = [path("test-only/crash", crash, name="crash"), path("", include("channels_api.urls"))]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
