"""Pytest fixtures: ``k8s_harness`` (started, with a kubeconfig and ``KUBECONFIG`` set) and
``k8s_harness_factory`` (for custom settings).

``KUBECONFIG`` is set with monkeypatch, and so is the module-level default both client libraries
computed from it at import time (``kube_config.KUBE_CONFIG_DEFAULT_LOCATION``). Both fixtures
reset the process-wide client configuration KubeSpawner caches
(``kubespawner.clients.load_config`` is an lru_cache, ``shared_client`` caches clients per
event loop, ``KubeSpawner.reflectors`` holds singleton reflectors) before and after the test,
and load the harness kubeconfig into ``kubernetes_asyncio``'s default configuration, so a fresh
``KubeSpawner`` or ``shared_client("CoreV1Api")`` talks to this test's harness.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import KubeHarness

DEFAULT_NODE = "harness-node-1"


def reset_client_caches(load: bool) -> None:
    """Forget cached Kubernetes client configuration (and load KUBECONFIG if ``load``)."""
    from kubernetes_asyncio.client import Configuration

    Configuration.set_default(None)
    try:
        from kubespawner import clients
    except ImportError:  # kubespawner is optional for users of the harness
        return
    clients.load_config.cache_clear()
    clients._client_cache.clear()
    with contextlib.suppress(ImportError):
        from kubespawner.spawner import KubeSpawner

        KubeSpawner.reflectors.clear()
    if load:
        clients.load_config()


@pytest.fixture
def k8s_harness_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., KubeHarness]]:
    """Start harnesses with custom ``KubeHarness`` arguments; the last one owns ``KUBECONFIG``."""
    started: list[KubeHarness] = []

    def make(**kwargs: Any) -> KubeHarness:
        kwargs.setdefault("root_dir", tmp_path / f"k8s-harness-{len(started)}")
        harness = KubeHarness(**kwargs).start()
        started.append(harness)
        kubeconfig = harness.write_kubeconfig(tmp_path / f"kubeconfig-{len(started)}")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # Both client libraries read KUBECONFIG once, at import time, into a module default.
        for module in ("kubernetes.config.kube_config", "kubernetes_asyncio.config.kube_config"):
            with contextlib.suppress(ImportError):
                monkeypatch.setattr(
                    importlib.import_module(module), "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
                )
        reset_client_caches(load=True)
        return harness

    try:
        yield make
    finally:
        for harness in reversed(started):
            harness.stop()
        reset_client_caches(load=False)


@pytest.fixture
def k8s_harness(k8s_harness_factory: Callable[..., KubeHarness]) -> KubeHarness:
    """A started harness with one schedulable node (``harness-node-1``)."""
    return k8s_harness_factory(nodes=[DEFAULT_NODE])
