"""The hub's allocation API: one allocator and one ledger for notebooks and jobs alike.

The jobs service reserves and releases GPU slices here, so a GPU freed by a job goes straight
back to notebooks. Mounted under the hub's API (``/hub/api/ai-console/...``) through
``c.JupyterHub.extra_handlers``; every request is authenticated by JupyterHub and authorised by
a custom scope (the hub itself does not check custom scopes, so each handler does).

- ``GET    /api/ai-console/capacity``                  scope custom:ai-console:capacity (every
  user has it): free slices per size
- ``GET    /api/ai-console/allocations``               scope custom:ai-console:gpu-map (or
  custom:ai-console:allocations): every slice, per GPU; with gpu-map filtered (course admins:
  ``!group=project-<slug>``), every GPU but only the slices of the users it covers
- ``POST   /api/ai-console/allocations``               scope custom:ai-console:allocations and
  a JupyterHub admin: reserve; body: request fields and ``owner``; 201, 400 (names the field),
  409 (refused, the project's quota included). Services reserve through job admissions,
  which check the user's projects and quota first.
- ``POST   /api/ai-console/allocations/{id}/commit``   scope custom:ai-console:allocations
- ``DELETE /api/ai-console/allocations/{id}``          scope custom:ai-console:allocations;
  idempotent

Commit and release: an admin may touch any slice; any other caller (the jobs service) only job
slices it reserved itself (or, after a hub restart, job slices rebuilt from their pods), and
any other id is refused with 404. Ids are random, not counted.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import has_scope
from tornado import web

from gpu_fraction.annotations import to_annotations
from gpu_fraction.errors import AllocationRefused, InvalidFieldError, UnknownAllocationError
from gpu_fraction.model import Allocation, Owner, SliceRequest

from .manager import GPUSliceManager

SCOPE_ALLOCATIONS = "custom:ai-console:allocations"
SCOPE_GPU_MAP = "custom:ai-console:gpu-map"
SCOPE_CAPACITY = "custom:ai-console:capacity"
REQUEST_FIELDS = (
    "gpu_type",
    "fraction",
    "memory_mib",
    "compute_min",
    "compute_max",
    "cpu_millis",
    "host_memory_mib",
    "node",
    "zone",
)


def allocation_model(allocation: Allocation) -> dict[str, Any]:
    """JSON shape of an allocation in this API."""
    return {
        "id": allocation.id,
        "node": allocation.node,
        "gpu_type": allocation.gpu_type,
        "gpu_uuids": list(allocation.gpu_uuids),
        "gpu_indices": list(allocation.gpu_indices),
        "fraction": str(allocation.fraction),
        "memory_mib": allocation.memory_mib,
        "gpu_memory_mib": allocation.gpu_memory_mib,
        "compute_min": allocation.compute_min,
        "compute_max": allocation.compute_max,
        "cpu_millis": allocation.cpu_millis,
        "host_memory_mib": allocation.host_memory_mib,
        "product": allocation.product,
        "simulated": allocation.simulated,
        "owner": {
            "kind": allocation.owner.kind,
            "user": allocation.owner.user,
            "project": allocation.owner.project,
            "name": allocation.owner.name,
        },
        "description": allocation.describe(),
        "annotations": to_annotations(allocation),
    }


class SliceAPIHandler(APIHandler):
    """Base of the AI Console hub API handlers: the shared allocator, scopes, JSON."""

    @property
    def slice_manager(self) -> GPUSliceManager:
        return GPUSliceManager.instance(config=self.settings["config"])

    def require_scope(self, *scopes: str) -> None:
        """403 unless the caller holds one of ``scopes`` (the hub does not check custom ones)."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not any(has_scope(s, self.parsed_scopes, db=self.db) for s in scopes):
            raise web.HTTPError(403, f"Action requires one of the scopes: {', '.join(scopes)}")

    @property
    def caller(self) -> str:
        """Who calls, as recorded with the slices they reserve: ``service:<name>`` or
        ``user:<name>``."""
        if isinstance(self.current_user, orm.Service):
            return f"service:{self.current_user.name}"
        return f"user:{self.current_user.name}"

    @property
    def caller_is_admin(self) -> bool:
        """A JupyterHub admin user (services never are, here: they act for others)."""
        return not isinstance(self.current_user, orm.Service) and bool(self.current_user.admin)

    def touchable(self, allocation_id: str) -> Allocation | None:
        """The allocation, if this caller may commit or release it."""
        allocation = self.slice_manager.allocator.get(allocation_id)
        if allocation is None or self.caller_is_admin:
            return allocation
        creator = self.slice_manager.created_by(allocation_id)
        if allocation.owner.kind == "job" and creator in (None, self.caller):
            return allocation
        return None

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as err:
            raise web.HTTPError(400, f"request body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "request body must be a JSON object")
        return body


class CapacityHandler(SliceAPIHandler):
    async def get(self) -> None:
        self.require_scope(SCOPE_CAPACITY, SCOPE_ALLOCATIONS)
        capacity = await self.slice_manager.capacity()
        inventory = self.slice_manager.inventory
        self.write_json(
            200,
            {
                "simulated": bool(inventory and inventory.simulated),
                "gpu_types": {
                    gpu_type: {str(size): count for size, count in sizes.items()}
                    for gpu_type, sizes in capacity.items()
                },
            },
        )


class AllocationsHandler(SliceAPIHandler):
    async def get(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        everyone = any(
            has_scope(s, self.parsed_scopes, db=self.db) for s in (SCOPE_GPU_MAP, SCOPE_ALLOCATIONS)
        )
        if not everyone and SCOPE_GPU_MAP not in self.parsed_scopes:  # not even filtered
            raise web.HTTPError(403, f"Action requires the scope {SCOPE_GPU_MAP}")
        allocator = await self.slice_manager.ready()
        visible: dict[str, bool] = {}  # user -> covered by the filter (a database look each)

        def shows(user: str) -> bool:
            if everyone:
                return True
            if user not in visible:
                scope = f"{SCOPE_GPU_MAP}!user={user}"
                visible[user] = has_scope(scope, self.parsed_scopes, db=self.db)
            return visible[user]

        gpus = []
        for row in allocator.usage():
            gpu = row["gpu"]
            shown = [a for a in row["allocations"] if shows(a.owner.user)]
            gpus.append(
                {
                    "node": gpu.node,
                    "index": gpu.index,
                    "uuid": gpu.uuid,
                    "product": gpu.product,
                    "gpu_type": gpu.gpu_type,
                    "memory_mib": gpu.memory_mib,
                    "simulated": gpu.simulated,
                    "free_memory_mib": row["free_memory_mib"],
                    "free_compute": row["free_compute"],
                    "allocations": [
                        {**allocation_model(a), "committed": row["committed"][a.id]} for a in shown
                    ],
                }
            )
        self.write_json(200, {"gpus": gpus})

    async def post(self) -> None:
        self.require_scope(SCOPE_ALLOCATIONS)
        if not self.caller_is_admin:
            raise web.HTTPError(
                403,
                "Only admins reserve slices directly; jobs are admitted through "
                "/api/ai-console/job-admissions, which checks the user's projects and quota.",
            )
        body = self.json_body()
        unknown = sorted(set(body) - set(REQUEST_FIELDS) - {"owner"})
        if unknown:
            raise web.HTTPError(
                400,
                f"unknown fields {', '.join(unknown)}; allowed: {', '.join(REQUEST_FIELDS)}, owner",
            )
        owner_body = body.get("owner")
        if not isinstance(owner_body, dict):
            raise web.HTTPError(400, "owner: an object with kind, user, project, name is required")
        try:
            owner = Owner(
                kind=owner_body.get("kind", "job"),
                user=owner_body.get("user", ""),
                project=owner_body.get("project", "") or "",
                name=owner_body.get("name", "") or "",
            )
            request = SliceRequest(**{k: body[k] for k in REQUEST_FIELDS if k in body})
        except InvalidFieldError as err:
            raise web.HTTPError(400, str(err)) from None
        except TypeError as err:
            raise web.HTTPError(400, f"gpu_type is required ({err})") from None
        try:
            allocation = await self.slice_manager.reserve(request, owner, created_by=self.caller)
        except AllocationRefused as err:
            self.write_json(409, {"status": 409, "message": err.reason})
            return
        except InvalidFieldError as err:
            raise web.HTTPError(400, str(err)) from None
        self.write_json(201, allocation_model(allocation))


class AllocationHandler(SliceAPIHandler):
    async def delete(self, allocation_id: str) -> None:
        self.require_scope(SCOPE_ALLOCATIONS)
        await self.slice_manager.ready()
        if self.slice_manager.allocator.get(allocation_id) is None:
            self.write_json(200, {"id": allocation_id, "released": False})  # idempotent
            return
        if self.touchable(allocation_id) is None:
            raise web.HTTPError(404, f"no allocation {allocation_id}")
        released = self.slice_manager.release(allocation_id)
        self.write_json(200, {"id": allocation_id, "released": released})


class CommitHandler(SliceAPIHandler):
    async def post(self, allocation_id: str) -> None:
        self.require_scope(SCOPE_ALLOCATIONS)
        await self.slice_manager.ready()
        if self.touchable(allocation_id) is None:
            raise web.HTTPError(404, f"no allocation {allocation_id}")
        try:
            allocation = self.slice_manager.commit(allocation_id)
        except UnknownAllocationError as err:
            raise web.HTTPError(404, str(err)) from None
        self.write_json(200, allocation_model(allocation))


#: For ``c.JupyterHub.extra_handlers`` (JupyterHub adds the hub prefix).
handlers = [
    (r"/api/ai-console/capacity", CapacityHandler),
    (r"/api/ai-console/allocations", AllocationsHandler),
    (r"/api/ai-console/allocations/([^/]+)", AllocationHandler),
    (r"/api/ai-console/allocations/([^/]+)/commit", CommitHandler),
]
