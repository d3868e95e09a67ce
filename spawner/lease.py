"""One active allocator per namespace: a ``coordination.k8s.io`` Lease the hub holds.

The allocator and its ledger live in the hub's memory; two hubs on one namespace would each
hand out the same GPU. So the hub serves slices only while it holds the Lease, renewing it
every third of its duration. A hub restarted in the same data directory keeps its identity (a
file there) and takes its Lease back at once; any other hub waits until the holder stops
renewing, and is refused while it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import secrets
import socket
import time
from pathlib import Path
from typing import Any


class LeaseHeld(Exception):
    """Another hub holds the Lease and renews it."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def stable_identity(path: Path) -> str:
    """This hub's identity, kept in ``path`` so that a restart in the same place keeps it."""
    try:
        identity = path.read_text().strip()
        if identity:
            return identity
    except OSError:
        pass
    identity = f"{socket.gethostname()}-{secrets.token_hex(6)}"
    with contextlib.suppress(OSError):  # a read-only place: this process's identity only
        path.write_text(identity + "\n")
    return identity


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _micro(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class AllocatorLease:
    """Acquire and renew one Lease through a ``CoordinationV1Api`` client (it is never given
    up: a hub that stops lets it expire, and one restarted in place takes it back at once)."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        log: logging.Logger,
        owners: list[dict[str, Any]] | None = None,
    ) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.identity, self.duration, self.log = identity, duration, log
        self.owners = owners or []  # ownerReferences of the Lease (deleted with its owner)
        self._valid_until = 0.0
        self._task: asyncio.Task | None = None

    def valid(self) -> bool:
        """Whether this hub renewed the Lease recently enough to hand out slices."""
        return time.monotonic() < self._valid_until

    async def acquire(self, wait: float) -> None:
        """Take the Lease, waiting up to ``wait`` seconds for a holder that stops renewing;
        raises :class:`LeaseHeld` naming the holder otherwise."""
        deadline = time.monotonic() + wait
        while True:
            holder = await self._try()
            if holder is None:
                self._task = self._task or asyncio.ensure_future(self._renew_loop())
                return
            if time.monotonic() >= deadline:
                raise LeaseHeld(holder)
            await asyncio.sleep(min(1.0, self.duration / 3))

    async def _read(self) -> dict[str, Any]:
        """The Lease as JSON (camelCase keys, times as text)."""
        found = await self.api.read_namespaced_lease(self.name, self.namespace)
        return self.api.api_client.sanitize_for_serialization(found)

    async def _try(self) -> str | None:
        """One attempt: None when held now, else the live holder's identity."""
        from kubernetes_asyncio.client.exceptions import ApiException

        started = time.monotonic()
        now = _now()
        try:
            current = await self._read()
        except ApiException as err:
            if err.status != 404:
                raise
            current = None
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, int(self.duration)),
            "renewTime": _micro(now),
        }
        if current is None:
            metadata: dict[str, Any] = {"name": self.name}
            if self.owners:
                metadata["ownerReferences"] = self.owners
            body = {"metadata": metadata, "spec": {**spec, "acquireTime": _micro(now)}}
            try:
                await self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as err:
                if err.status == 409:  # someone created it first: look again
                    return "another hub"
                raise
        else:
            held = current.get("spec") or {}
            holder = held.get("holderIdentity")
            renewed = _parse(held.get("renewTime"))
            seconds = held.get("leaseDurationSeconds") or 0
            live = renewed is not None and now < renewed + datetime.timedelta(seconds=seconds)
            if holder and holder != self.identity and live:
                return holder
            if holder != self.identity:
                spec["acquireTime"] = _micro(now)
            current["spec"] = {**held, **spec}
            if self.owners:
                current["metadata"]["ownerReferences"] = self.owners
            try:  # resourceVersion in the body: a concurrent taker makes this a 409
                await self.api.replace_namespaced_lease(self.name, self.namespace, current)
            except ApiException as err:
                if err.status == 409:
                    return "another hub"
                raise
        self._valid_until = started + self.duration
        return None

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.duration / 3)
            try:
                holder = await self._try()
            except Exception:
                self.log.exception("could not renew the GPU allocator lease %s", self.name)
                continue
            if holder is not None:
                self.log.error(
                    "hub %s took the GPU allocator lease %s; this hub hands out no slices",
                    holder,
                    self.name,
                )

    def stop(self) -> None:
        """Stop renewing (the process is going away); the Lease expires by itself."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
