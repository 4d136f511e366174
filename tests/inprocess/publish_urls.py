"""A tests-only URLconf: a Django view of a host application that publishes in process."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from channels_api import InvalidChannelId, LayerUnavailable, MessageTooLarge, create_channel, publish


async def publish_view(request: HttpRequest, channel_id: str) -> JsonResponse:
    """Publish the request body with ``await publish(...)``; report the outcome as JSON."""
    try:
        result = await publish(channel_id, request.body)
    except (InvalidChannelId, MessageTooLarge, LayerUnavailable) as exc:
        return JsonResponse({"error": type(exc).__name__, "detail": str(exc)}, status=400)
    return JsonResponse({"published": True, "result": result})


def create_view(request: HttpRequest) -> JsonResponse:
    """A synchronous view that creates a channel with ``create_channel()``."""
    return JsonResponse(create_channel(request.GET.get("id")))


urlpatterns = [
    path("app/publish/<str:channel_id>", publish_view),
    path("app/create", create_view),
    path("", include("channels_api.urls")),
]
