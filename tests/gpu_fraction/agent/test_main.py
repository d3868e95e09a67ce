"""``ai-console agent``: the command line, the tick loop and its stopping."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pynvml
import pytest

from gpu_fraction.agent import main as agent_main
from gpu_fraction.agent.main import Agent, build_parser, main
from gpu_fraction.agent.metrics import AgentMetrics
from gpu_fraction.agent.policy import OverLimitPolicy
from gpu_fraction.agent.procmap import ProcessMapper
from gpu_fraction.agent.sampler import Sampler

from .conftest import UUID0, UUID1, FakeNvml, FakeProc, two_gpus


def test_no_gpu_exits_zero_with_one_clear_line(
    no_nvml: FakeNvml, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert main(["--once"]) == 0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "no NVIDIA GPU found (NVML: NVML Shared Library Not Found); the agent has nothing to watch"
    ]


def test_no_gpu_exits_zero_without_once_too(no_nvml: FakeNvml) -> None:
    # Without --once it would otherwise serve forever; exit mode returns before serving.
    assert main(["--port", "0", "--listen", "127.0.0.1"]) == 0


def test_no_gpu_idle_serves_zero_gpus(
    no_nvml: FakeNvml, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--once", "--no-gpu", "idle", "--node-name", "cpu-1"]) == 0
    out = capsys.readouterr().out
    assert 'ai_console_agent_nvml_up{node="cpu-1"} 0.0' in out
    assert 'ai_console_agent_gpus{node="cpu-1"} 0.0' in out


def test_once_publishes_the_gpu_file(
    fake_nvml: FakeNvml,
    fake_proc: FakeProc,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "gpus.json"
    argv = ["--once", "--publish", "file", "--publish-file", str(path)]
    argv += ["--proc-root", str(fake_proc.root), "--node-name", "box"]
    assert main(argv) == 0
    assert json.loads(path.read_text()) == [
        {"index": 0, "uuid": UUID0, "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
        {"index": 1, "uuid": UUID1, "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
    ]
    out = capsys.readouterr().out
    labels = f'gpu="0",node="box",product="NVIDIA GeForce RTX 3090",uuid="{UUID0}"'
    assert f"ai_console_gpu_memory_used_mib{{{labels}}} 9000.0" in out
    assert fake_nvml.shutdown_calls == fake_nvml.init_calls == 1


def test_publish_file_needs_a_path(fake_nvml: FakeNvml) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--once", "--publish", "file"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [["--interval", "0"], ["--interval", "nan"], ["--grace-seconds", "-1"], ["--policy", "kill"]],
)
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_help_documents_every_option_with_its_default() -> None:
    parser = build_parser()
    assert parser.prog == "ai-console agent"
    text = parser.format_help()
    for option in (
        "--listen",
        "--port",
        "--interval",
        "--policy",
        "--grace-seconds",
        "--kill-after-seconds",
        "--tolerance-mib",
        "--proc-root",
        "--node-name",
        "--publish",
        "--publish-file",
        "--no-gpu",
        "--once",
    ):
        assert option in text
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
    args = parser.parse_args([])
    assert (args.listen, args.port, args.interval) == ("0.0.0.0", 9410, 5.0)
    assert (args.policy, args.grace_seconds, args.kill_after_seconds) == ("report", 30.0, 10.0)
    assert (args.proc_root, args.publish, args.no_gpu) == ("/proc", "none", "exit")
    assert args.once is False
    assert "(default: 9410)" in text and "dcgm" in text


def test_listen_binds_the_metrics_server_to_that_address(
    fake_nvml: FakeNvml, fake_proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[tuple[str, int]] = []
    answers: list[int] = []

    class RecordingServer(agent_main.MetricsServer):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            bound.append(self._server.server_address[:2])

    def one_tick(self: Agent, interval: float, stop: threading.Event) -> None:
        self.tick()
        url = f"http://127.0.0.1:{bound[0][1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            answers.append(response.status)

    monkeypatch.setattr(agent_main, "MetricsServer", RecordingServer)
    monkeypatch.setattr(Agent, "run", one_tick)
    argv = ["--port", "0", "--listen", "127.0.0.1", "--proc-root", str(fake_proc.root)]
    assert main(argv) == 0
    assert bound[0][0] == "127.0.0.1" and answers == [200]


def test_node_name_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "gpu-42")
    assert build_parser().parse_args([]).node_name == "gpu-42"


def test_sigterm_stops_the_loop(fake_nvml: FakeNvml, fake_proc: FakeProc) -> None:
    threads_before = set(threading.enumerate())
    default = signal.getsignal(signal.SIGTERM)

    def send_sigterm_once_handled() -> None:
        deadline = time.monotonic() + 10
        while signal.getsignal(signal.SIGTERM) is default and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # let a few ticks run
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_sigterm_once_handled)
    sender.start()
    argv = ["--port", "0", "--listen", "127.0.0.1", "--interval", "0.05"]
    assert main([*argv, "--proc-root", str(fake_proc.root)]) == 0
    sender.join(timeout=5)
    assert signal.getsignal(signal.SIGTERM) is default  # handlers restored
    assert fake_nvml.shutdown_calls == 1
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert leftover == []


class RecordingPublisher:
    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.ok = True

    def publish(self, gpus: Any) -> bool:
        self.calls.append(list(gpus))
        return self.ok

    def describe(self) -> str:
        return "recording"


def make_agent(fake_proc: FakeProc, publisher: RecordingPublisher, clock: list[float]) -> Agent:
    return Agent(
        node_name="n",
        sampler=Sampler(),
        mapper=ProcessMapper(fake_proc.root),
        policy=OverLimitPolicy("report"),
        metrics=AgentMetrics("n"),
        publisher=publisher,
        clock=lambda: clock[0],
    )


def test_publishes_when_the_list_changes_and_retries_failures(
    fake_nvml: FakeNvml, fake_proc: FakeProc
) -> None:
    publisher = RecordingPublisher()
    clock = [0.0]
    agent = make_agent(fake_proc, publisher, clock)
    assert agent.start() is None
    try:
        assert agent.tick().published is True
        clock[0] = 5
        assert agent.tick().published is None  # unchanged: not sent again
        assert len(publisher.calls) == 1

        fake_nvml.gpus.pop()  # a GPU fell off the bus
        publisher.ok = False
        clock[0] = 10
        assert agent.tick().published is None  # a change must be seen on two ticks
        clock[0] = 15
        assert agent.tick().published is False
        clock[0] = 20
        assert agent.tick().published is None  # a failed publish waits before retrying
        publisher.ok = True
        clock[0] = 76
        assert agent.tick().published is True
        assert [len(c) for c in publisher.calls] == [2, 1, 1]

        fake_nvml.count_error = 999  # NVML cannot count: nothing is published
        clock[0] = 2000
        assert agent.tick().published is None
    finally:
        agent.close()


def test_one_failed_query_does_not_withdraw_a_gpu(fake_nvml: FakeNvml, fake_proc: FakeProc) -> None:
    publisher = RecordingPublisher()
    clock = [0.0]
    agent = make_agent(fake_proc, publisher, clock)
    assert agent.start() is None
    try:
        assert agent.tick().published is True
        fake_nvml.gpus[1].errors["nvmlDeviceGetMemoryInfo"] = pynvml.NVML_ERROR_UNKNOWN
        clock[0] = 5
        assert agent.tick().published is None  # GPU 1 is missing from this tick's list only
        del fake_nvml.gpus[1].errors["nvmlDeviceGetMemoryInfo"]
        clock[0] = 10
        assert agent.tick().published is None
        assert [len(c) for c in publisher.calls] == [2]
        clock[0] = 10 + 600  # an unchanged list is refreshed now and then
        assert agent.tick().published is True
    finally:
        agent.close()


def test_idle_agent_notices_a_driver_that_appears(no_nvml: FakeNvml, fake_proc: FakeProc) -> None:
    agent = make_agent(fake_proc, RecordingPublisher(), [0.0])
    assert agent.start() == "NVML Shared Library Not Found"
    result = agent.tick()
    assert not result.sample.ok
    assert b'ai_console_agent_nvml_up{node="n"} 0.0' in agent.metrics.render()

    no_nvml.init_error = None
    no_nvml.gpus = two_gpus()
    result = agent.tick()
    assert result.sample.ok and len(result.sample.gpus) == 2
    assert b'ai_console_agent_nvml_up{node="n"} 1.0' in agent.metrics.render()
    agent.close()


def test_a_failing_tick_does_not_end_the_loop(fake_nvml: FakeNvml, fake_proc: FakeProc) -> None:
    agent = make_agent(fake_proc, RecordingPublisher(), [0.0])
    agent.start()
    calls = []
    stop = threading.Event()

    def flaky_tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("driver said something odd")
        stop.set()

    agent.tick = flaky_tick  # type: ignore[method-assign]
    agent.run(0.01, stop)
    assert len(calls) == 2
    agent.close()
