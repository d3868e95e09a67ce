"""``ai-console agent``: the node agent's command line and its sampling loop.

Every ``--interval`` seconds the :class:`Agent` samples the GPUs, maps each GPU process to its
owner, applies the over-limit policy, updates the metrics and (when asked) publishes the node's
GPU list. ``--once`` runs one tick, prints the metrics and exits.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .kube_api import DEFAULT_CA_FILE, DEFAULT_TOKEN_FILE, KubeAPI
from .metrics import AgentMetrics, MetricsServer
from .pods import PodSlices
from .policy import POLICY_ACTIONS, OverLimitPolicy, PolicyEvent, ProcessUsage
from .procmap import DEFAULT_PROC_ROOT, OwnedProcess, ProcessMapper
from .publish import FilePublisher, NodeAnnotationPublisher, Publisher
from .sampler import NodeSample, Sampler, published_gpus

logger = logging.getLogger("gpu_fraction.agent")

PROG = "ai-console agent"
#: The /metrics port: next to, not on, dcgm-exporter's 9400, since both run on GPU nodes.
DEFAULT_PORT = 9410
#: A failed publish is retried no sooner than this, so a refusing API server is not hammered.
PUBLISH_RETRY_SECONDS = 60.0
#: The list is re-published this often even when unchanged (a re-created node lost it).
PUBLISH_REFRESH_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick saw and did."""

    sample: NodeSample
    processes: tuple[OwnedProcess, ...] = ()
    events: tuple[PolicyEvent, ...] = ()
    #: ``True``/``False`` when it tried to publish, ``None`` when nothing was due.
    published: bool | None = None


@dataclass(slots=True)
class _PublishState:
    published: list[dict[str, Any]] | None = None
    published_at: float = 0.0
    attempted: list[dict[str, Any]] | None = None
    attempted_at: float = 0.0
    #: The list the previous tick saw.
    previous: list[dict[str, Any]] | None = None


class Agent:
    """One node's agent. :meth:`start` once, :meth:`tick` per interval (or :meth:`run`)."""

    def __init__(
        self,
        *,
        node_name: str,
        sampler: Sampler,
        mapper: ProcessMapper,
        policy: OverLimitPolicy,
        metrics: AgentMetrics,
        publisher: Publisher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_name = node_name
        self.sampler = sampler
        self.mapper = mapper
        self.policy = policy
        self.metrics = metrics
        self.publisher = publisher
        self._clock = clock
        self._publish = _PublishState()

    def start(self) -> str | None:
        """Initialise NVML: ``None`` when usable, else the reason (the agent can still idle)."""
        return self.sampler.start()

    def close(self) -> None:
        self.sampler.close()

    def tick(self) -> TickResult:
        """Sample, map, apply the policy, update metrics, publish if due."""
        if not self.sampler.started and self.sampler.start() is None:
            # Idle mode: the driver may be installed (or the device plugged) after start-up.
            logger.info("NVML is usable now; watching this node's GPUs")
        if not self.sampler.started:
            self.metrics.update(NodeSample(ok=False), (), 0, nvml_up=False)
            return TickResult(sample=NodeSample(ok=False, error="NVML is not usable"))

        sample = self.sampler.sample()
        processes = tuple(self.mapper.attribute(sample))
        events = tuple(self.policy.observe(_usages(processes)))
        for event in events:
            self.metrics.count_action(event.action)
        self.metrics.update(sample, processes, len(self.policy.over_limit_pids))
        published = self._publish_if_due(sample)
        return TickResult(sample=sample, processes=processes, events=events, published=published)

    def run(self, interval: float, stop: threading.Event) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            began = self._clock()
            try:
                self.tick()
            except Exception:  # one bad tick (a bug, an odd driver answer) must not end watching
                logger.exception("agent tick failed; trying again next interval")
            stop.wait(max(0.0, interval - (self._clock() - began)))

    def _publish_if_due(self, sample: NodeSample) -> bool | None:
        # Only a complete enumeration is published: a transient NVML failure must not tell the
        # allocator that the node has lost its GPUs.
        if self.publisher is None or not sample.ok:
            return None
        gpus = published_gpus(sample)
        now = self._clock()
        state = self._publish
        previous, state.previous = state.previous, gpus
        if gpus == state.published and now - state.published_at < PUBLISH_REFRESH_SECONDS:
            return None
        # A change is published once two ticks agree, so one query that fails for one tick
        # (which leaves that GPU out of the list) does not withdraw the GPU from the allocator.
        if state.published is not None and gpus != previous:
            return None
        if gpus == state.attempted and now - state.attempted_at < PUBLISH_RETRY_SECONDS:
            return None
        state.attempted, state.attempted_at = gpus, now
        ok = self.publisher.publish(gpus)
        if ok:
            state.published, state.published_at = gpus, now
        return ok


def _usages(processes: Sequence[OwnedProcess]) -> Iterator[ProcessUsage]:
    for process in processes:
        owner = process.owner
        limit = owner.memory_limit_mib
        if limit is not None and owner.gpu_uuids and process.gpu_uuid not in owner.gpu_uuids:
            limit = 0  # a GPU the slice was not given: it may hold nothing there
        yield ProcessUsage(
            pid=process.pid,
            used_mib=process.used_memory_mib,
            limit_mib=limit,
            user=owner.user,
            allocation_id=owner.allocation_id,
            gpu_uuid=process.gpu_uuid,
            start_ticks=owner.start_ticks,
            # Every process of one pod shares its slice (each kernel, each worker).
            slice_key=owner.pod_uid or owner.allocation_id,
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``ai-console agent`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Node agent: samples every NVIDIA GPU on this machine with NVML, maps each GPU "
            "process to the pod or local server that owns it, exports Prometheus metrics and "
            "acts on slices whose processes together use more GPU memory than the slice holds."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        default="0.0.0.0",
        help="address the /metrics HTTP server binds to (127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port of the /metrics HTTP server (0: any free); not 9400, which NVIDIA's "
        "dcgm-exporter uses on the same GPU nodes",
    )
    parser.add_argument(
        "--interval", type=_positive_float, default=5.0, help="seconds between two samples"
    )
    parser.add_argument(
        "--policy",
        choices=POLICY_ACTIONS,
        default="report",
        help="what to do about a slice whose processes together use more GPU memory than it "
        "holds: 'report' logs it and counts it in the metrics; 'terminate' also sends its "
        "largest processes (as many as it takes for the rest to fit) SIGTERM after "
        "--grace-seconds over the limit and SIGKILL --kill-after-seconds later",
    )
    parser.add_argument(
        "--grace-seconds",
        type=_non_negative_float,
        default=30.0,
        help="seconds a slice must stay over its limit before 'terminate' sends SIGTERM; "
        "dropping back under resets the timer",
    )
    parser.add_argument(
        "--kill-after-seconds",
        type=_non_negative_float,
        default=10.0,
        help="seconds after SIGTERM before SIGKILL, if the process still holds GPU memory",
    )
    parser.add_argument(
        "--tolerance-mib",
        type=_non_negative_int,
        default=512,
        help="MiB a slice (all its processes on one GPU, summed) may exceed its limit before "
        "it counts as over; NVML counts each process's CUDA context (a few hundred MiB), which "
        "framework memory caps do not",
    )
    parser.add_argument(
        "--owners",
        choices=("auto", "pods", "environ"),
        default="auto",
        help="where a GPU process's slice (limit and owner) is read: 'pods' from the "
        "annotations of the pod its cgroup names, listed through the Kubernetes API (needs "
        "'list' on pods), so users cannot exempt or disguise their processes; 'environ' from "
        "the process's own environment, for the single-machine hub, whose servers have no pod; "
        "'auto' is 'pods' inside a pod ($KUBERNETES_SERVICE_HOST set) and 'environ' elsewhere",
    )
    parser.add_argument(
        "--proc-root",
        default=DEFAULT_PROC_ROOT,
        help="where to read /proc/<pid>/cgroup and environ (in a pod: the host's /proc, "
        "with hostPID)",
    )
    parser.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME") or socket.gethostname(),
        help="this node's name, for metric labels and --publish node; taken from $NODE_NAME, "
        "else the host name",
    )
    parser.add_argument(
        "--publish",
        choices=("none", "file", "node"),
        default="none",
        help="where to publish this node's GPU list (the ai-console/gpus annotation): 'file' "
        "writes it to --publish-file for the single-machine hub; 'node' patches this node's "
        "annotation through the Kubernetes API with the pod's service account",
    )
    parser.add_argument(
        "--publish-file", default=None, help="JSON file for --publish file (written atomically)"
    )
    parser.add_argument(
        "--kube-api-url",
        default=None,
        help="Kubernetes API base URL for --publish node and --owners pods; unset means "
        "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
    )
    parser.add_argument(
        "--kube-token-file",
        default=DEFAULT_TOKEN_FILE,
        help="bearer token for --publish node and --owners pods",
    )
    parser.add_argument(
        "--kube-ca-file",
        default=DEFAULT_CA_FILE,
        help="CA bundle that signs the API server's certificate, for --publish node and "
        "--owners pods",
    )
    parser.add_argument(
        "--no-gpu",
        choices=("exit", "idle"),
        default="exit",
        help="without a usable NVIDIA driver: 'exit' logs why and exits 0; 'idle' serves "
        "metrics with zero GPUs and keeps checking for a driver until stopped",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one sampling tick, print the metrics to stdout and exit (no HTTP server)",
    )
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="logging threshold",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the agent; ``argv`` excludes the program name. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.publish == "file" and not args.publish_file:
        parser.error("--publish file needs --publish-file PATH")
    with _agent_logging(args.log_level):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    metrics = AgentMetrics(args.node_name)
    api = KubeAPI(
        base_url=args.kube_api_url, token_file=args.kube_token_file, ca_file=args.kube_ca_file
    )
    mapper = ProcessMapper(args.proc_root, pods=_pod_slices(args, api))
    policy = OverLimitPolicy(
        args.policy,
        grace_seconds=args.grace_seconds,
        kill_after_seconds=args.kill_after_seconds,
        tolerance_mib=args.tolerance_mib,
        start_of=mapper.start_ticks,
    )
    agent = Agent(
        node_name=args.node_name,
        sampler=Sampler(),
        mapper=mapper,
        policy=policy,
        metrics=metrics,
        publisher=_publisher(args, api),
    )
    reason = agent.start()
    if reason is not None:
        if args.no_gpu == "exit":
            logger.warning("no NVIDIA GPU found (NVML: %s); the agent has nothing to watch", reason)
            return 0
        logger.warning(
            "no NVIDIA GPU found (NVML: %s); idling with zero GPUs until a driver appears", reason
        )
    try:
        if args.once:
            agent.tick()
            sys.stdout.write(metrics.render().decode("utf-8"))
            sys.stdout.flush()
            return 0
        return _serve(agent, args)
    finally:
        agent.close()


def _serve(agent: Agent, args: argparse.Namespace) -> int:
    try:
        server = MetricsServer(agent.metrics.registry, args.port, args.listen)
    except OSError as err:
        logger.error("cannot serve metrics on %s:%s: %s", args.listen, args.port, err)
        return 1
    logger.info(
        "agent for node %s: metrics on http://%s:%d/metrics, every %gs, policy %s, slices from %s",
        agent.node_name,
        args.listen,
        server.port,
        args.interval,
        args.policy,
        "the node's pods" if agent.mapper.pods is not None else "processes' environments",
    )
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            agent.run(args.interval, stop)
    finally:
        server.close()
    logger.info("agent stopped")
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM/SIGINT (the kubelet stops pods with SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers can only be installed from the main thread; the caller stops us.
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _publisher(args: argparse.Namespace, api: KubeAPI) -> Publisher | None:
    if args.publish == "file":
        return FilePublisher(args.publish_file)
    if args.publish == "node":
        return NodeAnnotationPublisher(args.node_name, api)
    return None


def _pod_slices(args: argparse.Namespace, api: KubeAPI) -> PodSlices | None:
    """The pods' annotations as the source of slices, unless processes' environments are."""
    owners = args.owners
    if owners == "auto":
        owners = "pods" if os.environ.get("KUBERNETES_SERVICE_HOST") else "environ"
    return PodSlices(api, args.node_name) if owners == "pods" else None


@contextmanager
def _agent_logging(level: str) -> Iterator[None]:
    """Log to stderr at ``level``; the agent's logger level is restored afterwards.

    basicConfig does nothing when the host program (or pytest) already set logging up; the
    level is then applied to the agent's own loggers only, so ``--log-level`` still works.
    """
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


__all__ = ["Agent", "TickResult", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
