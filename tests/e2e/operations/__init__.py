"""Running the server: configuration, .env, genconfig, runserver, shutdown, drain, generated keys, health endpoints."""
