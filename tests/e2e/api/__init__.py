"""The HTTP API against real servers: create, publish, info, close, errors, the OpenAPI document."""
