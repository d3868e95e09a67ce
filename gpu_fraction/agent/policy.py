"""What the agent does about a process that uses more GPU memory than its slice.

Memory caps (MPS, framework settings) are the first line; this is the backstop for code that
escapes them. Each tick the agent passes every GPU process with its used memory and its slice's
limit. A process over the limit (plus a tolerance) is reported once per episode: one structured
log line and one :class:`PolicyEvent` to ``on_event``. With the ``terminate`` action, a process
that stays over for ``grace_seconds`` gets SIGTERM, and SIGKILL if it is still there
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
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

PolicyAction = Literal["report", "terminate"]
POLICY_ACTIONS: tuple[str, ...] = ("report", "terminate")

#: Event actions, also the ``action`` label of the agent's policy counter.
EVENT_REPORT = "report"
EVENT_SIGTERM = "sigterm"
EVENT_SIGKILL = "sigkill"


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


@dataclass(frozen=True, slots=True)
class PolicyEvent:
    """Something the policy did: reported a process over its slice, or signalled it."""

    action: str  # EVENT_REPORT, EVENT_SIGTERM or EVENT_SIGKILL
    pid: int
    user: str | None
    allocation_id: str | None
    used_mib: int
    limit_mib: int
    gpu_uuid: str
    #: Seconds the process had been over its limit when this happened.
    over_for_seconds: float

    def log_line(self) -> str:
        """``key=value`` text, so log collectors can parse it without a JSON formatter."""
        return (
            f"gpu-slice action={self.action} pid={self.pid} user={self.user or '-'} "
            f"allocation={self.allocation_id or '-'} used_mib={self.used_mib} "
            f"limit_mib={self.limit_mib} gpu={self.gpu_uuid or '-'} "
            f"over_for_s={self.over_for_seconds:.1f}"
        )


@dataclass(slots=True)
class _Episode:
    """A process's current stretch over its limit."""

    since: float
    term_sent_at: float | None = None
    kill_sent: bool = False


class OverLimitPolicy:
    """Tracks processes over their memory slice and acts on them by the configured action."""

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
        self._episodes: dict[tuple[int, int | None], _Episode] = {}

    @property
    def over_limit_pids(self) -> frozenset[int]:
        """PIDs over their limit as of the last :meth:`observe`."""
        return frozenset(pid for pid, _ in self._episodes)

    def observe(self, usages: Iterable[ProcessUsage]) -> list[PolicyEvent]:
        """Apply the policy to this tick's processes; returns the events it produced."""
        now = self._clock()
        worst = self._worst_by_pid(usages)
        # Episodes belong to a process (PID and start time): one that is gone is forgotten,
        # and a new process that reuses its PID starts with a clean record.
        for key in set(self._episodes) - set(worst):
            del self._episodes[key]
        events: list[PolicyEvent] = []
        for key, usage in worst.items():
            events.extend(self._step(key, usage, now))
        for event in events:
            self._emit(event)
        return events

    def _worst_by_pid(
        self, usages: Iterable[ProcessUsage]
    ) -> dict[tuple[int, int | None], ProcessUsage]:
        # A process on several GPUs is judged by the GPU where it is furthest over (limits are
        # per GPU). Processes with no known limit are left out entirely.
        worst: dict[tuple[int, int | None], ProcessUsage] = {}
        for usage in usages:
            if usage.limit_mib is None:
                continue
            key = (usage.pid, usage.start_ticks)
            current = worst.get(key)
            if current is None or _excess(usage) > _excess(current):
                worst[key] = usage
        return worst

    def _step(
        self, key: tuple[int, int | None], usage: ProcessUsage, now: float
    ) -> list[PolicyEvent]:
        assert usage.limit_mib is not None
        pid = usage.pid
        episode = self._episodes.get(key)
        over = usage.used_mib > usage.limit_mib + self.tolerance_mib
        if not over and (episode is None or episode.term_sent_at is None):
            if episode is not None:
                logger.info("pid %d is back under its GPU memory slice; timer reset", pid)
                del self._episodes[key]
            return []
        events: list[PolicyEvent] = []
        if episode is None:
            episode = self._episodes[key] = _Episode(since=now)
            events.append(self._event(EVENT_REPORT, usage, 0.0))
        if self.action != "terminate":
            return events
        over_for = now - episode.since
        if episode.term_sent_at is None:
            if over_for >= self.grace_seconds and self._signal(usage, signal.SIGTERM):
                episode.term_sent_at = now
                events.append(self._event(EVENT_SIGTERM, usage, over_for))
            return events
        # Once SIGTERM is sent the process is on its way out: it gets SIGKILL if it still holds
        # GPU memory kill_after_seconds later, whether or not it dropped under the limit meanwhile.
        kill_due = not episode.kill_sent and now - episode.term_sent_at >= self.kill_after_seconds
        if kill_due and self._signal(usage, signal.SIGKILL):
            episode.kill_sent = True
            events.append(self._event(EVENT_SIGKILL, usage, over_for))
        return events

    def _signal(self, usage: ProcessUsage, signum: int) -> bool:
        pid, key = usage.pid, (usage.pid, usage.start_ticks)
        if pid <= 1:  # never signal init or a process group by mistake
            logger.error("refusing to send signal %d to pid %d", signum, pid)
            return False
        # Looked at again just before the signal: the sampled process may have exited and its
        # PID gone to another, which must never be killed for it.
        recheck = self._start_of is not None and usage.start_ticks is not None
        if recheck and self._start_of(pid) != usage.start_ticks:
            logger.info("pid %d is another process now; not signalled", pid)
            self._episodes.pop(key, None)
            return False
        try:
            self._kill(pid, signum)
        except ProcessLookupError:
            self._episodes.pop(key, None)
            return False
        except OSError as err:
            logger.error("cannot send signal %d to pid %d: %s", signum, pid, err)
            return False
        return True

    def _event(self, action: str, usage: ProcessUsage, over_for: float) -> PolicyEvent:
        assert usage.limit_mib is not None
        return PolicyEvent(
            action=action,
            pid=usage.pid,
            user=usage.user,
            allocation_id=usage.allocation_id,
            used_mib=usage.used_mib,
            limit_mib=usage.limit_mib,
            gpu_uuid=usage.gpu_uuid,
            over_for_seconds=over_for,
        )

    def _emit(self, event: PolicyEvent) -> None:
        level = logging.WARNING if event.action == EVENT_REPORT else logging.ERROR
        logger.log(level, event.log_line(), extra={"gpu_slice_event": event})
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken listener must not stop enforcement
                logger.exception("policy event listener failed")


def _excess(usage: ProcessUsage) -> int:
    return usage.used_mib - (usage.limit_mib or 0)
