"""The hub's one GPU-slice allocator, shared by every spawner and the allocation API.

JupyterHub makes one spawner object per server, so the allocator lives in a process-wide
singleton. It is built lazily, once, before the first slice is served: its inventory comes from
the cluster's nodes (or this machine's GPUs, or a simulated declaration) and, on Kubernetes,
its ledger is rebuilt from the annotations of the pods that exist. A reconcile loop then gives
back slices whose pods have vanished behind the hub's back.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, Unicode, default, validate
from traitlets.config import SingletonConfigurable

from gpu_fraction import keys
from gpu_fraction.allocator import POLICIES, Allocator
from gpu_fraction.annotations import from_annotations
from gpu_fraction.enforcement import MpsSettings, startup_configmap_data
from gpu_fraction.errors import AllocationRefused, AnnotationError, UnknownGPUTypeError
from gpu_fraction.inventory import Inventory, from_nodes, from_nvml
from gpu_fraction.ledger import RebuildReport, rebuild
from gpu_fraction.model import Allocation, Owner, SliceRequest, format_gpus
from gpu_fraction.simulated import simulated
from gpu_fraction.type_choice import memory_by_type

from . import metrics
from .agent_samples import AgentSamples
from .lease import AllocatorLease, LeaseHeld, stable_identity
from .node_filter import admitted_nodes
from .node_pods import OtherPods
from .usage_history import UsageHistory

#: Label on every pod that holds a slice, so the ledger can list just those pods.
SLICE_LABEL = keys.PREFIX + "slice"
#: Node label saying the node runs the CUDA MPS control daemon.
MPS_LABEL = keys.PREFIX + "mps"
INVENTORY_SOURCES = ("kubernetes", "nvml", "simulated")
CPU_ONLY_PLACEMENTS = ("allocator", "off_gpu_nodes", "scheduler")


class GPUSliceManager(SingletonConfigurable):
    """Holds the allocator for the whole hub (notebooks and jobs alike)."""

    inventory_source = Unicode(
        "kubernetes",
        config=True,
        help="""Where the GPUs come from: "kubernetes" (nodes labelled
        ai-console/gpu-sharing=true, read through the API), "nvml" (this machine's GPUs, for the
        single-machine hub) or "simulated" (declared in `simulated_gpus`, for machines without
        a GPU). Example: c.GPUSliceManager.inventory_source = "simulated"
        """,
    )
    simulated_gpus = Unicode(
        "local=RTX3090:24576x2",
        config=True,
        help="""Declared GPUs when inventory_source is "simulated": TYPE:MEMORY_MIB[xCOUNT]
        entries, comma separated, each optionally prefixed with NODE=.
        Example: c.GPUSliceManager.simulated_gpus = "RTX3090:24576x4,A100:81920x1"
        """,
    )
    policy = Unicode(
        "binpack",
        config=True,
        help="""Placement policy: "binpack" (least fragmentation, fullest GPU first; keeps
        whole GPUs free for training jobs) or "spread" (least loaded first, for inference).""",
    )
    reservation_ttl = Float(
        900.0,
        config=True,
        help="""Seconds a reserved slice waits for its pod or process to be created before it
        is given back. Keep it above the spawner's start_timeout.""",
    )
    namespace = Unicode(
        config=True,
        help="""Namespace whose pods hold the slices (the ledger). Defaults to the hub's own
        namespace (POD_NAMESPACE) or "default".""",
    )
    gpu_type_overrides = Dict(
        config=True,
        help="""GPU type label per product name, where the derived one is not what admins
        use. Example: {"NVIDIA GeForce RTX 3090": "RTX3090"}""",
    )
    require_sharing_label = Bool(
        True,
        config=True,
        help="""Manage only nodes labelled ai-console/gpu-sharing=true; GPUs on other nodes
        stay with the NVIDIA device plugin.""",
    )
    startup_hook_configmap = Unicode(
        "ai-console-startup",
        config=True,
        help="""ConfigMap (in `namespace`) holding the interpreter-start hook, sitecustomize.py,
        that caps PyTorch and TensorFlow memory to the slice. The hub creates or updates it at
        start; pods with a fractional slice mount it. Empty: no hook, only environment caps.""",
    )
    owner_configmap = Unicode(
        "",
        config=True,
        help="""A ConfigMap (in `namespace`) that owns what the hub itself creates there: the
        start-up hook ConfigMap and the allocator's Lease get an ownerReference to it, so
        Kubernetes deletes them when it goes. The Helm chart names its hub ConfigMap, and
        `helm uninstall` leaves none of them behind. Empty: no owner.""",
    )
    project_quotas = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="""GPU quota per project slug, as a sum of slice sizes ("2", "1/2"), checked at
        every reservation together with the slices the project holds, in one step with the
        placement, so two spawns or jobs at once cannot both pass a check and together
        exceed it. The hub configuration fills it from the admin's YAML. A project not
        listed has no quota. Example: c.GPUSliceManager.project_quotas = {"cs101": "2"}""",
    )
    mps_pipe_directory = Unicode(
        "/tmp/nvidia-mps",
        config=True,
        help="""CUDA_MPS_PIPE_DIRECTORY of the MPS daemon on nodes labelled ai-console/mps=true.
        Notebook and job pods on those nodes mount it and get MPS memory and compute caps.""",
    )
    mps_shm_directory = Unicode(
        "/run/nvidia/mps/shm",
        config=True,
        help="""Host directory the MPS daemon uses as /dev/shm, mounted into the pods of
        MPS clients (notebooks and jobs) at /dev/shm.""",
    )
    job_slice_grace = Float(
        600.0,
        config=True,
        help="""Seconds a job's slice is kept with no live pod before the reconcile loop
        releases it. A job's pod appears some time after its Job (and again between retries);
        the jobs service releases slices when jobs end, so this only catches a job whose
        service never came back (killed with its node, say).""",
    )
    lease_name = Unicode(
        "ai-console-allocator",
        config=True,
        help="""Name of the coordination.k8s.io Lease (in `namespace`) the hub holds while it
        hands out GPU slices, so that a second hub on the namespace cannot oversubscribe the
        GPUs: it waits for the Lease and, while the first renews it, refuses to serve slices.
        Run the hub as one replica with the Recreate strategy. Empty: no Lease (tests of one
        hub only). Kubernetes only.""",
    )
    lease_duration = Float(
        15.0,
        config=True,
        help="""Seconds the Lease lasts unless renewed (renewed every third of that). A hub
        that replaces one that died waits at most this long before it serves slices.""",
    )
    lease_identity_file = Unicode(
        "ai-console-allocator-id",
        config=True,
        help="""File (relative to the hub's working directory, its data directory) keeping
        this hub's Lease identity, so a hub restarted in the same place takes its Lease back
        at once instead of waiting for it to expire.""",
    )
    count_other_pods = Bool(
        True,
        config=True,
        help="""Count the CPU and memory of every running pod on a GPU-sharing node that holds
        no slice (CPU-only notebooks, other workloads, DaemonSets) before placing a slice
        there, from a cluster-wide list-and-watch of pods (needs the hub ClusterRole's pods
        get/list/watch; the Helm chart grants it). Off: only the slices' own pods count, and a
        slice may be pinned to a node whose CPU others took, where its pod waits Pending.
        Kubernetes only.""",
    )
    cpu_only_pods = Unicode(
        "allocator",
        config=True,
        help="""Where the pods of CPU-only profiles and CPU jobs go (Kubernetes; for jobs
        only "allocator" differs from the scheduler).
        "allocator": the allocator places them, with the measure it places slices by, on the
        GPU node where their CPU and memory strand the least GPU capacity, and holds their
        node like a slice (pod annotations, restored after a restart); when no GPU node has
        room they go to the other nodes, if there are any.
        "off_gpu_nodes": never on the nodes whose GPUs the allocator hands out (a required
        node affinity), for clusters with CPU nodes enough for them.
        "scheduler": where the Kubernetes scheduler puts them (its default spreads them), GPU
        nodes included; the hub counts their CPU and memory there (count_other_pods).
        Measured on benchmarks/packing.py (seed 42, % of GPUs allocated at 130%; base, all
        sharing, multi-GPU, model-constrained): allocator 97.56 / 87.54 / 98.53 / 97.75,
        off_gpu_nodes 97.58 / 88.12 / 98.57 / 97.72 (its CPU-only pods run on CPU nodes the
        benchmark does not model), scheduler 90.54 / 72.36 / 98.02 / 89.75.""",
    )
    other_pods_interval = Float(
        2.0,
        config=True,
        help="""Seconds between passes that bring the count of other pods' CPU and memory up to
        date with the watch (count_other_pods).""",
    )
    reconcile_interval = Float(
        30.0,
        config=True,
        help="""Seconds between checks that every committed slice still has its pod; slices
        whose pod is gone are released. 0 disables the loop (Kubernetes only).""",
    )

    @default("namespace")
    def _namespace_default(self) -> str:
        import os

        return os.environ.get("POD_NAMESPACE", "default")

    @validate("policy")
    def _check_policy(self, proposal: dict) -> str:
        if proposal["value"] not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        return proposal["value"]

    @validate("cpu_only_pods")
    def _check_cpu_only_pods(self, proposal: dict) -> str:
        if proposal["value"] not in CPU_ONLY_PLACEMENTS:
            raise ValueError(f"cpu_only_pods must be one of {', '.join(CPU_ONLY_PLACEMENTS)}")
        return proposal["value"]

    @validate("inventory_source")
    def _check_source(self, proposal: dict) -> str:
        if proposal["value"] not in INVENTORY_SOURCES:
            raise ValueError(f"inventory_source must be one of {', '.join(INVENTORY_SOURCES)}")
        return proposal["value"]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._allocator: Allocator | None = None
        self._ready_lock = asyncio.Lock()
        self.inventory: Inventory | None = None
        self.rebuild_report: RebuildReport | None = None
        self.mps_nodes: frozenset[str] = frozenset()
        #: node name -> its labels, as listed when the inventory was built (Kubernetes)
        self.node_labels: dict[str, dict[str, str]] = {}
        #: The Lease that makes this hub the namespace's one allocator (Kubernetes).
        self.lease: AllocatorLease | None = None
        self._reconcile_task: asyncio.Task | None = None
        #: allocation id -> when it was committed (or adopted), for the reconcile loop
        self._committed_at: dict[str, float] = {}
        #: allocation id -> when a live pod last held it (job slices)
        self._seen_alive: dict[str, float] = {}
        #: pod name -> why the slice it runs on cannot be held (reconcile reports it)
        self.conflicts: dict[str, str] = {}
        #: slices of live pods the allocator did not hold at the last reconcile
        self._unheld_seen: set[str] = set()
        #: allocation id -> who reserved it through the hub's API (kept while this hub runs)
        self._created_by: dict[str, str] = {}
        #: the watch of pods that hold no slice on managed nodes (count_other_pods)
        self.other_pods: OtherPods | None = None

    # --- start-up ----------------------------------------------------------------------------

    @property
    def allocator(self) -> Allocator:
        """The allocator; only valid after :meth:`ready` (raises before)."""
        if self._allocator is None:
            raise RuntimeError("GPUSliceManager.ready() has not completed yet")
        return self._allocator

    async def ready(self) -> Allocator:
        """Build the inventory and rebuild the ledger once; later calls return at once."""
        if self._allocator is not None:
            return self._allocator
        async with self._ready_lock:
            if self._allocator is None:
                await self._build()
        return self._allocator  # type: ignore[return-value]

    async def _build(self) -> None:
        if self.inventory_source == "simulated":
            inventory = simulated(self.simulated_gpus)
        elif self.inventory_source == "nvml":
            inventory = await asyncio.to_thread(from_nvml)
            if inventory.error:
                self.log.warning("%s; only CPU profiles can start", inventory.error)
        else:
            inventory = await self._kubernetes_inventory()
        allocator = Allocator.from_inventory(
            inventory, policy=self.policy, reservation_ttl=self.reservation_ttl
        )
        self.inventory = inventory
        gpu_count = len(inventory.gpus)
        self.log.info(
            "GPU inventory (%s%s): %d GPUs of types %s",
            inventory.source,
            ", simulated" if inventory.simulated else "",
            gpu_count,
            ", ".join(inventory.types()) or "none",
        )
        if self.inventory_source == "kubernetes":
            owners = await self._owner_references()
            await self._hold_lease(owners)
            if self.startup_hook_configmap:
                await self._ensure_startup_configmap(owners)
            pods = await self._list_slice_pods()
            self.rebuild_report = rebuild(allocator, pods)
            now = time.monotonic()
            self._committed_at.update((a.id, now) for _, a in self.rebuild_report.adopted)
            self.log.info(self.rebuild_report.summary())
            for problem in self.rebuild_report.conflicts + self.rebuild_report.malformed:
                self.log.error(
                    "pod %s holds a GPU slice that cannot be restored: %s",
                    problem.pod,
                    problem.reason,
                )
        if self.inventory_source == "kubernetes" and self.count_other_pods:
            await self._count_other_pods(allocator, inventory)
        self._allocator = allocator
        # The GPU-hours history samples what this allocator holds (when a file is configured),
        # with the agents' figures where agents are read.
        history = UsageHistory.instance(config=self.config)
        samples = AgentSamples.instance(config=self.config)
        if samples.label_selector or samples.urls:
            samples.start(self._agent_urls, self._committed_allocations)
            history.start(
                self.allocations,
                self.is_committed,
                samples.busy,
                lambda: samples.utilization_by_type(row["gpu"] for row in self.usage()),
            )
        else:
            history.start(self.allocations, self.is_committed)
        if self.inventory_source == "kubernetes" and self.reconcile_interval > 0:
            self._reconcile_task = asyncio.ensure_future(self._reconcile_loop())

    async def _count_other_pods(self, allocator: Allocator, inventory: Inventory) -> None:
        """Start counting the pods the allocator did not place; a hub whose RBAC lacks the
        cluster-wide pod watch says so and goes on without."""
        await self._core_api()  # loads the client configuration the reflector uses
        managed = frozenset(inventory.nodes)
        watch = OtherPods(
            allocator, managed.__contains__, self.log, interval=self.other_pods_interval
        )
        try:
            await watch.start()
        except Exception as err:  # any failure: go on without the count
            # (KubeSpawner's reflector can turn a refused list into another exception.)
            self.log.error(
                "cannot watch the pods on GPU nodes (%s); the CPU and memory of pods that "
                "hold no slice are not counted. Grant the hub ClusterRole pods get/list/watch "
                "(hub_config/kubernetes/hub-rbac.yaml) or set "
                "GPUSliceManager.count_other_pods = False.",
                getattr(err, "status", None) or type(err).__name__,
            )
            watch.stop()
            return
        self.other_pods = watch
        counted = allocator.observed_pods()
        self.log.info("counting %d pods without a slice on the GPU nodes", len(counted))

    def mps_settings(self, node: str) -> MpsSettings | None:
        """How a pod on ``node`` reaches the node's MPS daemon; ``None`` where none runs."""
        if node not in self.mps_nodes:
            return None
        return MpsSettings(
            pipe_directory=self.mps_pipe_directory, host_shm_directory=self.mps_shm_directory
        )

    def admitted_nodes(
        self, selector: dict[str, str] | None, terms: list | None
    ) -> frozenset[str] | None:
        """The nodes a pod's node selector and required affinity admit (None: any)."""
        return admitted_nodes(self.node_labels, selector, terms)

    def unmanaged_node_requirement(self) -> dict[str, Any] | None:
        """A node selector requirement that keeps a pod off the nodes whose GPUs the allocator
        hands out (for pods that get GPUs from the NVIDIA device plugin instead); None when
        it manages none."""
        if self.require_sharing_label:
            return {"key": keys.LABEL_SHARING, "operator": "NotIn", "values": ["true"]}
        allocator = self._allocator
        managed = sorted({gpu.node for gpu in allocator.gpus()}) if allocator else []
        if not managed:
            return None
        return {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": managed}

    async def _owner_references(self) -> list[dict[str, Any]]:
        """``owner_configmap`` as an ownerReference (none when unset)."""
        if not self.owner_configmap:
            return []
        api = await self._core_api()
        owner = await api.read_namespaced_config_map(self.owner_configmap, self.namespace)
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name}
        return [{**ref, "uid": owner.metadata.uid}]

    async def _hold_lease(self, owners: list[dict[str, Any]] | None = None) -> None:
        """Become the namespace's one allocator, or refuse to serve slices."""
        if not self.lease_name or self.lease is not None:
            return
        from kubespawner.clients import load_config, shared_client

        load_config()
        lease = AllocatorLease(
            shared_client("CoordinationV1Api"),
            self.namespace,
            self.lease_name,
            stable_identity(Path(self.lease_identity_file)),
            self.lease_duration,
            self.log,
            owners,
        )
        try:
            await lease.acquire(wait=self.lease_duration + 1)
        except LeaseHeld as err:
            raise AllocationRefused(
                f"another hub ({err.holder}) hands out the GPU slices of namespace "
                f"{self.namespace}; run a single hub (one replica, Recreate strategy)"
            ) from None
        self.lease = lease

    async def _core_api(self) -> Any:
        from kubespawner.clients import load_config, shared_client

        load_config()
        return shared_client("CoreV1Api")

    async def _kubernetes_inventory(self) -> Inventory:
        api = await self._core_api()
        node_list = await api.list_node()
        nodes = [api.api_client.sanitize_for_serialization(n) for n in node_list.items]
        self.node_labels = {
            n["metadata"]["name"]: dict(n["metadata"].get("labels") or {}) for n in nodes
        }
        self.mps_nodes = frozenset(
            n["metadata"]["name"]
            for n in nodes
            if (n["metadata"].get("labels") or {}).get(MPS_LABEL) == "true"
        )
        inventory = from_nodes(
            nodes,
            type_overrides=dict(self.gpu_type_overrides) or None,
            require_sharing_label=self.require_sharing_label,
            skip_bad_nodes=True,  # one broken node must not stop every spawn
        )
        for name, why in inventory.skipped:
            self.log.error("node %s is left out of the GPU inventory: %s", name, why)
        return inventory

    async def _ensure_startup_configmap(self, owners: list[dict[str, Any]] | None = None) -> None:
        """Create or update the ConfigMap pods mount the start-up hook from."""
        from kubernetes_asyncio.client.exceptions import ApiException

        api = await self._core_api()
        name, data = self.startup_hook_configmap, startup_configmap_data()
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "ai-console"},
        }
        if owners:
            metadata["ownerReferences"] = owners
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        try:
            existing = await api.read_namespaced_config_map(name, self.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            await api.create_namespaced_config_map(self.namespace, body)
            self.log.info("created ConfigMap %s/%s (start-up hook)", self.namespace, name)
            return
        patch: dict[str, Any] = {}
        if existing.data != data:
            patch["data"] = data
        current = api.api_client.sanitize_for_serialization(existing.metadata)
        if owners and current.get("ownerReferences") != owners:
            patch["metadata"] = {"ownerReferences": owners}
        if patch:
            await api.patch_namespaced_config_map(name, self.namespace, patch)
            self.log.info("updated ConfigMap %s/%s (start-up hook)", self.namespace, name)

    async def _agent_urls(self) -> list[str]:
        """The /metrics of the running node agents in the hub's namespace (Kubernetes)."""
        samples = AgentSamples.instance(config=self.config)
        if self.inventory_source != "kubernetes" or not samples.label_selector:
            return []
        api = await self._core_api()
        pods = await api.list_namespaced_pod(self.namespace, label_selector=samples.label_selector)
        return [
            f"http://{pod.status.pod_ip}:{samples.port}/metrics"
            for pod in pods.items
            if pod.status and pod.status.pod_ip and pod.status.phase == "Running"
        ]

    def _committed_allocations(self) -> list[Allocation]:
        return [a for a in self.allocations() if self.is_committed(a.id)]

    async def _list_slice_pods(self) -> list[dict]:
        api = await self._core_api()
        pods = await api.list_namespaced_pod(self.namespace, label_selector=f"{SLICE_LABEL}=true")
        return [api.api_client.sanitize_for_serialization(p) for p in pods.items]

    # --- the reconcile loop ------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_interval)
            try:
                await self.reconcile()
            except Exception:
                self.log.exception("GPU slice reconcile failed; will retry")

    async def reconcile(self) -> list[Allocation]:
        """Release slices whose pods are gone; returns what was released.

        Only slices committed before the listing started are judged, so a pod created while
        the list was in flight is not mistaken for a vanished one. A notebook slice goes as
        soon as its pod is gone; a job slice only after ``job_slice_grace`` seconds without a
        live pod, since a Job's pod comes after it, and again between retries.
        """
        started = time.monotonic()
        pods = await self._list_slice_pods()
        live = [
            p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        alive = {(p["metadata"].get("annotations") or {}).get(keys.ANN_ALLOCATION) for p in live}
        self._adopt_unheld(live, started)
        released = []
        for allocation in self.allocator.allocations():
            committed_at = self._committed_at.get(allocation.id)
            if allocation.id in alive:
                self._seen_alive[allocation.id] = started
                continue
            if committed_at is None or committed_at >= started:
                continue
            if allocation.owner.kind == "job":
                last = max(committed_at, self._seen_alive.get(allocation.id, committed_at))
                if started - last < self.job_slice_grace:
                    continue
            if self.release(allocation.id):
                self.log.warning(
                    "released GPU slice %s of %s %s: its pod is gone",
                    allocation.id,
                    allocation.owner.kind,
                    allocation.owner.user,
                )
                released.append(allocation)
        held = {allocation.id for allocation in self.allocator.allocations()}
        for gone in set(self._created_by) - held:  # reservations that expired unused
            del self._created_by[gone]
        return released

    def _adopt_unheld(self, live_pods: list[dict], now: float) -> None:
        """Hold again the slice of a live pod the allocator does not hold (its slice was given
        back while the pod went on running), so that no other pod is placed onto that GPU;
        one that cannot be held without oversubscribing is reported, never doubled. A pod must
        be seen so in two passes running: a listing can predate a stop that just finished."""
        allocator = self.allocator
        unheld: set[str] = set()
        for pod in live_pods:
            annotations = pod["metadata"].get("annotations") or {}
            allocation_id = annotations.get(keys.ANN_ALLOCATION)
            if not allocation_id or allocator.get(allocation_id) is not None:
                continue
            unheld.add(allocation_id)
            if allocation_id not in self._unheld_seen:
                continue
            name = pod["metadata"].get("name")
            try:
                adopted = allocator.adopt(from_annotations(annotations, allocator.gpu_by_uuid))
            except (AnnotationError, AllocationRefused) as err:
                reason = getattr(err, "reason", None) or str(err)
                if self.conflicts.get(name) != reason:
                    self.log.error(
                        "pod %s runs on GPU slice %s, which cannot be held: %s", name,
                        allocation_id, reason,
                    )  # fmt: skip
                self.conflicts[name] = reason
                continue
            self.conflicts.pop(name, None)
            self._committed_at[adopted.id] = now
            self.log.warning("held GPU slice %s again: pod %s still runs on it", adopted.id, name)
        self._unheld_seen = unheld

    def close(self) -> None:
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
            self._reconcile_task = None
        if self.other_pods is not None:
            self.other_pods.stop()
            self.other_pods = None
        if self.lease is not None:
            self.lease.stop()
        if UsageHistory.initialized():
            UsageHistory.instance().stop()
        if AgentSamples.initialized():
            AgentSamples.instance().stop()

    # --- what spawners and the allocation API call -------------------------------------------

    async def reserve(
        self, request: SliceRequest, owner: Owner, created_by: str | None = None
    ) -> Allocation:
        """Reserve a slice for ``owner`` within its project's quota. ``created_by``: the API
        caller that asks (a service), who alone may then commit and release it."""
        allocator = await self._serving()
        # No await from here on: the quota check and the placement are one step.
        step = "lease"  # which check refused, for the refusal counter (never its text)
        try:
            with metrics.timed_allocation():
                self._check_lease()
                step = "quota"
                self._check_quota(owner.project, request.fraction)
                step = "no_capacity"
                allocation = allocator.reserve(request, owner)
        except UnknownGPUTypeError:
            metrics.count_refusal("unknown_gpu_type")
            raise
        except AllocationRefused:
            metrics.count_refusal(step)
            raise
        self._remember_creator(allocation, created_by)
        return allocation

    async def reserve_pod(
        self,
        cpu_millis: int,
        memory_mib: int,
        owner: Owner,
        nodes: frozenset[str] | None = None,
        created_by: str | None = None,
    ) -> Allocation:
        """Reserve a GPU node's CPU and memory for a pod without GPUs (a CPU-only server or
        job); commit and release it like a slice. ``created_by``: as for :meth:`reserve`."""
        allocator = await self._serving()
        step = "lease"
        try:
            self._check_lease()
            step = "no_capacity"
            allocation = allocator.reserve_pod(cpu_millis, memory_mib, owner, nodes=nodes)
        except AllocationRefused:
            metrics.count_refusal(step)
            raise
        self._remember_creator(allocation, created_by)
        return allocation

    async def _serving(self) -> Allocator:
        """The allocator, once this hub may serve (refusal counted when another hub holds
        the allocator Lease)."""
        try:
            return await self.ready()
        except AllocationRefused:
            metrics.count_refusal("lease")
            raise

    def _check_lease(self) -> None:
        """Refuse while this hub cannot renew its allocator Lease."""
        if self.lease is not None and not self.lease.valid():
            raise AllocationRefused(
                "this hub could not renew its GPU allocator lease (is another hub "
                "running, or the API server unreachable?); try again in a moment"
            )

    def _remember_creator(self, allocation: Allocation, created_by: str | None) -> None:
        if created_by is not None:
            self._created_by[allocation.id] = created_by

    def has_unmanaged_nodes(self) -> bool:
        """Whether the cluster has nodes whose GPUs (if any) the allocator does not manage."""
        managed = self.inventory.nodes if self.inventory is not None else {}
        return any(node not in managed for node in self.node_labels)

    def renew(self, allocation: Allocation) -> Allocation:
        """Hold ``allocation`` again right before its pod or process is created: renew the
        reservation, or, if it expired meanwhile (a slow volume, an API server retrying),
        take the same slice back while it is still free, so the pod is created with a slice the
        ledger holds. Raises :class:`AllocationRefused` when that slice is gone."""
        if self.allocator.renew(allocation.id):
            return allocation
        self.log.warning("GPU slice %s expired before its pod was created", allocation.id)
        try:
            return self.allocator.adopt(allocation, committed=False)
        except AllocationRefused as err:
            metrics.count_refusal("expired")
            raise AllocationRefused(
                "the GPU slice reserved for this start expired before the pod could be "
                f"created and is no longer free ({err.reason}); start again"
            ) from None

    def created_by(self, allocation_id: str) -> str | None:
        """Who reserved the allocation through the API (None: the hub itself, or not known
        since a restart)."""
        return self._created_by.get(allocation_id)

    def _check_quota(self, project: str, need: Fraction) -> None:
        quota_text = self.project_quotas.get(project) if project else None
        if quota_text is None:
            return
        quota, used = Fraction(quota_text), self.in_use_by_project(project)
        if used + need > quota:
            raise AllocationRefused(
                f"project {project} holds {format_gpus(used)} of its {format_gpus(quota)} GPU "
                f"quota; {format_gpus(need)} more would exceed it"
            )

    def commit(self, allocation_id: str) -> Allocation:
        allocation = self.allocator.commit(allocation_id)
        self._committed_at[allocation_id] = time.monotonic()
        return allocation

    def release(self, allocation_id: str) -> bool:
        self._created_by.pop(allocation_id, None)
        self._committed_at.pop(allocation_id, None)
        self._seen_alive.pop(allocation_id, None)
        if self._allocator is None:
            return False
        return self._allocator.release(allocation_id)

    async def adopt(self, annotations: dict[str, str]) -> Allocation | None:
        """Re-hold a slice saved in a spawner's state (single-machine hub restart).

        Returns None, after logging why, when it cannot be held (already held, unknown GPU,
        over capacity): the server then runs without a guaranteed slice until restarted.
        """
        allocator = await self.ready()
        try:
            allocation = from_annotations(annotations, allocator.gpu_by_uuid)
        except AnnotationError as err:
            self.log.error("saved GPU slice is unreadable: %s", err)
            return None
        if allocator.get(allocation.id) is not None:
            return allocator.get(allocation.id)
        try:
            adopted = allocator.adopt(allocation)
            self._committed_at[adopted.id] = time.monotonic()
            return adopted
        except AllocationRefused as err:
            self.log.error("saved GPU slice %s cannot be held: %s", allocation.id, err.reason)
            return None

    def allocations(self) -> list[Allocation]:
        """Every GPU slice held now (none before the allocator is built); the nodes held for
        CPU-only pods are not slices."""
        if self._allocator is None:
            return []
        return [a for a in self._allocator.allocations() if not a.is_cpu_only]

    def is_committed(self, allocation_id: str) -> bool:
        """Whether the slice's pod or process exists (False for an unknown id)."""
        return self._allocator is not None and self._allocator.is_committed(allocation_id)

    def usage(self) -> list[dict]:
        """Every GPU with its free capacity and slices, as one snapshot (none before the
        allocator is built); the metrics collector reads it at each scrape."""
        return self._allocator.usage() if self._allocator is not None else []

    def in_use_by_project(self, project: str) -> Fraction:
        """Sum of the GPU fractions a project holds now (notebooks and jobs together)."""
        return sum(
            (a.fraction for a in self.allocations() if a.owner.project == project), Fraction(0)
        )

    async def capacity(self) -> dict[str, dict[Fraction, int]]:
        allocator = await self.ready()
        return allocator.capacity()

    async def memory_by_type(self) -> dict[str, int]:
        """GPU type -> MiB of its smallest GPU, for slices that accept any type with enough
        memory (``min_memory``)."""
        allocator = await self.ready()
        return memory_by_type(allocator.gpus())


def current_manager() -> GPUSliceManager | None:
    """The hub's manager, if one was made (never makes one: a scrape must not build it)."""
    return GPUSliceManager.instance() if GPUSliceManager.initialized() else None


# Once per process (a module is imported once); the collector looks the manager up at each
# scrape, so a manager rebuilt (tests) is the one reported.
metrics.register_collector(current_manager)
