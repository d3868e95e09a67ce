"""The hub's API for notebook jobs: what a user may choose, and admitting a job.

The policy (membership, flavors, images, quotas) lives in the admin's YAML, which only the hub
reads; the jobs service asks here, so notebooks and jobs follow one set of rules and draw
from one allocator.

- ``GET  /api/ai-console/job-choices``     the token's own user (scope custom:ai-console:jobs):
  projects, flavors with how many could start now, images
- ``POST /api/ai-console/job-admissions``  the jobs service (custom:ai-console:allocations):
  body ``{user, request: {flavor, project, gpu_type, image}, name}``; checks the request for
  that user and reserves the slice (no ``gpu_type`` for a flavor of several types: the
  allocator chooses); 201 with project, flavor, the GPU type chosen, image, allocation, the slice's
  environment for a local process and what a pod needs (``pod``: env, volumes, annotations);
  403/400 naming the field, 409 when no slice is free
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jupyterhub import orm
from jupyterhub.scopes import has_scope
from tornado import web

from gpu_fraction.annotations import to_annotations
from gpu_fraction.enforcement import (
    NO_GPU_ENVIRONMENT,
    STARTUP_MOUNT_PATH,
    container_environment,
    has_caps,
    kubernetes_volumes,
    startup_hook_dir,
)
from gpu_fraction.errors import AllocationRefused, UnknownGPUTypeError
from gpu_fraction.model import Owner
from spawner.allocation_api import SCOPE_ALLOCATIONS, SliceAPIHandler, allocation_model

from .access import JobRefused, check_job, flavors_for, images_for_project, profiles_for
from .model import AiConsoleConfig, Flavor, memory_bytes
from .roles import SCOPE_JOBS


def flavor_model(flavor: Flavor, memory: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A flavor as the Lab sees it. ``gpu_types``: those a job may name; for ``type: any`` or a
    ``min_memory``, the types of the inventory that fit (``memory``: GPU type -> MiB of its
    smallest GPU), else the listed ones. With several, a job may name none: the allocator
    chooses (``gpu.any_type``)."""
    gpu = flavor.gpu
    types = list(flavor.gpu_types)
    if gpu is not None and gpu.flexible and memory is not None:
        types = gpu.accepted_types(memory)
    return {
        "name": flavor.name,
        "display_name": flavor.display_name,
        "description": flavor.description,
        "cpu": flavor.cpu,
        "memory": str(flavor.memory),
        "gpu": None if gpu is None else _gpu_model(flavor),
        "gpu_types": types,
    }


def _gpu_model(flavor: Flavor) -> dict[str, Any]:
    gpu = flavor.gpu
    assert gpu is not None
    model: dict[str, Any] = {"fraction": str(gpu.fraction), "any_type": gpu.gpu_type is None}
    if gpu.min_memory_mib is not None:
        model["min_memory_mib"] = gpu.min_memory_mib
    return model


class JobsHubHandler(SliceAPIHandler):
    def initialize(self, ai_console: AiConsoleConfig) -> None:
        self.ai_console = ai_console

    def groups_of(self, user: orm.User) -> list[str]:
        return [group.name for group in user.groups]

    def group_names(self, name: str) -> list[str] | None:
        """The groups of user ``name`` (``None``: no such user), by a query of names only:
        loading the ``orm.User`` would also load its roles, shares and their users (selectin
        relationships), most of an admission's time on the hub."""
        found = self.db.query(orm.User.id).filter(orm.User.name == name).first()
        if found is None:
            return None
        query = self.db.query(orm.Group.name).join(orm.Group.users).filter(orm.User.id == found.id)
        return [group for (group,) in query]


class JobChoicesHandler(JobsHubHandler):
    async def get(self) -> None:
        # The hub hands handlers its User wrapper; services and anonymous callers have none.
        user = getattr(self.current_user, "orm_user", None)
        if user is None:
            raise web.HTTPError(403, "Only a user's token can ask for that user's choices.")
        if not has_scope(f"{SCOPE_JOBS}!user={user.name}", self.parsed_scopes, db=self.db):
            raise web.HTTPError(403, f"Action requires the scope {SCOPE_JOBS}")
        config, groups = self.ai_console, self.groups_of(user)
        capacity = await self.slice_manager.capacity()
        memory = await self.slice_manager.memory_by_type()
        flavors, projects = [], {}
        for flavor, allowed in flavors_for(config, user.name, groups):
            model = flavor_model(flavor, memory)
            available = {
                gpu_type: capacity.get(gpu_type, {}).get(flavor.fraction, 0)
                for gpu_type in model["gpu_types"]
            }
            model.update(projects=[p.slug for p in allowed], available=available)
            flavors.append(model)
            projects.update((p.slug, p) for p in allowed)
        images: dict[str, dict[str, Any]] = {}
        for project in projects.values():
            for image in images_for_project(config, project):
                entry = images.setdefault(
                    image.key, {"key": image.key, "display_name": image.display_name}
                )
                entry.setdefault("projects", []).append(project.slug)
        inventory = self.slice_manager.inventory
        self.write_json(
            200,
            {
                "projects": [
                    {"slug": p.slug, "display_name": p.display_name} for p in projects.values()
                ],
                "flavors": flavors,
                "images": list(images.values()),
                "default_image": self._server_image(user, groups),
                "simulated": bool(inventory and inventory.simulated),
            },
        )

    def _server_image(self, user: orm.User, groups: list[str]) -> str | None:
        """The image key of the profile the user's default server was started with."""
        spawner = user.orm_spawners.get("")
        chosen = (spawner.user_options or {}).get("profile") if spawner else None
        visible = profiles_for(self.ai_console, user.name, groups)
        profile = next((p for p in visible if p.slug == chosen), None)
        if profile is None:
            profile = next((p for p in visible if p.default), None)
        return profile.image.key if profile else None


class JobAdmissionHandler(JobsHubHandler):
    async def post(self) -> None:
        self.require_scope(SCOPE_ALLOCATIONS)
        body = self.json_body()
        name, request, job_name = body.get("user"), body.get("request"), body.get("name", "")
        if not isinstance(name, str) or not isinstance(request, dict):
            raise web.HTTPError(400, "user (a name) and request (an object) are required")
        groups = self.group_names(name)
        if groups is None:
            raise web.HTTPError(404, f"no user {name}")
        manager = self.slice_manager
        try:
            decision = check_job(self.ai_console, name, groups, request, manager.in_use_by_project)
        except JobRefused as err:
            self.write_json(403, {"message": err.reason, "field": err.field})
            return
        flavor, project = decision.flavor, decision.project
        node = request.get("node")
        if node is not None and not (isinstance(node, str) and 0 < len(node) <= 253):
            self.write_json(400, {"message": "node must be a node name", "field": "node"})
            return
        allocation, environment, pod, gpu_type = None, {}, None, None
        if flavor.gpu is not None:
            owner = Owner("job", name, project.slug if project else "", str(job_name)[:63])
            try:
                # No type named (decision.gpu_type None): any of the flavor's types, the
                # allocator chooses; min_memory against the GPUs it knows now.
                sizes = None
                if flavor.gpu.min_memory_mib is not None:
                    sizes = await manager.memory_by_type()
                wanted = flavor.slice_request(decision.gpu_type, sizes)
                if node:
                    # The job must run where its user's storage is attached.
                    wanted = dataclasses.replace(wanted, node=node)
                held = await manager.reserve(wanted, owner, created_by=self.caller)
            except AllocationRefused as err:
                self.write_json(409, {"message": str(err.reason), "field": "gpu_type"})
                return
            except UnknownGPUTypeError as err:
                self.write_json(409, {"message": err.message, "field": "gpu_type"})
                return
            gpu_type = held.gpu_type  # the type the allocator chose
            try:
                allocation = allocation_model(held)
                environment = container_environment(
                    held, startup_path=startup_hook_dir(), in_container=False
                )
                pod = self._pod_slice(held)
            except Exception:
                manager.release(held.id)  # never leave a reserved slice behind an error
                raise
        elif manager.cpu_only_pods == "allocator" and manager.inventory_source == "kubernetes":
            # A CPU job goes where its CPU strands the least GPU capacity, as a CPU-only server.
            owner = Owner("job", name, project.slug if project else "", str(job_name)[:63])
            cpu, memory = int(flavor.cpu * 1000), memory_bytes(flavor.memory) >> 20
            try:
                held = await manager.reserve_pod(
                    cpu,
                    memory,
                    owner,
                    nodes=frozenset((node,)) if node else None,
                    created_by=self.caller,
                )
            except AllocationRefused as err:
                if not manager.has_unmanaged_nodes():
                    self.write_json(409, {"message": str(err.reason), "field": "flavor"})
                    return
                held = None  # the nodes the allocator does not manage take it
            if held is not None:
                allocation = allocation_model(held)
                pod = self._pod_slice(held)
        image = decision.image
        self.write_json(
            201,
            {
                "project": project.slug if project else None,
                "flavor": flavor_model(flavor),
                "gpu_type": gpu_type,
                "image": {"key": image.key, "image": image.image} if image else None,
                "allocation": allocation,
                "environment": environment,
                "pod": pod,
            },
        )

    def _pod_slice(self, held: Any) -> dict[str, Any]:
        """The slice written into a job's pod, by the same builders the spawner uses."""
        if held.is_cpu_only:  # a node's CPU held: no GPU to reach, no caps
            return {
                "environment": dict(NO_GPU_ENVIRONMENT),
                "volumes": [],
                "volume_mounts": [],
                "annotations": to_annotations(held),
                "node": held.node,
                "simulated": held.simulated,
                "cpu_only": True,
            }
        configmap = self.slice_manager.startup_hook_configmap or None
        startup = STARTUP_MOUNT_PATH if configmap and has_caps(held) else None
        mps = self.slice_manager.mps_settings(held.node)
        volumes, mounts = kubernetes_volumes(held, mps=mps, startup_configmap=configmap)
        return {
            "environment": container_environment(
                held, mps=mps, startup_path=startup, in_container=True
            ),
            "volumes": volumes,
            "volume_mounts": mounts,
            "annotations": to_annotations(held),
            "node": held.node,
            "simulated": held.simulated,
        }


def handlers(config: AiConsoleConfig) -> list[tuple[str, type, dict[str, Any]]]:
    """For ``c.JupyterHub.extra_handlers`` (JupyterHub adds the hub prefix)."""
    kwargs = {"ai_console": config}
    return [
        (r"/api/ai-console/job-choices", JobChoicesHandler, kwargs),
        (r"/api/ai-console/job-admissions", JobAdmissionHandler, kwargs),
    ]
