#!/usr/bin/env python
"""A background worker that reports a task's progress to browsers through webchannel.

It publishes in process (``channels_api.publish_sync``), through the channel layer that the
configuration names: with ``redis.url`` set, subscribers of every ``manage.py serve``
process sharing that configuration receive each message. No HTTP call, no API key.

Run it with webchannel's configuration (``WC_CONFIG_FILE`` or ``WC_*`` variables), from the
checkout (``PYTHONPATH=.``) or with webchannel installed::

    WC_CONFIG_FILE=config.toml PYTHONPATH=. python examples/progress_worker.py --wait

Without ``--channel-id`` it creates a channel and prints one JSON line,
``{"channelId": ..., "token": ...}``, for the browser to subscribe with. ``--wait`` then
reads one line from standard input before it starts, so a subscriber can connect first
(a real application hands the token to the page before it queues the task). Progress is
published as JSON, ``{"progress": 0}`` to ``{"progress": 100}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channel-id", help="publish to this channel instead of creating one")
    parser.add_argument("--steps", type=int, default=10, help="progress steps after 0%% (default 10)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds of 'work' per step (default 0.2)")
    parser.add_argument("--wait", action="store_true", help="read a line from stdin before starting")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchannel_project.settings")
    import django

    django.setup()
    from channels_api import create_channel, publish_sync

    channel_id = args.channel_id
    if channel_id is None:
        created = create_channel()
        channel_id = created["channelId"]
        print(json.dumps({"channelId": channel_id, "token": created["token"]}), flush=True)
    if args.wait:
        sys.stdin.readline()
    for step in range(args.steps + 1):
        if step:
            time.sleep(args.interval)  # stands for a slice of the task's real work
        progress = round(100 * step / args.steps)
        publish_sync(channel_id, json.dumps({"progress": progress}).encode())
    print(json.dumps({"channelId": channel_id, "progress": 100}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
