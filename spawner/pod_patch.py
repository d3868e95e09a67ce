"""Write a GPU slice into a pod manifest: a pure function, no I/O (after kubespawner's objects.py).

The spawner calls :func:`apply_slice` last, on the pod KubeSpawner built, so profile overrides
applied earlier cannot undo the slice: the pod is pinned to the slice's node, sees only its
GPU(s), carries the enforcement environment and volumes, and is annotated with the allocation
(the ledger). GPUs the allocator manages are never also requested as ``nvidia.com/*`` from the
device plugin. A pod without a slice that asks the device plugin for GPUs (whole GPUs or MIG, as
in z2jh) keeps its request and is kept off the nodes the allocator manages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import (
    V1Affinity,
    V1EnvVar,
    V1NodeAffinity,
    V1NodeSelector,
    V1NodeSelectorRequirement,
    V1NodeSelectorTerm,
    V1Pod,
    V1Toleration,
    V1Volume,
    V1VolumeMount,
)
from kubespawner.utils import get_k8s_model

from gpu_fraction.annotations import to_annotations
from gpu_fraction.enforcement import (
    ENV_PYTHONPATH,
    NO_GPU_ENVIRONMENT,
    STARTUP_MOUNT_PATH,
    MpsSettings,
    container_environment,
    has_caps,
    kubernetes_volumes,
    merge_pythonpath,
)
from gpu_fraction.model import Allocation

from .manager import SLICE_LABEL

GPU_RESOURCE_PREFIX = "nvidia.com/"
HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True)
class SliceSettings:
    """Cluster-wide choices for how slices are written into pods."""

    runtime_class_name: str | None = "nvidia"
    startup_configmap: str | None = None
    mps: MpsSettings | None = None
    #: Added to slice pods (GPU node pools are often tainted nvidia.com/gpu:NoSchedule, and the
    #: ExtendedResourceToleration plugin only tolerates pods that request nvidia.com/gpu).
    tolerations: tuple[dict[str, Any], ...] = ()
    #: A node selector requirement matching the nodes the allocator does not manage.
    unmanaged_nodes: dict[str, Any] | None = field(default=None, hash=False)
    #: Keep pods without a slice (CPU-only profiles) on those nodes too.
    cpu_only_off_gpu_nodes: bool = False


def apply_slice(pod: V1Pod, allocation: Allocation | None, settings: SliceSettings) -> V1Pod:
    """Return ``pod`` with ``allocation`` written into it (``None``: a CPU-only pod).

    A CPU-only pod gets ``NVIDIA_VISIBLE_DEVICES=void`` so that a CUDA image, whose default is
    "all", cannot reach a GPU on a node with the NVIDIA runtime. One the allocator placed on a
    managed node (:meth:`Allocation.cpu_only`) is also pinned there and carries its allocation
    as annotations, so a hub restart counts its CPU and memory on that node again.
    """
    container = pod.spec.containers[0]
    if allocation is not None and allocation.is_cpu_only:
        _drop_gpu_resources(container)
        _set_env(container, NO_GPU_ENVIRONMENT)
        _write_ledger(pod, allocation, settings)
        return pod
    if allocation is None:
        if _gpu_resources(container):
            # The device plugin hands out these GPUs and sets the devices; not where we do.
            if settings.unmanaged_nodes:
                _require(pod, get_k8s_model(V1NodeSelectorRequirement, settings.unmanaged_nodes))
            return pod
        _set_env(container, NO_GPU_ENVIRONMENT)
        if settings.cpu_only_off_gpu_nodes and settings.unmanaged_nodes:
            _require(pod, get_k8s_model(V1NodeSelectorRequirement, settings.unmanaged_nodes))
        return pod
    _drop_gpu_resources(container)
    env = container_environment(
        allocation,
        mps=settings.mps,
        startup_path=_startup_path(allocation, settings),
        in_container=True,
    )
    if ENV_PYTHONPATH in env:
        # The hook goes in front of the profile's own PYTHONPATH, not instead of it.
        own = next((e.value for e in container.env or [] if e.name == ENV_PYTHONPATH), None)
        env[ENV_PYTHONPATH] = merge_pythonpath(env[ENV_PYTHONPATH], own)
    _set_env(container, env)
    volumes, mounts = kubernetes_volumes(
        allocation, mps=settings.mps, startup_configmap=settings.startup_configmap
    )
    pod.spec.volumes = list(pod.spec.volumes or []) + [get_k8s_model(V1Volume, v) for v in volumes]
    container.volume_mounts = list(container.volume_mounts or []) + [
        get_k8s_model(V1VolumeMount, m) for m in mounts
    ]
    _write_ledger(pod, allocation, settings)
    if settings.runtime_class_name and not allocation.simulated:
        pod.spec.runtime_class_name = settings.runtime_class_name
    return pod


def _write_ledger(pod: V1Pod, allocation: Allocation, settings: SliceSettings) -> None:
    """The allocation as annotations (the ledger lists the labelled pods), on its node."""
    pod.metadata.annotations = {**(pod.metadata.annotations or {}), **to_annotations(allocation)}
    pod.metadata.labels = {**(pod.metadata.labels or {}), SLICE_LABEL: "true"}
    _require(
        pod, V1NodeSelectorRequirement(key=HOSTNAME_LABEL, operator="In", values=[allocation.node])
    )
    _tolerate(pod, settings.tolerations)


def _startup_path(allocation: Allocation, settings: SliceSettings) -> str | None:
    return STARTUP_MOUNT_PATH if settings.startup_configmap and has_caps(allocation) else None


def _gpu_resources(container) -> list[str]:
    """The ``nvidia.com/*`` resources the container asks the device plugin for."""
    resources = container.resources
    names = [
        key
        for part in (getattr(resources, "limits", None), getattr(resources, "requests", None))
        for key in (part or {})
        if key.startswith(GPU_RESOURCE_PREFIX)
    ]
    return sorted(set(names))


def _drop_gpu_resources(container) -> None:
    """The allocator, not the device plugin, hands out these GPUs."""
    resources = container.resources
    if resources is None:
        return
    for name in ("limits", "requests"):
        values = getattr(resources, name)
        if values and any(k.startswith(GPU_RESOURCE_PREFIX) for k in values):
            values = {k: v for k, v in values.items() if not k.startswith(GPU_RESOURCE_PREFIX)}
            setattr(resources, name, values or None)


def _tolerate(pod: V1Pod, tolerations: tuple[dict[str, Any], ...]) -> None:
    """Add ``tolerations`` the pod does not have yet (profiles may bring their own)."""
    existing = list(pod.spec.tolerations or [])
    for toleration in tolerations:
        model = get_k8s_model(V1Toleration, toleration)
        if model not in [get_k8s_model(V1Toleration, t) for t in existing]:
            existing.append(model)
    pod.spec.tolerations = existing or None


def _set_env(container, values: dict[str, str]) -> None:
    """Set variables, replacing any of the same name (the slice wins over profile overrides)."""
    kept = [e for e in (container.env or []) if e.name not in values]
    container.env = kept + [V1EnvVar(name=k, value=v) for k, v in values.items()]


def _require(pod: V1Pod, requirement: V1NodeSelectorRequirement) -> None:
    """Add a node requirement, ANDed into every existing required term.

    Required node-selector terms are ORed by Kubernetes, so appending a term would let the pod
    land elsewhere; the requirement goes into each term instead.
    """
    spec = pod.spec
    if spec.affinity is None:
        spec.affinity = V1Affinity()
    if spec.affinity.node_affinity is None:
        spec.affinity.node_affinity = V1NodeAffinity()
    node_affinity = spec.affinity.node_affinity
    required = node_affinity.required_during_scheduling_ignored_during_execution
    if required is None or not required.node_selector_terms:
        node_affinity.required_during_scheduling_ignored_during_execution = V1NodeSelector(
            node_selector_terms=[V1NodeSelectorTerm(match_expressions=[requirement])]
        )
        return
    # Profile overrides may hold terms as plain dicts (KubeSpawner passes them through).
    terms = [get_k8s_model(V1NodeSelectorTerm, t) for t in required.node_selector_terms]
    for term in terms:
        expressions = [
            get_k8s_model(V1NodeSelectorRequirement, e) for e in term.match_expressions or []
        ]
        term.match_expressions = [*expressions, requirement]
    required.node_selector_terms = terms
