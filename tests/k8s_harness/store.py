"""Object storage: one global resourceVersion counter, an event history and watch fan-out.

All access goes through one re-entrant lock, so the HTTP loop, the simulated controllers and
test threads can all read and write. Subscribers receive events on their own asyncio loop via
``call_soon_threadsafe`` (ordered like the commits that produced them).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .common import deep_copy
from .errors import expired

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


@dataclass(frozen=True)
class StoreEvent:
    """A committed change. ``obj`` and ``prev`` are frozen snapshots: never mutate them."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    plural: str
    namespace: str
    obj: dict
    prev: dict | None


class Subscription:
    """A queue of store events for one consumer on one event loop."""

    def __init__(
        self,
        store: Store,
        plural: str | None,
        namespace: str | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.store = store
        self.plural = plural
        self.namespace = namespace
        self.loop = loop
        self.queue: asyncio.Queue[StoreEvent] = asyncio.Queue()

    def wants(self, event: StoreEvent) -> bool:
        """Whether this subscription covers the event's resource and namespace."""
        if self.plural is not None and event.plural != self.plural:
            return False
        return self.namespace is None or event.namespace == self.namespace

    def close(self) -> None:
        """Stop receiving events."""
        self.store.unsubscribe(self)


class Store:
    """In-memory etcd stand-in."""

    def __init__(self, history_limit: int = 10000, first_rv: int = 1000) -> None:
        self.lock = threading.RLock()
        self._objects: dict[str, dict[Key, dict]] = collections.defaultdict(dict)
        self._rv = first_rv
        self._history: collections.deque[StoreEvent] = collections.deque()
        self._history_limit = history_limit
        # Watches may resume from any RV >= this one; older ones get 410 Expired.
        self._oldest_resumable = first_rv
        self._subs: list[Subscription] = []

    # --- reads -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The latest committed resourceVersion."""
        with self.lock:
            return self._rv

    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        """A copy of one object, or None."""
        with self.lock:
            obj = self._objects[plural].get((namespace, name))
            return deep_copy(obj) if obj is not None else None

    def list(
        self,
        plural: str,
        namespace: str | None = None,
        where: Callable[[dict], bool] | None = None,
    ) -> list[dict]:
        """Copies of all objects of a resource (optionally in one namespace, optionally only
        those ``where`` accepts), sorted by key. ``where`` sees the stored object, read-only:
        filtering before copying keeps controllers that scan often from copying everything."""
        with self.lock:
            items = sorted(self._objects[plural].items())
            return [
                deep_copy(o)
                for (ns, _), o in items
                if (namespace is None or ns == namespace) and (where is None or where(o))
            ]

    def visit(self, plural: str, visitor: Callable[[dict], None]) -> None:
        """Call ``visitor`` on every stored object of a resource, under the lock and without
        copying: for read-only scans (the scheduler's per-node usage) that run very often."""
        with self.lock:
            for obj in self._objects[plural].values():
                visitor(obj)

    def snapshot_at(self, plural: str, namespace: str | None, rv: int) -> list[dict]:
        """The objects as they were at ``rv`` (reconstructed from history; 410 if compacted)."""
        with self.lock:
            if rv < self._oldest_resumable:
                raise expired(f"too old resource version: {rv} ({self._oldest_resumable})")
            state = {k: o for k, o in self._objects[plural].items()}
            for ev in reversed(self._history):
                if ev.rv <= rv:
                    break
                if ev.plural != plural:
                    continue
                key = (ev.namespace, ev.obj["metadata"]["name"])
                if ev.type == "ADDED":
                    state.pop(key, None)
                else:
                    state[key] = ev.prev
            return [
                deep_copy(o)
                for (ns, _), o in sorted(state.items())
                if o is not None and (namespace is None or ns == namespace)
            ]

    # --- writes ------------------------------------------------------------------------------

    def put(self, plural: str, obj: dict) -> dict:
        """Insert or replace an object, stamping the next resourceVersion; returns a copy."""
        with self.lock:
            md = obj["metadata"]
            key = (md.get("namespace", ""), md["name"])
            prev = self._objects[plural].get(key)
            self._rv += 1
            stored = deep_copy(obj)
            stored["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[plural][key] = stored
            kind = "MODIFIED" if prev else "ADDED"
            self._record(StoreEvent(self._rv, kind, plural, key[0], stored, prev))
            return deep_copy(stored)

    def remove(
        self, plural: str, namespace: str, name: str, final: dict | None = None
    ) -> dict | None:
        """Remove an object; the DELETED event carries ``final`` (default: the stored object)
        with a fresh resourceVersion."""
        with self.lock:
            prev = self._objects[plural].pop((namespace, name), None)
            if prev is None:
                return None
            self._rv += 1
            gone = deep_copy(final if final is not None else prev)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._record(StoreEvent(self._rv, "DELETED", plural, namespace, gone, prev))
            return deep_copy(gone)

    def _record(self, event: StoreEvent) -> None:
        self._history.append(event)
        while len(self._history) > self._history_limit:
            dropped = self._history.popleft()
            self._oldest_resumable = dropped.rv
        for sub in list(self._subs):
            if sub.wants(event):
                try:
                    sub.loop.call_soon_threadsafe(sub.queue.put_nowait, event)
                except RuntimeError:  # the subscriber's loop is closed
                    self._subs.remove(sub)

    def compact(self) -> int:
        """Forget all history (like an etcd compaction); older RVs now get 410 Expired."""
        with self.lock:
            self._history.clear()
            self._oldest_resumable = self._rv
            return self._rv

    # --- watches -----------------------------------------------------------------------------

    def subscribe(
        self,
        plural: str | None,
        namespace: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Subscription:
        """Receive every future event of a resource (all resources when ``plural`` is None)."""
        with self.lock:
            sub = Subscription(self, plural, namespace, loop or asyncio.get_running_loop())
            self._subs.append(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Detach a subscription."""
        with self.lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def watch(
        self, plural: str, namespace: str | None, since_rv: int | None
    ) -> tuple[list[StoreEvent], Subscription, int]:
        """Start a watch atomically.

        ``since_rv=None`` means "current state first": synthetic ADDED events for existing
        objects. Otherwise the events after ``since_rv`` are replayed (410 if compacted away).
        Returns (backlog, subscription, rv at start).
        """
        with self.lock:
            if since_rv is None:
                backlog = [
                    StoreEvent(int(o["metadata"]["resourceVersion"]), "ADDED", plural, ns, o, None)
                    for (ns, _), o in sorted(self._objects[plural].items())
                    if namespace is None or ns == namespace
                ]
            else:
                if since_rv < self._oldest_resumable:
                    raise expired(
                        f"too old resource version: {since_rv} ({self._oldest_resumable})"
                    )
                backlog = [
                    ev
                    for ev in self._history
                    if ev.rv > since_rv
                    and ev.plural == plural
                    and (namespace is None or ev.namespace == namespace)
                ]
            sub = self.subscribe(plural, namespace)
            return backlog, sub, self._rv

    def all_objects(self) -> Iterable[tuple[str, dict]]:
        """Every (plural, object) pair; copies."""
        with self.lock:
            return [(p, deep_copy(o)) for p, objs in self._objects.items() for o in objs.values()]
