"""Root URLconf: the API and operations endpoints; every error answers in problem+json."""

from django.urls import include, path

urlpatterns = [path("", include("channels_api.urls"))]

handler400 = "channels_api.problems.bad_request"
handler403 = "channels_api.problems.permission_denied"
handler404 = "channels_api.problems.not_found"
handler500 = "channels_api.problems.server_error"
