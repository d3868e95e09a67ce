"""How the process kubelet runs each pod: a real local process, or a stand-in that only runs.

Tests pick a behaviour per pod with :meth:`BehaviorPolicy.add` (by label selector, name,
namespace or predicate; the most recently added matching rule wins), falling back to the
policy's default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class ProcessSpec:
    """What a run-process pod will execute; a ``transform`` hook may edit it in place."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    pod: dict
    container: dict
    pod_ip: str
    sandbox: Path
    # mountPath in the container -> local directory standing in for it
    mounts: dict[str, Path] = field(default_factory=dict)


@dataclass
class PodBehavior:
    """Timings and outcome of a simulated pod, or how to run it as a process."""

    mode: Literal["simulate", "process"] = "simulate"
    # Time between scheduling and the containers starting (image pull + create).
    start_delay: float = 0.0
    # Simulated readiness delay after start (process mode uses readiness probes instead).
    ready_delay: float = 0.0
    # Simulated run time; None runs until deleted. Process mode ignores it.
    run_seconds: float | None = None
    exit_code: int = 0
    # Simulated time a container needs to stop after SIGTERM (killed at the grace period).
    stop_seconds: float = 0.0
    sigterm_exit_code: int = 143
    restart_delay: float = 0.2
    logs: str = ""
    # When set, the image pull fails with this message (ErrImagePull / ImagePullBackOff).
    image_pull_error: str | None = None
    # --- process mode ---
    # Replaces the container's command+args entirely.
    command: Sequence[str] | None = None
    append_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    rewrite_bind_args: bool = True
    transform: Callable[[ProcessSpec], ProcessSpec | None] | None = None


Matcher = Callable[[dict], bool]


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """An equality-based label selector, ``a=b,c!=d,e,!f``: what tests pick pods by."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif term.startswith("!"):
            checks.append(lambda lb, k=term[1:]: k not in lb)
        else:
            checks.append(lambda lb, k=term: k in lb)
    return lambda labels: all(check(labels) for check in checks)


@dataclass
class _Rule:
    matcher: Matcher
    behavior: PodBehavior


class BehaviorPolicy:
    """Ordered rules mapping pods to behaviours (thread-safe)."""

    def __init__(self, default: PodBehavior | None = None) -> None:
        self.default = default or PodBehavior()
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def add(
        self,
        behavior: PodBehavior,
        *,
        selector: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        predicate: Matcher | None = None,
    ) -> Callable[[], None]:
        """Use ``behavior`` for pods matching every given criterion; returns a remover."""
        labels = label_matcher(selector) if selector else None

        def matches(pod: dict) -> bool:
            md = pod.get("metadata") or {}
            if labels is not None and not labels(md.get("labels") or {}):
                return False
            if name is not None and md.get("name") != name:
                return False
            if namespace is not None and md.get("namespace") != namespace:
                return False
            return predicate is None or predicate(pod)

        rule = _Rule(matches, behavior)
        with self._lock:
            self._rules.append(rule)

        def remove() -> None:
            with self._lock:
                if rule in self._rules:
                    self._rules.remove(rule)

        return remove

    def resolve(self, pod: dict) -> PodBehavior:
        """The behaviour for a pod."""
        with self._lock:
            rules = list(reversed(self._rules))
        for rule in rules:
            if rule.matcher(pod):
                return rule.behavior
        return self.default
