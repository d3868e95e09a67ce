"""``FractionalGPUKubeSpawner``: KubeSpawner that starts each server on a guaranteed GPU slice."""

from __future__ import annotations

import copy
from typing import Any

from kubespawner import KubeSpawner
from traitlets import Bool, Dict, List, Unicode, default

from gpu_fraction.enforcement import GPU_TAINT_TOLERATION, RESTRICTED_CONTAINER
from gpu_fraction.errors import AllocationRefused
from gpu_fraction.model import Allocation, Owner

from .log_redaction import install as install_redaction
from .pod_patch import GPU_RESOURCE_PREFIX, SliceSettings, apply_slice
from .slices import GPUSliceMixin, SliceRefused


class FractionalGPUKubeSpawner(GPUSliceMixin, KubeSpawner):
    """Reserves a slice from the hub's allocator and writes it into the pod.

    The slice is applied in :meth:`get_pod_manifest`, after KubeSpawner has applied the
    profile's overrides, so no override can undo it. It is committed as soon as the pod exists,
    released on stop and on every failed start, and saved in the spawner's state.
    """

    gpu_runtime_class_name = Unicode(
        "nvidia",
        config=True,
        help="""runtimeClassName for pods that hold a GPU slice (the NVIDIA container runtime
        that honours NVIDIA_VISIBLE_DEVICES). Empty: leave the pod's runtime class alone.
        Example: c.FractionalGPUKubeSpawner.gpu_runtime_class_name = "nvidia" """,
    )
    gpu_tolerations = List(
        Dict(),
        default_value=[GPU_TAINT_TOLERATION],
        config=True,
        help="""Tolerations added to pods that hold a GPU slice. GPU node pools are often
        tainted nvidia.com/gpu:NoSchedule (GKE, EKS); a z2jh pod got the toleration from its
        nvidia.com/gpu request through the ExtendedResourceToleration admission plugin, but
        slice pods make no such request. Set [] where GPU nodes are not tainted.""",
    )
    events_show_placement = Bool(
        True,
        config=True,
        help="""Show the placement ("Reserved 1/4 of RTX3090 GPU-3f2a... on node gpu-07") as the
        first spawn progress message.""",
    )

    @default("container_security_context")
    def _restricted_container(self) -> dict[str, Any]:
        """The Kubernetes "restricted" Pod Security settings for every user container: not
        root, no privilege escalation, no capabilities, the runtime's seccomp profile."""
        return copy.deepcopy(RESTRICTED_CONTAINER)

    _chosen_profile: dict | None = None
    _starting: bool = False
    _options_loaded: bool = False
    #: A CPU-only server the GPU nodes had no room for: it goes to the other nodes.
    _cpu_only_elsewhere: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # KubeSpawner logs a refused pod whole, its hub token included.
        install_redaction(self.log)

    async def load_user_options(self) -> None:
        # _start loads the options early (to reserve before the pod work) and KubeSpawner's own
        # _start loads them again; once per start is enough.
        if self._starting and self._options_loaded:
            return
        await super().load_user_options()
        self._options_loaded = self._starting

    def _load_profile(self, slug: str | None, profile_list: list[dict]) -> None:
        super()._load_profile(slug, profile_list)
        self._chosen_profile = self._get_profile(slug, profile_list)

    def slice_settings(self, node: str) -> SliceSettings:
        manager = self.slice_manager
        return SliceSettings(
            runtime_class_name=self.gpu_runtime_class_name or None,
            startup_configmap=manager.startup_hook_configmap or None,
            mps=manager.mps_settings(node),
            tolerations=tuple(self.gpu_tolerations),
            unmanaged_nodes=manager.unmanaged_node_requirement() if not node else None,
            cpu_only_off_gpu_nodes=manager.cpu_only_pods == "off_gpu_nodes"
            or self._cpu_only_elsewhere,
        )

    def _device_plugin_gpus(self) -> bool:
        """Whether the profile asks the NVIDIA device plugin for GPUs (z2jh style): such a pod
        goes to the nodes the allocator does not manage."""
        asked = {**(self.extra_resource_guarantees or {}), **(self.extra_resource_limits or {})}
        return any(name.startswith(GPU_RESOURCE_PREFIX) for name in asked)

    async def reserve_cpu_only(self, project: str) -> Allocation | None:
        """With ``cpu_only_pods = "allocator"``: the GPU node where this CPU-only server
        strands the least GPU capacity. When none has the room, the server goes to a node
        whose GPUs the allocator does not manage, if the cluster has one; else it is refused."""
        manager = self.slice_manager
        self._cpu_only_elsewhere = False
        if manager.cpu_only_pods != "allocator" or self._device_plugin_gpus():
            return None
        cpu, memory = self._pod_guarantees()
        if not cpu and not memory:
            return None  # it takes nothing the scheduler counts: nothing to place
        await manager.ready()
        owner = Owner("notebook", self.user.name, project, self.name or "")
        try:
            return await manager.reserve_pod(cpu, memory, owner, nodes=self.slice_nodes())
        except AllocationRefused as err:
            if manager.has_unmanaged_nodes():
                self._cpu_only_elsewhere = True
                return None
            raise SliceRefused(f"No node has room for this server: {err.reason}") from None

    def slice_nodes(self) -> frozenset[str] | None:
        """The nodes this pod's node selector and required affinity admit, as the pod will
        be built: a nodeSelector in extra_pod_config replaces node_selector, as KubeSpawner
        applies it last."""
        extra = self.extra_pod_config or {}
        selector = extra.get("nodeSelector", extra.get("node_selector", self.node_selector))
        return self.slice_manager.admitted_nodes(selector, self.node_affinity_required)

    async def get_pod_manifest(self) -> Any:
        pod = await super().get_pod_manifest()
        allocation = self.allocation
        if allocation is None:
            allocation = await self.reserve_slice(self._chosen_profile)
        node = allocation.node if allocation else ""
        return apply_slice(pod, allocation, self.slice_settings(node))

    async def _start(self) -> Any:
        await self._clear_previous_pod()
        self._starting = True
        self._options_loaded = False
        self.release_slice("a new start")
        self.slice_message = ""
        try:
            # Reserve before KubeSpawner's own start work, so the spawn page shows the placement
            # (or the refusal) at once.
            try:
                await self.load_user_options()
            except ValueError as err:  # KubeSpawner's check of user_options (crafted profile)
                raise SliceRefused(str(err), 400) from None
            await self.reserve_slice(self._chosen_profile)
            return await super()._start()
        except BaseException:
            # Once the pod exists it holds the GPU until it is deleted: JupyterHub calls stop()
            # after a failed start, and stop() releases the slice when the pod is gone.
            if not self.slice_committed():
                self.release_slice("the start failed before the pod was created")
            raise
        finally:
            self._starting = False

    async def _clear_previous_pod(self) -> None:
        """A stop that failed leaves the previous pod, and the slice it runs on, in place:
        delete that pod and see it gone before its slice is given back, or refuse to start
        (giving the slice back first would let a new pod onto a GPU the old one still uses)."""
        if not self.slice_committed() and not self.has_saved_slice():
            return
        try:
            await super().stop(now=True)
        except Exception as err:
            raise SliceRefused(
                f"Your previous server is still stopping ({err}); try again in a minute.", 409
            ) from None

    async def _make_create_pod_request(self, pod: Any, request_timeout: float) -> bool:
        # The pod work since the reservation (volumes, retries) may have outlasted it.
        self.renew_slice()
        created = await super()._make_create_pod_request(pod, request_timeout)
        if created:
            self.commit_slice()  # the pod exists: the ledger holds the slice from now on
        return created

    async def stop(self, now: bool = False) -> None:
        # If the pod cannot be deleted this raises and the slice stays held: the pod may still
        # be using its GPU. The manager's reconcile loop releases it once the pod is gone.
        await super().stop(now)
        # KubeSpawner stops an old pod of the same name while starting (409 on create); that
        # must not release the slice the new pod is being created with.
        if not self._starting:
            self.release_slice("the server stopped")

    async def progress(self) -> Any:
        if self.events_show_placement:
            event = await self.placement_event(
                lambda: bool(self._start_future and self._start_future.done())
            )
            if event:
                yield event
        async for event in super().progress():
            yield event


__all__ = ["FractionalGPUKubeSpawner", "SliceRefused"]
