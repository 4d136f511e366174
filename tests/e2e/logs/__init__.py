"""What the server logs: refusals, event-stream access lines, unexpected errors, never a secret."""
