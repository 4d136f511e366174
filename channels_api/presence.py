"""Who is listening: subscribers per channel, counted in this process and across all of them.

Every subscriber (WebSocket or Server-Sent Events) calls :func:`joined` once it receives the
channel's messages and :func:`left` when it goes. Reading a count is a dict lookup
(:func:`count`), so the publish path asks Redis nothing; with Redis configured, a background
task per process keeps the others' counts cached:

- each process writes its non-zero counts to a hash of its own,
  ``<redis.prefix>__presence__<process id>`` (group name to count), only the fields that
  changed, and renews its expiry of :data:`EXPIRY_SECONDS` every :data:`REFRESH_SECONDS`;
- the hash ``<redis.prefix>__presence`` lists the processes with subscribers, each with a
  version that changes when its counts do; a process re-reads only the hashes whose version
  changed, and for the others asks only whether they still exist;
- a process killed without a word (``kill -9``) stops renewing: its hash expires, and every
  other process drops its subscribers at its next refresh, so at most
  :data:`GHOST_BOUND_SECONDS` after the kill.

A channel's first subscriber is written at once (not at the next refresh), so a publisher
waiting for a listener (:func:`wait_for_listener`) sees it within a fraction of a second:
while publishers wait, one poll per process asks Redis every :data:`POLL_SECONDS` about every
channel they wait for, however many they are (two round trips, one command per other process).
The keys live on the first Redis server of ``redis.url`` (or the Sentinel master), reached
through one capped pool per process (:mod:`channels_api.redis_pool`). Without Redis, the counts
are this process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from .redis_hosts import RedisTarget

logger = logging.getLogger(__name__)

__all__ = ["EXPIRY_SECONDS", "GHOST_BOUND_SECONDS", "REFRESH_SECONDS", "Presence"]

REFRESH_SECONDS = 1.0
"""How often a process renews its counts in Redis and reads the other processes' counts."""
EXPIRY_SECONDS = 3.0
"""A process's counts expire this long after its last renewal (three missed renewals)."""
GHOST_BOUND_SECONDS = EXPIRY_SECONDS + REFRESH_SECONDS
"""The longest a killed process's subscribers are still counted by the others."""
EARLY_WRITE_SPACING_SECONDS = 0.05
"""A new first subscriber is written at once, but writes come at most this often."""
POLL_SECONDS = 0.2
"""While publishers wait for a listener, other processes' counts of their channels are asked this often."""
REDIS_TIMEOUT_SECONDS = 2.0
"""A presence command Redis has not answered by then fails (the cached counts stay in use)."""


class Presence:
    """Subscriber counts: exact for this process, cached for the others (see the module's docstring)."""

    def __init__(self, redis: RedisTarget | None, process_id: str | None = None) -> None:
        """``redis``: the host entry (as in ``CHANNEL_LAYERS``) and prefix the counts are shared
        under; None for this process's counts only."""
        self.process_id = process_id or uuid.uuid4().hex
        self.redis = redis
        self._prefix = redis[1] if redis is not None else ""
        self.local: dict[str, int] = {}
        self.others: dict[str, int] = {}
        """Sum over the other processes of their counts, as of the last refresh."""
        self._changed: set[str] = set()
        """Groups whose count changed since the last write to Redis; kept only while a refresh
        task runs to write (and empty) it, so without Redis nothing outlives its channel."""
        self.waiting = 0
        """Publishers waiting for a listener now (:meth:`wait_for_listener`)."""
        self._waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._peers: dict[str, tuple[bytes, dict[str, int]]] = {}  # process id: (version, counts)
        self._stale_peers: list[str] = []  # gone processes still listed, removed at the next write
        self._version = 0
        self._rewrite = True  # write every count (first write, or after our hash was lost)
        self._synced_at = 0.0
        self._failing = False
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # --- this process's subscribers -----------------------------------------------------------

    def joined(self, group: str) -> None:
        """A subscriber of ``group`` now receives its messages (after joining the channel layer's group)."""
        n = self.local.get(group, 0) + 1
        self.local[group] = n
        if n == 1:
            self.start()
            if self._wake is not None:
                self._wake.set()  # a first listener is written now: a waiting publisher may be elsewhere
        if self._task is not None:
            self._changed.add(group)
        self._found(group, n)

    def left(self, group: str) -> None:
        """A subscriber of ``group`` is gone (once per :meth:`joined`)."""
        n = self.local.get(group, 0) - 1
        if n > 0:
            self.local[group] = n
        else:
            self.local.pop(group, None)
        if self._task is not None:
            self._changed.add(group)

    # --- reading ------------------------------------------------------------------------------

    def count(self, group: str) -> int:
        """Subscribers of ``group`` in every process: this one's exact, the others' as last refreshed
        (by the task :meth:`start` runs on the serving loop)."""
        return self.local.get(group, 0) + self.others.get(group, 0)

    async def count_now(self, group: str) -> int:
        """Subscribers of ``group`` in every process, the others' asked of Redis now (the cached
        count if Redis does not answer).

        Called on another event loop than the refresh task's (``publish_sync`` from a thread), it
        asks through a connection of its own, closed before it returns.
        """
        target = self.redis
        if target is None:
            return self.local.get(group, 0)
        client, temporary = self._client, False
        if client is None or not self._refreshing_here():
            client, temporary = _client(target[0]), True
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                others = await self._others_now(client, [group])
        except Exception as exc:
            self._failed(exc)
            return self.local.get(group, 0) + self.others.get(group, 0)
        finally:
            if temporary:
                await client.aclose(close_connection_pool=True)
        return self.local.get(group, 0) + others[group]

    async def _others_now(self, client: Any, groups: list[str]) -> dict[str, int]:
        """The other processes' subscribers of each of ``groups``, asked of Redis: two round trips."""
        processes = await client.hkeys(self._registry)
        peers = [p.decode() for p in processes if p.decode() != self.process_id]
        totals = dict.fromkeys(groups, 0)
        if not peers:
            return totals
        pipe = client.pipeline(transaction=False)
        for peer in peers:
            pipe.hmget(self._key(peer), groups)
        for counts in await pipe.execute():
            for group, n in zip(groups, counts, strict=True):
                if n is not None:
                    totals[group] += int(n)
        return totals

    async def wait_for_listener(self, group: str, seconds: float) -> int:
        """Wait up to ``seconds`` until ``group`` has a subscriber in some process; return how many
        it has (0 if none came in time).

        A subscriber in this process ends the wait at once; one elsewhere is found by the poll
        that every waiting publisher of this process shares (:meth:`_poll`), or by the refresh.
        """
        self.waiting += 1
        try:
            self.start()  # a publisher waits: counts of other processes must be refreshed
            found = self.count(group)
            if found:
                return found
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[int] = loop.create_future()
            waiters = self._waiters.setdefault(group, [])
            waiters.append(waiter)
            try:
                self._start_polling(loop)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        found = await waiter
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters and self._waiters.get(group) is waiters:
                    del self._waiters[group]
            return max(found, self.count(group))
        finally:
            self.waiting -= 1

    def _found(self, group: str, n: int) -> None:
        """``group`` has ``n`` subscribers (n > 0): every publisher waiting for it may go on."""
        for waiter in self._waiters.pop(group, ()):
            if not waiter.done():
                waiter.set_result(n)

    def _start_polling(self, loop: asyncio.AbstractEventLoop) -> None:
        task = self._poll_task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            return
        if self.redis is not None:
            self._poll_task = loop.create_task(self._poll(), name="webchannel presence poll")

    async def _poll(self) -> None:
        """Every :data:`POLL_SECONDS` while publishers wait: ask Redis how many subscribers the
        other processes have in every channel waited for, and let those with some go on.

        One poll for all of them, so Redis sees the same few commands whether one publisher
        waits or a thousand, on one channel or on many. Ends when nobody waits (each wait is
        bounded), or when :meth:`stop` cancels it.
        """
        target = self.redis
        assert target is not None
        client, temporary = self._client, False
        if client is None or not self._refreshing_here():
            client, temporary = _client(target[0]), True
        this = asyncio.current_task()
        try:
            # Not only cancelled by stop(): a cancellation redis-py swallowed must end it too.
            while self._poll_task is this and self._waiters:
                groups = list(self._waiters)
                try:
                    async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                        others = await self._others_now(client, groups)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed(exc)  # the waits go on; each ends by its own deadline
                else:
                    for group, n in others.items():
                        if n:
                            self._found(group, n + self.local.get(group, 0))
                await asyncio.sleep(POLL_SECONDS)
        finally:
            if temporary:
                await client.aclose(close_connection_pool=True)

    # --- keeping the others' counts -----------------------------------------------------------

    @property
    def _registry(self) -> str:
        return f"{self._prefix}__presence"

    def _key(self, process_id: str) -> str:
        return f"{self._prefix}__presence__{process_id}"

    def start(self) -> None:
        """Start the refresh task on the running loop, unless Redis is not configured or the task
        runs already (on a loop that is still open)."""
        task = self._task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            return
        target = self.redis
        loop = _running_loop()
        if target is None or loop is None:
            return
        self._client = _client(target[0])
        self._wake = asyncio.Event()
        # The first write rewrites every count: no change noted before it matters.
        self._rewrite, self._changed, self._peers, self.others = True, set(), {}, {}
        self._task = loop.create_task(self._run(), name="webchannel presence")

    def _refreshing_here(self) -> bool:
        task = self._task
        return task is not None and not task.done() and task.get_loop() is _running_loop()

    async def _run(self) -> None:
        """Refresh every :data:`REFRESH_SECONDS` (sooner when woken) until :meth:`stop`.

        The loop ends when it is no longer this object's task, not only when cancelled: on
        Python 3.11, ``asyncio.wait_for`` (which redis-py runs each command under) swallows a
        cancellation that arrives as the command completes, and a loop that relied on being
        cancelled would then run for ever, keeping ``asyncio.run`` from returning.
        """
        this = asyncio.current_task()
        wake = self._wake
        assert wake is not None
        while self._task is this:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
                if time.monotonic() - self._synced_at > GHOST_BOUND_SECONDS:
                    self.others, self._peers = {}, {}  # too old to trust
            if self._task is not this:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_SECONDS):
                    await wake.wait()
            wake.clear()
            await asyncio.sleep(EARLY_WRITE_SPACING_SECONDS)

    async def stop(self) -> None:
        """Stop refreshing (the hash then expires as if the process were killed); for tests."""
        poll, self._poll_task = self._poll_task, None
        if poll is not None and not poll.done():
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
        task, self._task = self._task, None
        if isinstance(task, asyncio.Task):
            if self._wake is not None:
                self._wake.set()  # a loop whose cancellation was swallowed sees it is stopped at once
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None

    async def refresh(self) -> None:
        """Write this process's changed counts, renew their expiry, and read the other processes'."""
        client, key, registry = self._client, self._key(self.process_id), self._registry
        changed, self._changed = self._changed, set()
        rewrite = self._rewrite
        expiry_ms = int(EXPIRY_SECONDS * 1000)
        try:
            pipe = client.pipeline(transaction=True)
            pipe.exists(key)  # answer 0: our hash was lost (Redis restarted, or this process stalled)
            if rewrite:
                pipe.delete(key)
                fields = dict(self.local)
                gone: list[str] = []
            else:
                fields = {group: self.local[group] for group in changed if group in self.local}
                gone = [group for group in changed if group not in self.local]
            if fields:
                pipe.hset(key, mapping=fields)
            if gone:
                pipe.hdel(key, *gone)
            renewed = len(pipe.command_stack)  # the index of PEXPIRE's answer: 0 if our hash is gone
            pipe.pexpire(key, expiry_ms)
            if rewrite or changed:
                self._version += 1
            if self.local:
                pipe.hset(registry, self.process_id, self._version)
                pipe.pexpire(registry, expiry_ms)
            else:
                pipe.hdel(registry, self.process_id)
            if self._stale_peers:
                pipe.hdel(registry, *self._stale_peers)
            pipe.hgetall(registry)
            results = await pipe.execute()
        except BaseException:
            self._rewrite = True  # the next write rewrites every count: the changes need not be kept
            raise
        self._stale_peers = []
        # Lost before this write, and holding counts this write did not carry: write them all, soon.
        lost = not rewrite and not results[0] and bool(self.local.keys() - fields.keys())
        self._rewrite = bool(self.local) and (lost or not results[renewed])
        if self._rewrite and self._wake is not None:
            self._wake.set()
        await self._read_peers(results[-1])
        self._synced_at = time.monotonic()
        if self._failing:
            self._failing = False
            logger.info("subscriber counts are shared through Redis again")

    async def _read_peers(self, registry: dict[bytes, bytes]) -> None:
        plan: list[tuple[str, bytes, bool]] = []
        pipe = self._client.pipeline(transaction=False)
        for raw, version in registry.items():
            peer = raw.decode()
            if peer == self.process_id:
                continue
            known = self._peers.get(peer)
            fresh = known is None or known[0] != version
            (pipe.hgetall if fresh else pipe.exists)(self._key(peer))
            plan.append((peer, version, fresh))
        answers = await pipe.execute() if plan else []
        peers: dict[str, tuple[bytes, dict[str, int]]] = {}
        for (peer, version, fresh), answer in zip(plan, answers, strict=True):
            if not answer:  # expired (killed, stalled) or emptied: none of its subscribers count
                self._stale_peers.append(peer)
            elif fresh:
                peers[peer] = (version, {group.decode(): int(n) for group, n in answer.items()})
            else:
                peers[peer] = self._peers[peer]
        if peers.keys() != self._peers.keys() or any(peers[p] is not self._peers.get(p) for p in peers):
            others: dict[str, int] = {}
            for _, counts in peers.values():
                for group, n in counts.items():
                    others[group] = others.get(group, 0) + n
            self.others = others
        self._peers = peers

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            logger.warning(
                "subscriber counts could not be shared through Redis (%s); other processes' counts "
                "are the last known, and are dropped after %g s",
                type(exc).__name__,
                GHOST_BOUND_SECONDS,
            )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _client(host: dict[str, Any]) -> Any:
    from .redis_pool import bounded_client

    return bounded_client(host, socket_timeout=REDIS_TIMEOUT_SECONDS)
