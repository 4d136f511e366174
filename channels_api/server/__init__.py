"""webchannel's server: where it adapts Daphne, Twisted, autobahn, channels_redis and prometheus_client.

Everything that relies on another package's private attributes lives in this package,
and each module's docstring lists what it relies on. :mod:`.compat` verifies all of
them at startup, so a dependency upgrade that renames one stops the server with one
line naming the package, its version and the missing internal, instead of letting it
misbehave silently.
"""
