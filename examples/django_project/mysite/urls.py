"""URLs: the project's own pages, and webchannel's HTTP API under /webchannel/v1/."""

from django.urls import include, path

urlpatterns = [
    path("progress/", include("progress.urls")),
    path("", include("channels_api.urls")),  # webchannel: /webchannel/v1/channels, /healthz, /readyz, /metrics
]
