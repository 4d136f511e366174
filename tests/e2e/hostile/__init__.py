"""Hostile clients: random requests, garbage headers, slow and idle connections, oversized bodies."""
