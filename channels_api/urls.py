"""HTTP routes: the views of the route table (:mod:`.routes`)."""

from django.urls import path
from django.utils.module_loading import import_string

from .routes import ROUTES

urlpatterns = [path(route.path, import_string(route.view), name=route.name) for route in ROUTES if route.view]
