"""``manage.py publish_progress <channel_id>``: a stand-in for a task that reports its progress."""

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_api import InvalidChannelId, LayerUnavailable, publish_sync


class Command(BaseCommand):
    help = "Publish progress 0%..100% to a channel, in process, through webchannel's channel layer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel_id")
        parser.add_argument("--steps", type=int, default=10, help="steps after 0%% (default 10)")
        parser.add_argument("--interval", type=float, default=0.2, help="seconds of 'work' per step")

    def handle(self, *args: Any, channel_id: str, steps: int, interval: float, **options: Any) -> None:
        if steps < 1:
            raise CommandError("--steps must be at least 1")
        for step in range(steps + 1):
            if step:
                time.sleep(interval)  # stands for a slice of the task's real work
            progress = round(100 * step / steps)
            try:
                subscribers = publish_sync(channel_id, json.dumps({"progress": progress}).encode())
            except (InvalidChannelId, LayerUnavailable) as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{progress}% sent to {subscribers} subscriber(s)")
