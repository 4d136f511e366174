"""HTTP routes under /webchannel/v1, plus operations endpoints."""

from django.urls import path

from . import client_js, openapi, views

urlpatterns = [
    path("webchannel/v1/channels", views.create_channel, name="create_channel"),
    # info (GET), publish (POST) and close (DELETE); named "publish", the metrics' view label
    path("webchannel/v1/channels/<path:channel_id>", views.channel, name="publish"),
    path("webchannel/v1/client.js", client_js.client_js, name="client_js"),
    path("webchannel/v1/openapi.json", openapi.openapi_document, name="openapi"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
]
