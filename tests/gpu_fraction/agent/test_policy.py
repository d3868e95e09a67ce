"""The over-limit policy with a fake clock and a fake kill."""

from __future__ import annotations

import logging
import signal

import pytest

from gpu_fraction.agent.policy import OverLimitPolicy, PolicyEvent, ProcessUsage


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeKill:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []
        self.gone: set[int] = set()

    def __call__(self, pid: int, signum: int) -> None:
        if pid in self.gone:
            raise ProcessLookupError(pid)
        self.sent.append((pid, signum))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kill() -> FakeKill:
    return FakeKill()


def make(
    action: str,
    clock: FakeClock,
    kill: FakeKill,
    events: list[PolicyEvent] | None = None,
    tolerance_mib: int = 0,
) -> OverLimitPolicy:
    """Grace 30 s, SIGKILL 10 s after SIGTERM; events appended to ``events``."""
    return OverLimitPolicy(
        action,
        grace_seconds=30,
        kill_after_seconds=10,
        tolerance_mib=tolerance_mib,
        on_event=events.append if events is not None else None,
        clock=clock,
        kill=kill,
    )


def over(pid: int = 1234, used: int = 7000, limit: int | None = 6144) -> ProcessUsage:
    return ProcessUsage(
        pid=pid, used_mib=used, limit_mib=limit, user="alice", allocation_id="a1", gpu_uuid="GPU-0"
    )


def test_terminate_after_grace_and_kill_later(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("terminate", clock, kill, events=events)

    clock.now = 0
    policy.observe([over()])
    assert [e.action for e in events] == ["report"]
    assert kill.sent == []

    clock.now = 29
    policy.observe([over()])
    assert kill.sent == []

    clock.now = 30
    policy.observe([over()])
    assert kill.sent == [(1234, signal.SIGTERM)]
    assert events[-1].action == "sigterm"
    assert events[-1].over_for_seconds == 30

    clock.now = 39
    policy.observe([over()])
    assert kill.sent == [(1234, signal.SIGTERM)]

    clock.now = 40
    policy.observe([over()])
    assert kill.sent == [(1234, signal.SIGTERM), (1234, signal.SIGKILL)]
    assert [e.action for e in events] == ["report", "sigterm", "sigkill"]

    clock.now = 100
    policy.observe([over()])  # nothing more to send
    assert len(kill.sent) == 2


def test_event_carries_who_and_how_much(
    clock: FakeClock, kill: FakeKill, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[PolicyEvent] = []
    policy = make("report", clock, kill, events=events)
    with caplog.at_level(logging.WARNING, logger="gpu_fraction.agent.policy"):
        returned = policy.observe([over(pid=77, used=9000, limit=6144)])
    assert returned == events
    assert events == [
        PolicyEvent(
            action="report",
            pid=77,
            user="alice",
            allocation_id="a1",
            used_mib=9000,
            limit_mib=6144,
            gpu_uuid="GPU-0",
            over_for_seconds=0.0,
            pids=(77,),
            process_used_mib=9000,
        )
    ]
    [record] = caplog.records
    text = record.getMessage()
    for part in ("pid=77", "user=alice", "allocation=a1", "used_mib=9000", "limit_mib=6144"):
        assert part in text
    assert record.gpu_slice_event == events[0]  # type: ignore[attr-defined]


def test_report_only_never_kills_and_reports_once(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("report", clock, kill, events=events)
    for t in range(0, 1000, 5):
        clock.now = t
        policy.observe([over()])
    assert kill.sent == []
    assert [e.action for e in events] == ["report"]
    assert policy.over_limit_pids == {1234}


def test_dropping_under_resets_the_timer(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("terminate", clock, kill, events=events)
    clock.now = 0
    policy.observe([over()])
    clock.now = 25
    policy.observe([over(used=6000)])  # back under
    assert policy.over_limit_pids == frozenset()
    clock.now = 31
    policy.observe([over()])  # over again: a new episode, reported again, timer from 31
    clock.now = 60
    policy.observe([over()])
    assert kill.sent == []
    clock.now = 61
    policy.observe([over()])
    assert kill.sent == [(1234, signal.SIGTERM)]
    assert [e.action for e in events] == ["report", "report", "sigterm"]


def test_processes_without_a_limit_are_ignored(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("terminate", clock, kill, events=events)
    for t in (0, 30, 60, 90):
        clock.now = t
        policy.observe([over(limit=None, used=10**6)])
    assert events == []
    assert kill.sent == []


def test_tolerance(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("report", clock, kill, events=events, tolerance_mib=512)
    policy.observe([over(used=6144 + 512)])
    assert events == []
    policy.observe([over(used=6144 + 513)])
    assert [e.used_mib for e in events] == [6144 + 513]


def test_vanished_pids_are_forgotten(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("terminate", clock, kill, events=events)
    clock.now = 0
    policy.observe([over(pid=1), over(pid=2)])
    clock.now = 20
    policy.observe([over(pid=2)])  # pid 1 went away
    assert policy.over_limit_pids == {2}
    clock.now = 25
    policy.observe([over(pid=1), over(pid=2)])  # a new process with pid 1: new timer
    clock.now = 30
    policy.observe([over(pid=1), over(pid=2)])
    assert kill.sent == [(2, signal.SIGTERM)]  # not pid 1: it has been over only 5 s
    assert [(e.action, e.pid) for e in events] == [
        ("report", 1),
        ("report", 2),
        ("report", 1),
        ("sigterm", 2),
    ]


def test_sigkill_even_if_it_freed_memory_after_sigterm(clock: FakeClock, kill: FakeKill) -> None:
    policy = make("terminate", clock, kill)
    clock.now = 0
    policy.observe([over()])
    clock.now = 30
    policy.observe([over()])
    clock.now = 40
    policy.observe([over(used=100)])  # still holding the GPU, though under now
    assert kill.sent == [(1234, signal.SIGTERM), (1234, signal.SIGKILL)]


def test_process_that_exits_before_the_signal_is_not_reported_as_signalled(
    clock: FakeClock, kill: FakeKill
) -> None:
    policy = make("terminate", clock, kill)
    policy.observe([over()])
    kill.gone.add(1234)
    clock.now = 30
    assert [e.action for e in policy.observe([over()])] == []
    assert kill.sent == []


def test_zero_grace_terminates_on_the_first_tick(clock: FakeClock, kill: FakeKill) -> None:
    policy = OverLimitPolicy("terminate", grace_seconds=0, clock=clock, kill=kill)
    assert [e.action for e in policy.observe([over()])] == ["report", "sigterm"]
    assert kill.sent == [(1234, signal.SIGTERM)]


def test_worst_gpu_decides_for_a_process_on_two_gpus(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("report", clock, kill, events=events)
    policy.observe(
        [
            ProcessUsage(pid=5, used_mib=100, limit_mib=6144, gpu_uuid="GPU-0"),
            ProcessUsage(pid=5, used_mib=7000, limit_mib=6144, gpu_uuid="GPU-1"),
        ]
    )
    assert [(e.pid, e.gpu_uuid) for e in events] == [(5, "GPU-1")]


def test_never_signals_init(clock: FakeClock, kill: FakeKill) -> None:
    policy = OverLimitPolicy("terminate", grace_seconds=0, clock=clock, kill=kill)
    policy.observe([over(pid=1)])
    assert kill.sent == []


def test_a_failing_listener_does_not_stop_enforcement(clock: FakeClock, kill: FakeKill) -> None:
    def broken(event: PolicyEvent) -> None:
        raise RuntimeError("listener bug")

    policy = OverLimitPolicy("terminate", grace_seconds=0, on_event=broken, clock=clock, kill=kill)
    policy.observe([over()])
    assert kill.sent == [(1234, signal.SIGTERM)]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="report, terminate"):
        OverLimitPolicy("shout")
    with pytest.raises(ValueError):
        OverLimitPolicy("report", grace_seconds=-1)


def test_a_reused_pid_is_never_signalled_for_the_process_that_had_it(
    clock: FakeClock, kill: FakeKill
) -> None:
    """Episodes belong to a process (PID and start time), and the start time is read again
    just before a signal: if the PID went to another process meanwhile, nobody is killed."""
    starts = {4321: 1000}
    policy = OverLimitPolicy(
        "terminate", grace_seconds=30, clock=clock, kill=kill, start_of=starts.get
    )
    old = ProcessUsage(pid=4321, used_mib=7000, limit_mib=6144, start_ticks=1000)
    policy.observe([old])
    clock.now = 31.0
    starts[4321] = 2000  # the sampled process exited; a new one got its PID
    assert policy.observe([old]) == [] and kill.sent == []
    # The new process is over its own limit: it starts its own grace period.
    new = ProcessUsage(pid=4321, used_mib=7000, limit_mib=6144, start_ticks=2000)
    assert [e.action for e in policy.observe([new])] == ["report"]
    clock.now = 50.0
    assert policy.observe([new]) == [] and kill.sent == []  # 19 s in: still within grace
    clock.now = 62.0
    assert [e.action for e in policy.observe([new])] == ["sigterm"]
    assert kill.sent == [(4321, signal.SIGTERM)]


def sliced(pid: int, used: int, pod: str = "pod-a", gpu: str = "GPU-0") -> ProcessUsage:
    """A process of pod ``pod`` on ``gpu``, whose slice holds 6 GiB per GPU."""
    return ProcessUsage(
        pid=pid, used_mib=used, limit_mib=6144, user="alice", gpu_uuid=gpu, slice_key=pod
    )


def test_a_slice_is_judged_by_all_its_processes_together(clock: FakeClock, kill: FakeKill) -> None:
    """Two kernels of one pod, each under the pod's 6 GiB slice, together over it."""
    events: list[PolicyEvent] = []
    policy = make("report", clock, kill, events=events)
    policy.observe([sliced(11, 4000), sliced(12, 3000)])
    assert [(e.action, e.pid, e.used_mib, e.process_used_mib, e.pids) for e in events] == [
        ("report", 11, 7000, 4000, (11, 12))
    ]
    assert policy.over_limit_pids == {11, 12}
    assert "used_mib=7000 limit_mib=6144 process_used_mib=4000 pids=11,12" in events[0].log_line()


def test_terminate_stops_the_largest_processes_until_the_rest_fits(
    clock: FakeClock, kill: FakeKill
) -> None:
    events: list[PolicyEvent] = []
    policy = make("terminate", clock, kill, events=events)
    tick = [sliced(11, 1000), sliced(12, 4000), sliced(13, 2500)]  # 7500 MiB of 6144
    policy.observe(tick)
    clock.now = 30
    policy.observe(tick)
    assert kill.sent == [(12, signal.SIGTERM)]  # 3500 MiB left: 11 and 13 keep running
    clock.now = 40
    policy.observe(tick)  # 12 still holds its memory
    assert kill.sent == [(12, signal.SIGTERM), (12, signal.SIGKILL)]
    clock.now = 45
    assert policy.observe(tick[::2]) == []  # 12 is gone and the rest fits: episode over
    assert policy.over_limit_slices == 0
    assert [(e.action, e.pid) for e in events] == [
        ("report", 12),
        ("sigterm", 12),
        ("sigkill", 12),
    ]


def test_two_pods_on_one_gpu_are_judged_apart(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("terminate", clock, kill, events=events)
    for now in (0, 30, 60):
        clock.now = now
        policy.observe([sliced(11, 4000, pod="pod-a"), sliced(21, 4000, pod="pod-b")])
    assert events == [] and kill.sent == []


def test_a_slice_on_two_gpus_is_judged_on_each(clock: FakeClock, kill: FakeKill) -> None:
    events: list[PolicyEvent] = []
    policy = make("report", clock, kill, events=events)
    policy.observe(
        [
            sliced(11, 4000, gpu="GPU-0"),
            sliced(12, 4000, gpu="GPU-1"),
            sliced(13, 3000, gpu="GPU-1"),
        ]
    )
    assert [(e.gpu_uuid, e.used_mib) for e in events] == [("GPU-1", 7000)]
