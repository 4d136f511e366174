"""Subscribers against real servers: WebSocket, Server-Sent Events, text frames, subprotocol, tokens, close reasons."""
