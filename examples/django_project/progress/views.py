"""A page that creates a channel for a task and subscribes to it."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from channels_api import create_channel


def task_page(request: HttpRequest) -> HttpResponse:
    """Create a channel in process (no HTTP call, no API key) and hand the page a token that
    may only subscribe; a worker publishes the task's progress to the channel."""
    created = create_channel()
    context = {"channel_id": created["channelId"], "subscribe_token": created["subscribeToken"]}
    response = render(request, "progress/task.html", context)
    response["Cache-Control"] = "no-store"  # the page carries a token
    return response
