"""What both spawners do with a GPU slice: decide, reserve, commit, release, remember.

The decision (which slice, for which project) comes from the chosen profile, or from a
``slice_policy`` callable that the hub configuration sets to check projects and quotas. Every
failed start path and every stop releases the slice; release is idempotent, so a path that
releases twice loses nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyterhub.utils import maybe_future
from tornado import web
from traitlets import Any as AnyTrait
from traitlets.config import Configurable

from gpu_fraction import keys
from gpu_fraction.annotations import to_annotations
from gpu_fraction.errors import AllocationRefused, InvalidFieldError
from gpu_fraction.model import Allocation, Owner, SliceRequest
from gpu_fraction.type_choice import ANY_TYPE, accepted_types, memory_text, request_types

from . import metrics
from .manager import GPUSliceManager
from .profile_options import chosen

#: Key of our data in a profile dict (KubeSpawner profile_list shape).
PROFILE_KEY = "ai_console"
#: Key of the saved slice in the spawner's state (JupyterHub's database).
STATE_KEY = "ai_console_slice"


@dataclass(frozen=True)
class SliceDecision:
    """What a spawn gets: a slice request (None for CPU-only) and the project it counts for."""

    request: SliceRequest | None
    project: str = ""


class SliceRefused(web.HTTPError):
    """A spawn cannot go ahead; the message is shown on the spawn page as it is.

    An HTTP error below 500, so JupyterHub answers the API with that status and counts it as
    a handled rejection, not a spawner failure: 400 bad choice, 403 not allowed (membership,
    quota), 409 no capacity now.
    """

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(status, message)
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return self.jupyterhub_message


def gpu_block_of(profile: dict | None, user_options: dict | None = None) -> dict | None:
    """The slice block a profile asks for: the chosen choice's block of
    ``ai_console.gpu_choices``, else its ``ai_console.gpu`` block (None: CPU-only)."""
    ours = (profile or {}).get(PROFILE_KEY) or {}
    gpu = ours.get("gpu")
    for option, blocks in (ours.get("gpu_choices") or {}).items():
        choice = chosen((profile or {}).get("profile_options") or {}, option, user_options or {})
        if choice in blocks:
            gpu = blocks[choice]
            break
    return gpu or None


def decision_from_profile(
    profile: dict | None,
    user_options: dict | None = None,
    memory: Mapping[str, int] | None = None,
) -> SliceDecision:
    """The slice a profile asks for (:func:`gpu_block_of`). A block names one GPU type
    (``type``), several (``types``: the allocator chooses) or any (``type: any``);
    ``min_memory_mib`` keeps the types of ``memory`` (GPU type -> MiB of its smallest GPU)
    with at least that much, and none left is a :class:`SliceRefused`."""
    project = ((profile or {}).get(PROFILE_KEY) or {}).get("project", "")
    gpu = gpu_block_of(profile, user_options)
    if not gpu:
        return SliceDecision(None, project)
    named = gpu.get("types") or ([] if gpu.get("type") == ANY_TYPE else [gpu["type"]]) or None
    minimum = gpu.get("min_memory_mib")
    types = named
    if minimum is not None:
        types = accepted_types(named, minimum, memory or {})
        if not types:
            what = " or ".join(named) if named else "any GPU"
            raise SliceRefused(
                f"This profile needs {what} with {memory_text(minimum)} or more, and this hub "
                "has none; pick another profile, or ask a platform admin."
            )
    request = SliceRequest(
        **request_types(types),
        fraction=gpu.get("fraction", 1),
        memory_mib=gpu.get("memory_mib"),
        compute_min=gpu.get("compute_min"),
        compute_max=gpu.get("compute_max", 100),
    )
    return SliceDecision(request, project)


class GPUSliceMixin(Configurable):
    """GPU-slice handling shared by the Kubernetes and the local spawner."""

    slice_policy = AnyTrait(
        None,
        allow_none=True,
        config=True,
        help="""Callable (spawner, profile) -> SliceDecision, may be async, that decides the
        slice and project of a spawn and raises SliceRefused (or PermissionError/ValueError)
        with a message for the user when the spawn is not allowed. The hub configuration sets
        it to check project membership and GPU quotas on the hub side, so crafted
        user_options cannot get around the spawn form. None: take the profile's gpu block.
        """,
    )

    _allocation: Allocation | None = None
    _saved_slice: dict[str, str] | None = None
    slice_message: str = ""

    @property
    def slice_manager(self) -> GPUSliceManager:
        return GPUSliceManager.instance(config=self.config)

    @property
    def allocation(self) -> Allocation | None:
        """The slice this server holds now, if any."""
        return self._allocation

    async def decide_slice(self, profile: dict | None) -> SliceDecision:
        try:
            if self.slice_policy is not None:
                return await maybe_future(self.slice_policy(self, profile))
            block = gpu_block_of(profile, self.user_options)
            memory = None
            if block and block.get("min_memory_mib") is not None:
                memory = await self.slice_manager.memory_by_type()
            return decision_from_profile(profile, self.user_options, memory)
        except PermissionError as err:
            raise SliceRefused(str(err), 403) from None
        except ValueError as err:  # bad input from the profile or the user's options
            raise SliceRefused(str(err), 400) from None

    async def reserve_slice(self, profile: dict | None) -> Allocation | None:
        """Reserve the slice of this spawn (None for CPU-only profiles)."""
        self.release_slice("a new start")  # never hold two slices for one server
        decision = await self.decide_slice(profile)
        if decision.request is None:
            placed = await self.reserve_cpu_only(decision.project)
            if placed is None:
                self.slice_message = "No GPU: this profile runs on CPU only"
                return None
            self._allocation = placed
            self.slice_message = f"No GPU: this profile runs on CPU only, on node {placed.node}"
            self.log.info("%s for %s", self.slice_message, self._log_name)
            return placed
        owner = Owner("notebook", self.user.name, decision.project, self.name or "")
        request = self._with_pod_requests(decision.request)
        await self.slice_manager.ready()  # the node labels come with the inventory
        nodes = self.slice_nodes()
        if nodes is not None:
            if not nodes:
                metrics.count_refusal("node_filter")
                raise SliceRefused(
                    "This profile's node selector matches none of the cluster's nodes, so it "
                    "cannot start; tell your platform admin which profile you chose.",
                    400,
                )
            request = dataclasses.replace(request, nodes=nodes)
        try:
            allocation = await self.slice_manager.reserve(request, owner)
        except AllocationRefused as err:
            raise SliceRefused(f"No GPU slice available: {err.reason}") from None
        except InvalidFieldError as err:
            raise SliceRefused(f"This profile cannot start: {err}", 400) from None
        self._allocation = allocation
        self.slice_message = f"Reserved {allocation.describe()}"
        self.log.info("%s for %s", self.slice_message, self._log_name)
        return allocation

    async def reserve_cpu_only(self, project: str) -> Allocation | None:
        """Where the allocator places CPU-only servers too, hold this one's node (an
        allocation without GPUs); None: the server goes where its spawner puts it."""
        return None

    def _pod_guarantees(self) -> tuple[int, int]:
        """This server's own CPU (millicores) and memory (MiB) guarantees."""
        cpu = int((getattr(self, "cpu_guarantee", None) or 0) * 1000)
        memory = int(getattr(self, "mem_guarantee", None) or 0) >> 20
        return cpu, memory

    def _with_pod_requests(self, request: SliceRequest) -> SliceRequest:
        """The request with this server's own CPU and memory guarantees (as the profile set
        them), where the decision left them out, so a pod pinned to a node always fits there."""
        if request.cpu_millis or request.host_memory_mib:
            return request
        cpu, memory = self._pod_guarantees()
        if not cpu and not memory:
            return request
        return dataclasses.replace(request, cpu_millis=cpu, host_memory_mib=memory)

    def slice_nodes(self) -> frozenset[str] | None:
        """The nodes this server may run on (None: any); the Kubernetes spawner reads them from
        the pod's node selector and affinity."""
        return None

    def slice_committed(self) -> bool:
        """Whether this server's pod or process exists (its slice is committed)."""
        allocation = self._allocation
        return allocation is not None and self.slice_manager.allocator.is_committed(allocation.id)

    def has_saved_slice(self) -> bool:
        """Whether the state saved before a hub restart names a slice this server held."""
        return bool((self._saved_slice or {}).get(keys.ANN_ALLOCATION))

    def renew_slice(self) -> None:
        """Hold the reserved slice afresh right before the pod or process is created."""
        if self._allocation is None:
            return
        try:
            self._allocation = self.slice_manager.renew(self._allocation)
        except AllocationRefused as err:
            self._allocation = None
            raise SliceRefused(err.reason, 409) from None

    def commit_slice(self) -> None:
        if self._allocation is not None:
            self.slice_manager.commit(self._allocation.id)

    def release_slice(self, why: str) -> None:
        """Give the slice back: the live one, or the one saved in state before a restart."""
        if self._allocation is not None:
            allocation_id: str | None = self._allocation.id
        else:
            allocation_id = (self._saved_slice or {}).get(keys.ANN_ALLOCATION)
        self._allocation = None
        self._saved_slice = None
        if allocation_id and self.slice_manager.release(allocation_id):
            self.log.info("Released GPU slice %s of %s (%s)", allocation_id, self._log_name, why)

    # The slice is saved in JupyterHub's database with the spawner's state. This class comes
    # first in the spawners' bases, so super() here is the spawner's own method.

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()  # type: ignore[misc]
        if self._allocation is not None:
            state[STATE_KEY] = to_annotations(self._allocation)
        elif self._saved_slice:
            state[STATE_KEY] = dict(self._saved_slice)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        saved = state.get(STATE_KEY)
        self._saved_slice = dict(saved) if isinstance(saved, dict) else None

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self._saved_slice = None

    async def restore_slice(self) -> None:
        """Re-hold the slice saved in state (the single-machine hub after a restart)."""
        if self._saved_slice and self._allocation is None:
            self._allocation = await self.slice_manager.adopt(self._saved_slice)
        self._saved_slice = None

    async def placement_event(self, start_done: Callable[[], bool]) -> dict[str, Any] | None:
        """The placement as a progress event, waiting briefly for the reservation: the spawn
        page may ask for progress a moment before it is made."""
        for _ in range(50):
            if self.slice_message or start_done():
                break
            await asyncio.sleep(0.1)
        if not self.slice_message:
            return None
        return {"progress": 5, "message": self.slice_message}
