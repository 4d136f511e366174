#!/usr/bin/env python
"""Django's command-line utility for webchannel."""

from webchannel_project.cli import main

if __name__ == "__main__":
    main()
