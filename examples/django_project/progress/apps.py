"""The example app: a page that follows a task's progress."""

from django.apps import AppConfig


class ProgressConfig(AppConfig):
    name = "progress"
