"""The notebook job runner, run for real: a subprocess with a python3 kernel per job."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def make_job(job_dir: Path, cells: list[nbformat.NotebookNode], **spec: Any) -> Path:
    """A job directory holding input.ipynb and spec.json."""
    job_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = cells
    nbformat.write(nb, job_dir / "input.ipynb")
    spec = {"input": "input.ipynb", "parameters": {}, "output_formats": ["ipynb"], **spec}
    (job_dir / "spec.json").write_text(json.dumps(spec))
    return job_dir


def command(job_dir: Path) -> list[str]:
    return [sys.executable, "-m", "server_extension.runner", str(job_dir)]


def run(job_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(job_dir), cwd=ROOT, capture_output=True, text=True, timeout=90)


def start(job_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command(job_dir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def log(job_dir: Path) -> str:
    return (job_dir / "job.log").read_text()


def output(job_dir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(job_dir / "output.ipynb", as_version=4)
    nbformat.validate(nb)
    return nb


def texts(cell: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []))


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def log_has(job_dir: Path, text: str) -> Callable[[], bool]:
    return lambda: (job_dir / "job.log").exists() and text in log(job_dir)


def test_parameters_are_injected_and_attempts_counted(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        [
            code("epochs = 10\nname = 'base'", "parameters"),
            code("print('double', epochs * 2, name)"),
            code("{'answer': 42}"),
        ],
        parameters={"epochs": 21},
    )
    done = run(job)
    assert done.returncode == 0, done.stdout + done.stderr

    nb = output(job)
    assert [c.metadata.get("tags") for c in nb.cells] == [
        ["parameters"],
        ["injected-parameters"],
        None,
        None,
    ]
    assert "epochs = 21" in nb.cells[1].source
    assert texts(nb.cells[2]) == "double 42 base\n"
    assert nb.cells[3].outputs[0].data["text/plain"] == "{'answer': 42}"

    first = status(job)
    assert first["state"] == "completed"
    assert (first["cell"], first["cells"], first["attempt"]) == (4, 4, 1), "injected cell counts"
    assert first["failed_cell"] is None and first["error"] is None
    assert first["started"] <= first["ended"]
    assert not (job / "output.html").exists(), "html only when asked"

    text = log(job)
    assert "kernel python3" in text
    assert "--- cell 4/4 ---" in text
    assert "double 42 base" in text
    assert "{'answer': 42}" in text
    assert text.rstrip().splitlines()[-1].startswith("=== job completed")
    assert text in done.stdout, "the log is also on stdout, for kubectl logs"

    assert run(job).returncode == 0
    assert status(job)["attempt"] == 2
    assert log(job).count("=== job started") == 2, "a retry appends to the log"


def test_failing_cell_is_reported_and_marked(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        [
            nbformat.v4.new_markdown_cell("# Training"),
            code("print('cell one')"),
            code("x = 1\nprint('cell two')"),
            code("print('about to fail')\nraise ValueError('bad \\x1b[31mlabel\\x1b[0m')"),
            code("print('never')"),
        ],
        output_formats=["ipynb", "html"],
    )
    done = run(job)
    assert done.returncode == 1, done.stdout + done.stderr

    state = status(job)
    assert state["state"] == "failed"
    assert state["failed_cell"] == 3, "index of the raising cell in the notebook's cells"
    assert state["failed_cell_number"] == 3, "the third code cell, as the message says"
    assert state["error"]["ename"] == "ValueError"
    assert (state["cell"], state["cells"]) == (2, 4)

    nb = output(job)
    assert nb.cells[0].cell_type == "markdown"
    assert "An exception was raised in cell 3: ValueError: bad" in nb.cells[0].source
    failed = nb.cells[state["failed_cell"] + 1]  # +1: the message cell on top
    assert "ai-console-error" in failed.metadata.tags
    assert "about to fail" in texts(failed)
    assert failed.outputs[-1].output_type == "error"
    assert texts(nb.cells[2]) == "cell one\n"
    assert texts(nb.cells[3]) == "cell two\n"
    assert nb.cells[5].outputs == []

    text = log(job)
    assert "Traceback" in text and "ValueError: bad" in text
    assert "\x1b[" not in text, "ANSI colour codes are stripped from tracebacks"
    assert "never" not in text

    html = (job / "output.html").read_text()
    assert "cell two" in html and "An exception was raised in cell 3" in html


def test_timeout_stops_the_kernel(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        [code("print('started')"), code("import time\ntime.sleep(60)")],
        timeout_seconds=2,
    )
    began = time.monotonic()
    done = run(job)
    assert done.returncode == 3, done.stdout + done.stderr
    assert time.monotonic() - began < 15
    state = status(job)
    assert state["state"] == "timeout"
    assert state["failed_cell"] == 1 and state["failed_cell_number"] == 2
    assert state["error"]["ename"] == "TimeoutError"
    nb = output(job)
    assert "timed out" in nb.cells[0].source
    assert "ai-console-error" in nb.cells[2].metadata.tags
    assert texts(nb.cells[1]) == "started\n"


def test_sigterm_cancels_and_keeps_partial_output(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        [code("print('first cell')"), code("import time\nprint('sleeping')\ntime.sleep(60)")],
    )
    process = start(job)
    try:
        wait_for(log_has(job, "sleeping"), seconds=30)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 143
    state = status(job)
    assert state["state"] == "cancelled"
    assert state["cell"] == 1
    assert state["ended"] is not None
    nb = output(job)
    assert texts(nb.cells[0]) == "first cell\n"
    assert texts(nb.cells[1]) == "sleeping\n"
    assert "cancelled" in log(job).splitlines()[-1]


def test_log_is_live_during_a_long_cell(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        [code("import time\nprint('epoch 1', flush=True)\ntime.sleep(2)\nprint('epoch 2')")],
    )
    process = start(job)
    try:
        wait_for(log_has(job, "epoch 1"), seconds=30)
        assert "epoch 2" not in log(job), "the first line arrived while the cell still ran"
        assert status(job)["state"] == "running"
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert "epoch 2" in log(job)
    assert status(job)["pid"] == process.pid


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda job: (job / "spec.json").write_text("{not json"), "not valid JSON"),
        (lambda job: (job / "input.ipynb").unlink(), "does not exist"),
        (
            lambda job: (job / "spec.json").write_text(
                json.dumps({"input": "input.ipynb", "parameters": {"epochs": "ten"}})
            ),
            'parameter "epochs": expected int, got str "ten"',
        ),
        (
            lambda job: (job / "spec.json").write_text(
                json.dumps({"input": "input.ipynb", "kernel_name": "no-such-kernel"})
            ),
            "no kernel named 'no-such-kernel'",
        ),
    ],
    ids=["bad-json", "missing-notebook", "bad-parameter", "unknown-kernel"],
)
def test_unusable_job_exits_2_with_a_clear_message(
    tmp_path: Path, setup: Callable[[Path], Any], message: str
) -> None:
    job = make_job(tmp_path, [code("epochs = 10", "parameters"), code("print(epochs)")])
    setup(job)
    done = run(job)
    assert done.returncode == 2, done.stdout + done.stderr
    state = status(job)
    assert state["state"] == "failed"
    assert message in state["error"]["evalue"]
    assert message in log(job)
    assert message in done.stdout


def test_runner_needs_a_job_directory(tmp_path: Path) -> None:
    done = run(tmp_path / "missing")
    assert done.returncode == 2
    assert "usage" in done.stdout
    assert os.listdir(tmp_path) == []
