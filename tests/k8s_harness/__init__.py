"""A strict Kubernetes API server stand-in for tests.

The real clients (``kubernetes`` and ``kubernetes_asyncio``, hence KubeSpawner) talk to it over
plain HTTP on 127.0.0.1 with a bearer token. It serves core/v1 namespaces, nodes, pods (with
``status`` and ``log``), services, persistentvolumeclaims, secrets, configmaps and events, and
batch/v1 jobs (with ``status``); every write is defaulted like the real server does and
validated against the official OpenAPI schema of :data:`K8S_VERSION` (``kubernetes-validate``,
strict: unknown fields are refused) plus the semantic checks clients most often trip over.

Behind it run a scheduler, simulated kubelets (pods simulated or run as local processes on
their own 127.0.0.x address), a Job controller, garbage collection, namespace termination and
PVC binding. Faults can be injected per verb/resource with a seeded RNG.

Quick start::

    with KubeHarness(nodes=["node-1"]) as k8s:
        k8s.write_kubeconfig(tmp_path / "kubeconfig")
        ...

or use the ``k8s_harness`` pytest fixture from :mod:`tests.k8s_harness.fixtures`.
"""

from .behavior import BehaviorPolicy, PodBehavior, ProcessSpec
from .common import K8S_VERSION
from .errors import ApiError
from .faults import FaultInjector, FaultRule
from .harness import KubeHarness, node_manifest

__all__ = [
    "K8S_VERSION",
    "ApiError",
    "BehaviorPolicy",
    "FaultInjector",
    "FaultRule",
    "KubeHarness",
    "PodBehavior",
    "ProcessSpec",
    "node_manifest",
]
