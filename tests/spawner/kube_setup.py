"""Builders for spawner tests against the real control plane (``kube`` fixture)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from traitlets.config import Config

from gpu_fraction import keys
from spawner.kube import FractionalGPUKubeSpawner

RTX_LABELS = {
    keys.LABEL_SHARING: "true",
    keys.GFD_PRODUCT: "NVIDIA-GeForce-RTX-3090",
    keys.GFD_MEMORY: "24576",
}
PROFILES = [
    {
        "display_name": "CPU only",
        "slug": "cpu",
        "kubespawner_override": {"image": "quay.io/jupyter/scipy-notebook:latest"},
        "ai_console": {"gpu": None},
    },
    {
        "display_name": "PyTorch, 1/4 RTX 3090",
        "slug": "quarter",
        "default": True,
        "kubespawner_override": {"image": "quay.io/jupyter/pytorch-notebook:latest"},
        "ai_console": {"gpu": {"fraction": "1/4", "type": "RTX3090"}},
    },
    {
        "display_name": "PyTorch, 2 x RTX 3090",
        "slug": "two",
        "kubespawner_override": {"image": "quay.io/jupyter/pytorch-notebook:latest"},
        "ai_console": {"gpu": {"fraction": "2", "type": "RTX3090"}},
    },
]


def add_gpu_node(kube: Any, name: str, gpus: int = 1, **kwargs: Any) -> list[str]:
    """A node with RTX 3090s under the allocator, as GFD and our agent label it."""
    uuids = [f"GPU-{name}-{i:04d}-3f2a-0000-000000000000" for i in range(gpus)]
    published = [
        {"index": i, "uuid": u, "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576}
        for i, u in enumerate(uuids)
    ]
    kube.add_node(
        name,
        labels={**RTX_LABELS, keys.GFD_COUNT: str(gpus), **kwargs.pop("labels", {})},
        annotations={keys.ANN_NODE_GPUS: json.dumps(published)},
        allocatable=kwargs.pop("allocatable", {"cpu": "32", "memory": "128Gi", "pods": "110"}),
        **kwargs,
    )
    return uuids


def spawner_config(namespace: str, **settings: Any) -> Config:
    c = Config()
    c.KubeSpawner.namespace = namespace
    c.GPUSliceManager.namespace = namespace
    c.KubeSpawner.profile_list = PROFILES
    c.KubeSpawner.start_timeout = 30
    c.KubeSpawner.k8s_api_request_retry_timeout = 20
    c.GPUSliceManager.reconcile_interval = 0
    # The test process's hub identity, outside the checkout (the hub keeps it in its data dir).
    c.GPUSliceManager.lease_identity_file = "/tmp/ai-console-test-allocator-id"
    for key, value in settings.items():
        section, name = key.split("__")
        setattr(getattr(c, section), name, value)
    return c


def make_spawner(config: Config, user: str, profile: str | None = None, cls=None) -> Any:
    hub_user = SimpleNamespace(name=user, id=hash(user) % 100000, url=f"/user/{user}/", groups=[])
    spawner = (cls or FractionalGPUKubeSpawner)(config=config, user=hub_user, _mock=True)
    spawner.user_options = {"profile": profile} if profile else {}
    spawner.api_token = "test-token"
    return spawner


def live_slice_pods(kube: Any, include_terminating: bool = True) -> dict[str, str]:
    """What the cluster says: pod name -> allocation id, for pods holding a slice."""
    return {
        p["metadata"]["name"]: p["metadata"]["annotations"][keys.ANN_ALLOCATION]
        for p in kube.list("pods")
        if keys.ANN_ALLOCATION in (p["metadata"].get("annotations") or {})
        and (include_terminating or not p["metadata"].get("deletionTimestamp"))
    }
