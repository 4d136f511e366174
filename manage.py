#!/usr/bin/env python
"""Django's command-line utility for webchannel."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchannel_project.settings")
    # `serve -c FILE` must be known before Django reads the settings, which happens
    # before the command parses its own arguments.
    from channels_api.config import ENV_CONFIG_FILE
    from channels_api.management.cli import config_file_from_argv

    config_file = config_file_from_argv(sys.argv)
    if config_file is not None:
        os.environ[ENV_CONFIG_FILE] = config_file
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
