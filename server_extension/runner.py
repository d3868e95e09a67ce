"""Run one notebook job: ``python -m server_extension.runner JOB_DIR``.

It runs in a Kubernetes Job pod or as a local subprocess. Everything it reads and writes is
in JOB_DIR, which lives in the user's storage, so the results outlive the pod:

- ``spec.json`` (read)::

      {"input": "input.ipynb", "parameters": {}, "output_formats": ["ipynb", "html"],
       "kernel_name": null, "timeout_seconds": null, "cwd": null}

- ``output.ipynb``: the executed notebook, rewritten after every code cell;
- ``job.log``: the outputs as they arrive, also copied to stdout for ``kubectl logs``;
- ``status.json``: state, progress, error and attempt number;
- ``output.html``: when "html" is in ``output_formats``.

Exit status: 0 completed, 1 a cell raised (or the kernel died), 2 the spec or the notebook
is unusable, 3 the job ran past ``timeout_seconds``, 143 cancelled by SIGTERM.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # nbformat imports jsonschema, which compiles rfc3987_syntax's grammars when imported:
    # seconds of start-up, for IRI format checks that notebooks never use. Only when run as a
    # program, so that a server importing this module keeps them.
    sys.modules.setdefault("rfc3987_syntax", None)

import asyncio
import contextlib
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import NoSuchKernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from server_extension.jobs.model import JOB_FILES, OUTPUT_FORMATS
from server_extension.output_sender import send_outputs
from server_extension.parameters import (
    ParameterError,
    check_parameters,
    declared_parameters,
    inject,
)

ERROR_TAG = "ai-console-error"
BANNER_TAG = "ai-console-error-banner"
EXIT_CODES = {"completed": 0, "failed": 1, "unusable": 2, "timeout": 3, "cancelled": 143}
#: The longest path of a Unix socket (sun_path less its terminating NUL).
MAX_SOCKET_PATH = 107
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class Unusable(Exception):
    """The spec or the notebook cannot be run (exit status 2)."""


@dataclass(frozen=True)
class Spec:
    """The job's ``spec.json``, checked; paths resolved against the job directory."""

    input: Path
    parameters: dict[str, Any]
    output_formats: tuple[str, ...]
    kernel_name: str | None
    timeout_seconds: float | None
    cwd: Path | None  # None: the input notebook's directory


def read_spec(job_dir: Path) -> Spec:
    """Parse and check ``JOB_DIR/spec.json``; raises Unusable with a message for the user."""
    path = job_dir / "spec.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Unusable(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise Unusable(f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise Unusable(f"spec.json is not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise Unusable("spec.json must hold a JSON object")

    source = raw.get("input")
    if not isinstance(source, str) or not source:
        raise Unusable('spec.json: "input" must be the notebook\'s path')
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise Unusable('spec.json: "parameters" must be an object')
    formats = raw.get("output_formats") or ["ipynb"]
    if not isinstance(formats, list) or not all(f in OUTPUT_FORMATS for f in formats):
        raise Unusable(f'spec.json: "output_formats" must be a list of {OUTPUT_FORMATS}')
    kernel_name = raw.get("kernel_name")
    if kernel_name is not None and (not isinstance(kernel_name, str) or not kernel_name):
        raise Unusable('spec.json: "kernel_name" must be a kernel name or null')
    timeout = raw.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise Unusable('spec.json: "timeout_seconds" must be a positive number or null')
    cwd = raw.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not (job_dir / cwd).is_dir()):
        raise Unusable('spec.json: "cwd" must be an existing directory or null')
    return Spec(
        input=job_dir / source,
        parameters=parameters,
        output_formats=tuple(formats),
        kernel_name=kernel_name,
        timeout_seconds=timeout,
        cwd=None if cwd is None else job_dir / cwd,
    )


def read_notebook(spec: Spec) -> nbformat.NotebookNode:
    """The input notebook with the job's parameters injected; raises Unusable."""
    try:
        nb = nbformat.read(spec.input, as_version=4)
    except FileNotFoundError:
        raise Unusable(f"the notebook {spec.input} does not exist") from None
    except Exception as error:  # nbformat raises many kinds for a damaged file
        raise Unusable(f"cannot read the notebook {spec.input}: {error}") from None
    if not isinstance(nb.get("cells"), list):
        raise Unusable(f"the notebook {spec.input} has no cells list")
    # Cell ids (nbformat 4.5) let the cells added here validate in older notebooks.
    nb = nbformat.v4.upgrade(nb)
    try:
        values = check_parameters(declared_parameters(nb), spec.parameters)
    except ParameterError as error:
        raise Unusable(str(error)) from None
    return inject(nb, values)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _now_ms() -> int:
    return int(time.time() * 1000)


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so that readers never see a half-written file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _runs(cell: nbformat.NotebookNode, skip_tag: str) -> bool:
    """Whether nbclient executes the cell (it skips blank and ``skip-execution`` cells)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.cell_type == "code" and bool(cell.source.strip()) and skip_tag not in tags


def _socket_folder() -> tempfile.TemporaryDirectory | None:
    """A private folder for the kernel's sockets, with a path short enough for them (at most
    107 bytes); None where no writable one is (the kernel then listens on loopback ports)."""
    for base in (None, "/tmp", "/dev/shm"):  # None: $TMPDIR
        try:
            folder = tempfile.TemporaryDirectory(prefix="aic-kernel-", dir=base)
        except OSError:
            continue
        if len(os.fsencode(folder.name)) + len("/k-99") <= MAX_SOCKET_PATH:
            return folder
        folder.cleanup()
    return None


class _Client(NotebookClient):
    """A NotebookClient that reports every output the moment it arrives."""

    def __init__(
        self, nb: nbformat.NotebookNode, on_output: Callable[[Any], None], **kw: Any
    ) -> None:
        super().__init__(nb, **kw)
        self._on_output = on_output

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None:
            self._on_output(out)
        return out


class Job:
    """One run of the job in ``job_dir``: its log, its status and its output files."""

    def __init__(self, job_dir: Path) -> None:
        self.dir = job_dir
        self.log_file = open(job_dir / JOB_FILES["log"], "a", encoding="utf-8")  # noqa: SIM115
        self.at_line_start = True
        self.started = time.monotonic()
        self.sockets: tempfile.TemporaryDirectory | None = None  # the kernel's, once started
        self.status: dict[str, Any] = {
            "state": "running",
            "cell": 0,
            "cells": 0,
            "failed_cell": None,
            "failed_cell_number": None,
            "error": None,
            "attempt": self._previous_attempt() + 1,
            "started": _now_ms(),
            "ended": None,
            "pid": os.getpid(),
        }
        self.spec: Spec | None = None
        self.nb: nbformat.NotebookNode | None = None
        self.current_cell: int | None = None  # index of the cell being executed
        self.current_number = 0  # its 1-based number among the code cells, as in "In [3]"

    def _previous_attempt(self) -> int:
        # A pod retried by its Job finds the status its previous attempt left.
        try:
            attempt = json.loads((self.dir / "status.json").read_text())["attempt"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        return attempt if isinstance(attempt, int) and attempt >= 0 else 0

    # --- log -------------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Append to job.log and stdout, flushed at once so the log is live."""
        if not text:
            return
        self.log_file.write(text)
        self.log_file.flush()
        with contextlib.suppress(OSError, ValueError):  # nobody reads stdout any more
            sys.stdout.write(text)
            sys.stdout.flush()
        self.at_line_start = text.endswith("\n")

    def line(self, text: str) -> None:
        """Write ``text`` as a line of its own, after any unfinished output line."""
        if not self.at_line_start:
            self.write("\n")
        self.write(text if text.endswith("\n") else text + "\n")

    def log_output(self, out: nbformat.NotebookNode) -> None:
        """The readable text of one cell output."""
        kind = out.get("output_type")
        if kind == "stream":
            self.write(out.get("text", ""))
        elif kind == "error":
            traceback = "\n".join(out.get("traceback", []))
            self.line(_ANSI.sub("", traceback) or f"{out.get('ename')}: {out.get('evalue')}")
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            self.line(data.get("text/plain") or f"[{kind}: {', '.join(sorted(data))}]")

    # --- files -----------------------------------------------------------------------------

    def save_status(self, **changes: Any) -> None:
        self.status.update(changes)
        _atomic_write(self.dir / "status.json", json.dumps(self.status, indent=1) + "\n")

    def save_notebook(self) -> None:
        if self.nb is not None:
            _atomic_write(self.dir / JOB_FILES["ipynb"], nbformat.v4.writes(self.nb))

    def save_html(self) -> None:
        """output.html from the notebook as it is (partial after a failure)."""
        if self.nb is None:
            return
        from nbconvert import HTMLExporter  # slow to import: only for jobs that ask

        try:
            body, _ = HTMLExporter().from_notebook_node(self.nb)
            _atomic_write(self.dir / JOB_FILES["html"], body)
        except Exception as error:  # the run itself went as it went; say so and go on
            self.line(f"HTML export failed: {type(error).__name__}: {error}")

    def mark_error(self, message: str) -> None:
        """Tag the cell at fault and put ``message`` on top, as papermill does."""
        assert self.nb is not None and self.current_cell is not None
        tags = self.nb.cells[self.current_cell].metadata.setdefault("tags", [])
        if ERROR_TAG not in tags:
            tags.append(ERROR_TAG)
        banner = nbformat.v4.new_markdown_cell(f"**{message}**", metadata={"tags": [BANNER_TAG]})
        self.nb.cells.insert(0, banner)

    # --- run -------------------------------------------------------------------------------

    async def execute(self, client: _Client, spec: Spec) -> None:
        """Start the kernel and run the code cells one by one, saving after each."""
        assert self.nb is not None
        client.km = client.create_kernel_manager()
        # The kernel's sockets are files in a private folder, not loopback TCP ports: a port
        # found free by one runner can be taken by another before its kernel binds it (jobs
        # start side by side), and every local account can connect to a loopback port.
        if self.sockets is not None:
            client.km.transport = "ipc"
            client.km.ip = str(Path(self.sockets.name) / "k")
        cwd = spec.cwd or spec.input.parent
        try:
            await client.async_start_new_kernel(cwd=str(cwd))
        except NoSuchKernel as error:
            raise Unusable(f"no kernel named {error.name!r} is installed") from None
        await client.async_start_new_kernel_client()
        assert client.kc is not None
        # language_info lets the HTML export highlight the notebook's language.
        reply = await client.async_wait_for_reply(client.kc.kernel_info())
        if reply and "language_info" in reply["content"]:
            self.nb.metadata["language_info"] = reply["content"]["language_info"]

        indexes = [i for i, c in enumerate(self.nb.cells) if _runs(c, client.skip_cells_with_tag)]
        for number, index in enumerate(indexes, 1):
            self.current_cell, self.current_number = index, number
            self.line(f"--- cell {number}/{len(indexes)} ---")
            await client.async_execute_cell(self.nb.cells[index], index, execution_count=number)
            self.current_cell = None
            self.save_notebook()
            self.save_status(cell=number)
        client.set_widgets_metadata()

    async def run(self) -> int:
        """The whole job; returns the exit status."""
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        self.save_status()
        try:
            self.spec = spec = read_spec(self.dir)
            self.nb = read_notebook(spec)
        except Unusable as error:
            return self.finish("unusable", f"job failed: {error}", ("InvalidJob", str(error)))

        kernel_name = (
            spec.kernel_name or self.nb.metadata.get("kernelspec", {}).get("name") or "python3"
        )
        client = _Client(self.nb, self.log_output, kernel_name=kernel_name)
        cells = sum(_runs(c, client.skip_cells_with_tag) for c in self.nb.cells)
        self.line(
            f"=== job started (attempt {self.status['attempt']}): kernel {kernel_name}, "
            f"{cells} code cells, parameters {_shorten(json.dumps(spec.parameters))} ==="
        )
        self.save_notebook()
        self.save_status(cells=cells)

        self.sockets = _socket_folder()
        work = asyncio.ensure_future(self.execute(client, spec))
        stopped = asyncio.ensure_future(stop.wait())
        remaining = None
        if spec.timeout_seconds is not None:
            remaining = max(0.0, spec.timeout_seconds - (time.monotonic() - self.started))
        done, _ = await asyncio.wait(
            {work, stopped}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        stopped.cancel()
        if work not in done:
            # Killed now rather than asked: the kernel is busy and may never answer.
            client.shutdown_kernel = "immediate"
            await self._cancel(work)
        await self._shutdown(client)
        if self.sockets is not None:
            self.sockets.cleanup()

        number = self.current_number
        where = f"in cell {number}" if number else "before the first cell"
        if work not in done and stop.is_set():
            self.current_cell = None
            return self.finish("cancelled", f"job cancelled by SIGTERM {where}")
        if work not in done:
            limit = f"{spec.timeout_seconds:g} s"
            message = f"The job timed out after {limit} {where}"
            return self.finish("timeout", message, ("TimeoutError", f"ran longer than {limit}"))
        error = work.exception()
        if error is None:
            seconds = time.monotonic() - self.started
            return self.finish("completed", f"job completed in {seconds:.1f} s")
        if isinstance(error, Unusable):
            return self.finish("unusable", f"job failed: {error}", ("InvalidJob", str(error)))
        if isinstance(error, CellExecutionError):
            # Exception messages may carry colour codes (IPython's own do).
            ename, evalue = _ANSI.sub("", error.ename), _ANSI.sub("", error.evalue)
        elif isinstance(error, DeadKernelError):
            ename, evalue = "DeadKernelError", "the kernel died (out of memory?)"
        else:
            ename, evalue = type(error).__name__, str(error)
        if self.current_cell is None:
            return self.finish("failed", f"job failed: {ename}: {evalue}", (ename, evalue))
        message = f"An exception was raised in cell {number}: {ename}: {evalue}"
        return self.finish("failed", message, (ename, evalue))

    async def _cancel(self, work: asyncio.Future) -> None:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        # nbclient leaves its kernel-alive poller running when a cell is interrupted.
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    async def _shutdown(self, client: _Client) -> None:
        if client.km is None:
            return
        try:
            await client._async_cleanup_kernel()
        except Exception as error:  # the results matter more than a clean kernel exit
            self.line(f"kernel shutdown failed: {type(error).__name__}: {error}")

    def finish(self, state: str, message: str, error: tuple[str, str] | None = None) -> int:
        """Write the final output, log line and status; return the exit status."""
        failed_cell = self.current_cell if state in ("failed", "timeout") else None
        if failed_cell is not None:
            self.mark_error(message)
        self.save_notebook()
        formats = ["ipynb"]
        if self.spec is not None and "html" in self.spec.output_formats:
            self.save_html()
            formats.append("html")
        send_outputs(((f, self.dir / JOB_FILES[f]) for f in formats), self.line)
        self.line(f"=== {message} ===")
        self.save_status(
            state="failed" if state == "unusable" else state,
            failed_cell=failed_cell,
            failed_cell_number=None if failed_cell is None else self.current_number,
            error=None if error is None else {"ename": error[0], "evalue": error[1]},
            ended=_now_ms(),
        )
        self.log_file.close()
        return EXIT_CODES[state]


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m server_extension.runner JOB_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m server_extension.runner JOB_DIR (an existing directory)")
        return EXIT_CODES["unusable"]
    return asyncio.run(Job(Path(args[0])).run())


if __name__ == "__main__":
    sys.exit(main())
