"""``manage.py serve [-c FILE]``: run webchannel under Daphne on ``server.listen_address``."""

from __future__ import annotations

import argparse
import logging
import os
import resource
from typing import Any

from daphne.endpoints import build_endpoint_description_strings
from daphne.management.commands.runserver import get_default_application
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from channels_api import metrics
from channels_api.apps import announce_generated_secrets
from channels_api.checks import exit_if_unfit
from channels_api.config import Config, RedisConfig, parse_listen_address
from channels_api.logs import log_action
from channels_api.management.cli import add_config_file_argument, exit_with_config_error
from channels_api.metric_files import MetricsDirectory
from channels_api.redis_hosts import describe_host, layer_hosts
from channels_api.supervisor import (
    BACKLOG,
    WORKER_TIMEOUT,
    Supervisor,
    die_with_supervisor,
    endpoint_for_fd,
    listen_on_fd,
    listening_sockets,
    start_heartbeat,
)

logger = logging.getLogger("channels_api")


def _raise_open_files_limit(max_connections: int) -> None:
    """Every subscriber is a file descriptor: lift the soft limit to the hard one, as nginx does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < max_connections + 100:
        logger.warning(
            "open-files limit %d is below server.max_connections (%d): raise it (ulimit -n) or lower the setting",
            soft,
            max_connections,
        )


class Command(BaseCommand):
    # The checks a server cannot start without stop it with one line (exit_if_unfit), before the
    # others run (their warnings are printed, as by any command).
    requires_system_checks: list[str] = []
    help = "Run webchannel (HTTP and WebSocket) under Daphne on server.listen_address."

    def add_arguments(self, parser: CommandParser) -> None:
        add_config_file_argument(parser)
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            metavar="N",
            help="Daphne processes sharing the listening socket (default 1; more than 1 needs Redis).",
        )
        parser.add_argument(
            "--worker-timeout",
            type=float,
            default=WORKER_TIMEOUT,
            metavar="SECONDS",
            help=f"With --workers: replace a worker whose event loop has not run for this long "
            f"(default {WORKER_TIMEOUT:g}).",
        )
        parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)  # a worker's inherited socket
        parser.add_argument("--heartbeat-fd", type=int, help=argparse.SUPPRESS)  # a worker's pipe to its parent
        parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)  # a worker's parent

    def handle(self, *args: Any, **options: Any) -> None:
        if options["supervisor_pid"] is not None and not die_with_supervisor(options["supervisor_pid"]):
            logger.error("the supervisor is gone: exiting")
            return
        config = settings.WEBCHANNEL
        # Before the server's modules are imported: they subclass what the checks verify.
        exit_if_unfit()
        self.check()
        _raise_open_files_limit(config.server.max_connections)
        host, port = parse_listen_address(config.server.listen_address)
        workers = options["workers"]
        if workers < 1:
            exit_with_config_error(f"--workers must be 1 or more, got {workers}")
        if not options["worker_timeout"] > 0:
            exit_with_config_error(f"--worker-timeout must be more than 0 seconds, got {options['worker_timeout']}")
        if workers > 1:
            if not config.redis.enabled:
                exit_with_config_error(
                    f"--workers {workers} needs redis.url (or redis.sentinels): worker processes share channels "
                    "through Redis"
                )
            if ":" in host:
                exit_with_config_error(
                    f"--workers {workers} needs an IPv4 server.listen_address (Daphne adopts shared IPv4 sockets only)"
                )
            # The workers inherit the environment: they use the key printed here, and print none.
            os.environ.update(announce_generated_secrets())
            raise SystemExit(_supervise(host, port, workers, config.server.drain_window, options["worker_timeout"]))
        announce_generated_secrets()
        shared_metrics = None
        if options["supervisor_pid"] is not None:
            shared_metrics = MetricsDirectory.join(os.environ.get(metrics.MULTIPROCESS_DIR_VARIABLE, ""))
            if shared_metrics is None:
                logger.error("the supervisor is gone (its metrics directory too): exiting")
                return
        try:
            self._serve(config, host, port, options)
        finally:
            if shared_metrics is not None and shared_metrics.leave():
                logger.info("the last worker of a supervisor that is gone: removed %s", shared_metrics.path)

    def _serve(self, config: Config, host: str, port: int, options: dict[str, Any]) -> None:
        """Run one Daphne process until it has drained."""
        from channels_api.server.daphne_server import WebchannelServer  # after the check of handle()

        if options["listen_fd"] is not None:
            endpoints = [endpoint_for_fd(options["listen_fd"])]
        else:
            # Twisted's default accept backlog (50) overflows when thousands of clients reconnect
            # at once (another process draining): their SYNs are dropped and retried seconds later.
            endpoints = [f"{e}:backlog={BACKLOG}" for e in build_endpoint_description_strings(host=host, port=port)]
        layer = _describe_layer(config.redis)
        logger.info("webchannel starting on %s (channel layer: %s)", config.server.listen_address, layer)
        server = WebchannelServer(
            application=get_default_application(),
            endpoints=endpoints,
            action_logger=log_action if config.server.access_log else None,
            server_name="webchannel",
            config=config,
            supervised=options["heartbeat_fd"] is not None,
        )
        if options["heartbeat_fd"] is not None:
            start_heartbeat(options["heartbeat_fd"])
        if options["listen_fd"] is not None:
            listen_on_fd(options["listen_fd"])  # joins the port's connections only now, ready to accept
        metrics.start_flushing()
        server.run()
        metrics.deliveries.flush()  # what the drain delivered
        if server.listen_failed:
            raise SystemExit(1)


def _describe_layer(redis: RedisConfig) -> str:
    """The channel layer as the startup line names it, passwords redacted."""
    if not redis.enabled:
        return "in-process"
    servers = [describe_host(host) for host in layer_hosts(redis)]
    return f"redis, prefix {redis.prefix!r}, {len(servers)} server(s): {', '.join(servers)}"


def _supervise(host: str, port: int, workers: int, drain_window: float, worker_timeout: float) -> int:
    try:
        sockets = listening_sockets(host, port, workers)
    except OSError as exc:
        logger.critical("cannot listen on %s:%s: %s", host, port, exc.strerror)
        return 1
    bound_host, bound_port = sockets[0].getsockname()[:2]
    # The same line Daphne prints, so tools waiting for it work with workers too.
    logger.info("Listening on TCP address %s:%s", bound_host, bound_port)
    with metrics.shared_between_workers() as directory:
        return Supervisor(sockets, drain_window, worker_timeout, directory).run()
