"""What the agent does about a slice whose processes use more GPU memory than the slice holds.

Memory caps (MPS, framework settings) are the first line, and each of them judges one process;
a pod runs many (every notebook kernel, every DataLoader worker), so this is where a slice is
held to its size as a whole. Each tick the agent passes every GPU process with its used memory,
its slice's limit and what the slice is (the pod's UID, else the allocation id). The processes of
one slice on one GPU are summed, and a slice over its limit (plus a tolerance) is reported once
per episode: one structured log line and one :class:`PolicyEvent` to ``on_event``. With the
``terminate`` action, a slice that stays over for ``grace_seconds`` has its largest processes sent
SIGTERM, as many as it takes for the rest to fit, and SIGKILL if they still hold GPU memory
``kill_after_seconds`` later. Dropping back under the limit before the grace period ends resets
the timer. A process whose limit is unknown is never acted on: the agent only enforces slices it
can read.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger(__name__)

PolicyAction = Literal["report", "terminate"]
POLICY_ACTIONS: tuple[str, ...] = ("report", "terminate")

#: Event actions, also the ``action`` label of the agent's policy counter.
EVENT_REPORT = "report"
EVENT_SIGTERM = "sigterm"
EVENT_SIGKILL = "sigkill"

#: A process: its PID and when it started (a later process may reuse the PID).
ProcessKey = tuple[int, int | None]


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One process's memory on one GPU, as the policy sees it."""

    pid: int
    used_mib: int
    limit_mib: int | None
    user: str | None = None
    allocation_id: str | None = None
    gpu_uuid: str = ""
    #: When the process started (see ``ProcessMapper.start_ticks``); None if unknown.
    start_ticks: int | None = None
    #: What shares the limit: the pod's UID, else the allocation id; None: this process alone.
    slice_key: str | None = None

    @property
    def process(self) -> ProcessKey:
        return (self.pid, self.start_ticks)


@dataclass(frozen=True, slots=True)
class PolicyEvent:
    """Something the policy did: reported a slice over its limit, or signalled one of its
    processes."""

    action: str  # EVENT_REPORT, EVENT_SIGTERM or EVENT_SIGKILL
    #: The process signalled; for a report, the slice's largest process on that GPU.
    pid: int
    user: str | None
    allocation_id: str | None
    #: What the whole slice uses on that GPU: every process of it summed.
    used_mib: int
    limit_mib: int
    gpu_uuid: str
    #: Seconds the slice had been over its limit when this happened.
    over_for_seconds: float
    #: Every process of the slice on that GPU, largest first.
    pids: tuple[int, ...] = ()
    #: What ``pid`` itself holds on that GPU.
    process_used_mib: int = 0

    def log_line(self) -> str:
        """``key=value`` text, so log collectors can parse it without a JSON formatter."""
        return (
            f"gpu-slice action={self.action} pid={self.pid} user={self.user or '-'} "
            f"allocation={self.allocation_id or '-'} used_mib={self.used_mib} "
            f"limit_mib={self.limit_mib} process_used_mib={self.process_used_mib} "
            f"pids={','.join(map(str, self.pids)) or '-'} gpu={self.gpu_uuid or '-'} "
            f"over_for_s={self.over_for_seconds:.1f}"
        )


@dataclass(slots=True)
class _SliceUse:
    """One slice's processes on one GPU this tick, largest first."""

    limit_mib: int
    processes: list[ProcessUsage] = field(default_factory=list)

    @property
    def used_mib(self) -> int:
        return sum(p.used_mib for p in self.processes)


@dataclass(slots=True)
class _Episode:
    """A slice's current stretch over its limit on one GPU."""

    since: float
    #: Processes sent SIGTERM, and when; SIGKILL follows if they still hold memory later.
    terminated: dict[ProcessKey, float] = field(default_factory=dict)
    killed: set[ProcessKey] = field(default_factory=set)


class OverLimitPolicy:
    """Tracks slices over their memory limit and acts on them by the configured action."""

    def __init__(
        self,
        action: PolicyAction | str = "report",
        *,
        grace_seconds: float = 30.0,
        kill_after_seconds: float = 10.0,
        tolerance_mib: int = 0,
        on_event: Callable[[PolicyEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        kill: Callable[[int, int], None] = os.kill,
        start_of: Callable[[int], int | None] | None = None,
    ) -> None:
        if action not in POLICY_ACTIONS:
            raise ValueError(f"policy action must be one of {', '.join(POLICY_ACTIONS)}")
        if grace_seconds < 0 or kill_after_seconds < 0 or tolerance_mib < 0:
            raise ValueError("grace, kill-after and tolerance must not be negative")
        self.action = action
        self.grace_seconds = grace_seconds
        self.kill_after_seconds = kill_after_seconds
        self.tolerance_mib = tolerance_mib
        self.on_event = on_event
        self._clock = clock
        self._kill = kill
        #: Reads a PID's start time again right before a signal (None: trust the sample).
        self._start_of = start_of
        #: Keyed by (slice, GPU UUID).
        self._episodes: dict[tuple[str, str], _Episode] = {}
        self._over_pids: frozenset[int] = frozenset()

    @property
    def over_limit_pids(self) -> frozenset[int]:
        """PIDs of the processes of slices over their limit as of the last :meth:`observe`."""
        return self._over_pids

    @property
    def over_limit_slices(self) -> int:
        """Slices (per GPU) over their limit, or being terminated, as of the last observe."""
        return len(self._episodes)

    def observe(self, usages: Iterable[ProcessUsage]) -> list[PolicyEvent]:
        """Apply the policy to this tick's processes; returns the events it produced."""
        now = self._clock()
        slices = _by_slice(usages)
        # An episode belongs to a slice on a GPU: one whose processes are all gone is forgotten.
        for key in set(self._episodes) - set(slices):
            del self._episodes[key]
        events: list[PolicyEvent] = []
        over_pids: set[int] = set()
        for key, use in slices.items():
            events.extend(self._step(key, use, now))
            if use.used_mib > use.limit_mib + self.tolerance_mib:
                over_pids.update(p.pid for p in use.processes)
        self._over_pids = frozenset(over_pids)
        for event in events:
            self._emit(event)
        return events

    def _step(self, key: tuple[str, str], use: _SliceUse, now: float) -> list[PolicyEvent]:
        episode = self._episodes.get(key)
        allowed = use.limit_mib + self.tolerance_mib
        over = use.used_mib > allowed
        if not over and (episode is None or not episode.terminated):
            if episode is not None:
                logger.info("slice %s is back under its GPU memory limit; timer reset", key[0])
                del self._episodes[key]
            return []
        events: list[PolicyEvent] = []
        if episode is None:
            episode = self._episodes[key] = _Episode(since=now)
            events.append(self._event(EVENT_REPORT, use.processes[0], use, 0.0))
        if self.action != "terminate":
            return events
        over_for = now - episode.since
        present = {p.process: p for p in use.processes}
        # Once SIGTERM is sent a process is on its way out: it gets SIGKILL if it still holds
        # GPU memory kill_after_seconds later, whether or not the slice fits again meanwhile.
        for process, sent_at in list(episode.terminated.items()):
            usage = present.get(process)
            due = now - sent_at >= self.kill_after_seconds and process not in episode.killed
            if usage is not None and due and self._signal(usage, signal.SIGKILL):
                episode.killed.add(process)
                events.append(self._event(EVENT_SIGKILL, usage, use, over_for))
        if over and over_for >= self.grace_seconds:
            events.extend(self._terminate_largest(episode, use, allowed, over_for, now))
        if not over and not any(p in present for p in episode.terminated):
            del self._episodes[key]  # the terminated processes are gone and the rest fits
        return events

    def _terminate_largest(
        self, episode: _Episode, use: _SliceUse, allowed: int, over_for: float, now: float
    ) -> list[PolicyEvent]:
        # The largest processes go first, and only as many as it takes for the rest to fit:
        # a runaway training script is stopped, the notebook kernel beside it keeps running.
        remaining = sum(p.used_mib for p in use.processes if p.process not in episode.terminated)
        events: list[PolicyEvent] = []
        for usage in use.processes:
            if remaining <= allowed:
                break
            if usage.process in episode.terminated:
                continue
            if self._signal(usage, signal.SIGTERM):
                episode.terminated[usage.process] = now
                events.append(self._event(EVENT_SIGTERM, usage, use, over_for))
            remaining -= usage.used_mib  # signalled, or gone already: its memory is on its way
        return events

    def _signal(self, usage: ProcessUsage, signum: int) -> bool:
        pid = usage.pid
        if pid <= 1:  # never signal init or a process group by mistake
            logger.error("refusing to send signal %d to pid %d", signum, pid)
            return False
        # Looked at again just before the signal: the sampled process may have exited and its
        # PID gone to another, which must never be killed for it.
        recheck = self._start_of is not None and usage.start_ticks is not None
        if recheck and self._start_of(pid) != usage.start_ticks:
            logger.info("pid %d is another process now; not signalled", pid)
            return False
        try:
            self._kill(pid, signum)
        except ProcessLookupError:
            return False
        except OSError as err:
            logger.error("cannot send signal %d to pid %d: %s", signum, pid, err)
            return False
        return True

    def _event(
        self, action: str, usage: ProcessUsage, use: _SliceUse, over_for: float
    ) -> PolicyEvent:
        return PolicyEvent(
            action=action,
            pid=usage.pid,
            user=usage.user,
            allocation_id=usage.allocation_id,
            used_mib=use.used_mib,
            limit_mib=use.limit_mib,
            gpu_uuid=usage.gpu_uuid,
            over_for_seconds=over_for,
            pids=tuple(p.pid for p in use.processes),
            process_used_mib=usage.used_mib,
        )

    def _emit(self, event: PolicyEvent) -> None:
        level = logging.WARNING if event.action == EVENT_REPORT else logging.ERROR
        logger.log(level, event.log_line(), extra={"gpu_slice_event": event})
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken listener must not stop enforcement
                logger.exception("policy event listener failed")


def _by_slice(usages: Iterable[ProcessUsage]) -> dict[tuple[str, str], _SliceUse]:
    """This tick's processes grouped by (slice, GPU), largest first. Limits are per GPU, so a
    slice on two GPUs is judged on each. Processes with no known limit are left out entirely;
    one with no slice is a slice of its own."""
    slices: dict[tuple[str, str], _SliceUse] = {}
    for usage in usages:
        if usage.limit_mib is None:
            continue
        owner = usage.slice_key or f"pid:{usage.pid}:{usage.start_ticks}"
        use = slices.setdefault((owner, usage.gpu_uuid), _SliceUse(usage.limit_mib))
        # Every process of a slice carries the same limit; should two disagree, the smaller
        # holds, so a process cannot raise its slice's limit by claiming more.
        use.limit_mib = min(use.limit_mib, usage.limit_mib)
        use.processes.append(usage)
    for use in slices.values():
        use.processes.sort(key=lambda p: (-p.used_mib, p.pid))
    return slices
