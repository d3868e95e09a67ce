"""Fixtures for the harness's own tests, plus a leak check after every test."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.k8s_harness import KubeHarness
from tests.k8s_harness.fixtures import k8s_harness, k8s_harness_factory  # noqa: F401

_OWN_THREADS = ("k8s-harness-", "waitpid-")


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """No harness thread and no child process may outlive a test."""
    yield
    deadline = time.monotonic() + 5
    while True:
        threads = [t.name for t in threading.enumerate() if t.name.startswith(_OWN_THREADS)]
        children = _children()
        if not threads and not children:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"leaked threads {threads} / child processes {children}")
        time.sleep(0.05)


@pytest.fixture
def core(k8s_harness: KubeHarness) -> client.CoreV1Api:  # noqa: F811
    """A sync CoreV1Api talking to the harness."""
    return client.CoreV1Api(k8s_harness.sync_api_client())


@pytest.fixture
def batch(k8s_harness: KubeHarness) -> client.BatchV1Api:  # noqa: F811
    """A sync BatchV1Api talking to the harness."""
    return client.BatchV1Api(k8s_harness.sync_api_client())
