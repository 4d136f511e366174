"""Clients of a real server: the Python client, in-process publish, the example worker, client.js served."""
