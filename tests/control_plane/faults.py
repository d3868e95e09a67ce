"""Fault injection rules: errors, delays, slow or dropped watch streams.

Rules are matched in the order they were added; each matching rule draws one number from a
seeded RNG per request, so a given sequence of requests always gets the same faults. The
:class:`~tests.control_plane.proxy.FaultProxy` consults a :class:`FaultInjector` for every
resource request and applies the :class:`FaultDecision` it returns.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass
class FaultRule:
    """One kind of fault for the requests it matches (``None`` criteria match everything)."""

    verbs: frozenset[str] | None = None
    resources: frozenset[str] | None = None  # "pods", "pods/status", "pods/log", "jobs", ...
    namespaces: frozenset[str] | None = None
    share: float = 1.0
    status: int | None = None
    delay: float = 0.0
    times: int | None = None
    # Apply the request, then answer with the error (a lost response; the write happened).
    after: bool = False
    watch_close_after_events: int | None = None
    watch_close_after_seconds: float | None = None
    watch_event_delay: float = 0.0
    injected: int = field(default=0, init=False)
    matched: int = field(default=0, init=False)

    def matches(self, verb: str, resource: str, namespace: str | None) -> bool:
        """Whether the rule covers a request."""
        if self.times is not None and self.injected >= self.times:
            return False
        if self.verbs is not None and verb not in self.verbs:
            return False
        if self.resources is not None and resource not in self.resources:
            return False
        return self.namespaces is None or namespace in self.namespaces


@dataclass
class FaultDecision:
    """What to do to one request; ``status`` is the HTTP code of the error to answer with."""

    status: int | None = None
    after: bool = False
    delay: float = 0.0
    watch_close_after_events: int | None = None
    watch_close_after_seconds: float | None = None
    watch_event_delay: float = 0.0


def _set(values: Iterable[str] | str | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset([values] if isinstance(values, str) else values)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class FaultInjector:
    """Thread-safe rule set consulted by the proxy for every resource request."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def reseed(self, seed: int) -> None:
        """Restart the random sequence."""
        with self._lock:
            self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        """Install a rule."""
        if rule.verbs is not None and not rule.verbs <= set(VERBS):
            raise ValueError(f"unknown verbs {sorted(rule.verbs - set(VERBS))}")
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        """Uninstall a rule."""
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def injected(self) -> int:
        """How many faults were injected in total (by the rules still installed)."""
        with self._lock:
            return sum(r.injected for r in self._rules)

    def fail(
        self,
        share: float = 1.0,
        status: int = 503,
        *,
        verbs: Iterable[str] | str | None = None,
        resources: Iterable[str] | str | None = None,
        namespaces: Iterable[str] | str | None = None,
        times: int | None = None,
        after: bool = False,
    ) -> FaultRule:
        """Answer ``share`` of the matching requests with ``status`` (500, 503, 429, 504...)."""
        return self.add(
            FaultRule(
                _set(verbs),
                _set(resources),
                _set(namespaces),
                share,
                status,
                times=times,
                after=after,
            )
        )

    def delay(
        self,
        seconds: float,
        share: float = 1.0,
        *,
        verbs: Iterable[str] | str | None = None,
        resources: Iterable[str] | str | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """Hold matching requests for ``seconds`` before answering (client timeouts)."""
        return self.add(FaultRule(_set(verbs), _set(resources), None, share, None, seconds, times))

    def drop_watches(
        self,
        *,
        after_events: int | None = None,
        after_seconds: float | None = None,
        share: float = 1.0,
        resources: Iterable[str] | str | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """Close matching watch streams early (clients must re-list/re-watch)."""
        return self.add(
            FaultRule(
                frozenset({"watch"}),
                _set(resources),
                None,
                share,
                times=times,
                watch_close_after_events=after_events,
                watch_close_after_seconds=after_seconds,
            )
        )

    def slow_watches(
        self,
        event_delay: float,
        *,
        share: float = 1.0,
        resources: Iterable[str] | str | None = None,
    ) -> FaultRule:
        """Delay every event of matching watch streams."""
        return self.add(
            FaultRule(
                frozenset({"watch"}), _set(resources), None, share, watch_event_delay=event_delay
            )
        )

    def decide(self, verb: str, resource: str, namespace: str | None) -> FaultDecision:
        """Draw the faults for one request."""
        decision = FaultDecision()
        with self._lock:
            for rule in self._rules:
                if not rule.matches(verb, resource, namespace):
                    continue
                rule.matched += 1
                if self._rng.random() >= rule.share:
                    continue
                rule.injected += 1
                if rule.status is not None and decision.status is None:
                    decision.status = rule.status
                    decision.after = rule.after
                decision.delay += rule.delay
                decision.watch_close_after_events = _min(
                    decision.watch_close_after_events, rule.watch_close_after_events
                )
                decision.watch_close_after_seconds = _min(
                    decision.watch_close_after_seconds, rule.watch_close_after_seconds
                )
                decision.watch_event_delay += rule.watch_event_delay
        return decision
