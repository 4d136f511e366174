"""webchannel's server: its adaptations of Daphne, Twisted, autobahn and channels_redis.

``manage.py serve`` runs :class:`.daphne_server.WebchannelServer`: Daphne with webchannel's
WebSocket and HTTP protocols (bounded unsent bytes, frames written at once, problem+json below
Django, a graceful drain) and, with Redis, channels_redis's pub/sub layer with bounded backlogs.
Each module lists in ``INTERNALS`` the private names of those packages it relies on;
:mod:`channels_api.fence` verifies them (the ``channels_api.E001`` system check).
"""
