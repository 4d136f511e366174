"""webchannel: an authenticated, one-way pipe from HTTP publishers to WebSocket subscribers."""
