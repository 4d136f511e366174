"""The shipped deployment: check --deploy, systemd, Docker, compose, nginx, rolling restart, Grafana, pip install."""
