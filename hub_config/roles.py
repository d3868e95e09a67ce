"""Map ``ai-console.yaml`` onto JupyterHub groups, custom scopes and roles.

Use in ``jupyterhub_config.py``::

    c.JupyterHub.load_groups = jupyterhub_groups(config)
    c.JupyterHub.custom_scopes = custom_scopes()
    c.JupyterHub.load_roles = load_roles(config, jobs_service_name="ai-console-jobs")
    c.Spawner.server_token_scopes = server_token_scopes("ai-console-jobs")

Groups. Each project gets a hub group ``project-<slug>`` holding its ``members.users`` and
``admins``. JupyterHub groups cannot contain groups, so ``members.groups`` are not copied in:
:mod:`hub_config.access` checks the user's own groups at spawn time, and each course-admin role
below also carries its scopes filtered on those groups. ``load_groups`` only ever *adds*: a user
removed from the YAML loses access at once (access.py reads the YAML), but stays in the hub
group, and so counts as a member, until removed there too (admin page or REST API).
With an authenticator that manages groups (``Authenticator.manage_groups``), JupyterHub refuses
``load_groups``; use ``members.groups`` then.

Roles. JupyterHub does not enforce custom scopes: the jobs service and the hub's allocation and
GPU-map handlers check them.
"""

from __future__ import annotations

from typing import Any

from spawner.allocation_api import SCOPE_ALLOCATIONS, SCOPE_CAPACITY, SCOPE_GPU_MAP

from .model import AiConsoleConfig, Project

JOBS_SERVICE = "ai-console-jobs"

SCOPE_JOBS = "custom:ai-console:jobs"
SCOPE_JOBS_ADMIN = "custom:ai-console:jobs-admin"
SCOPE_SPAWN_OPTIONS = "custom:ai-console:spawn-options"
SCOPE_OWN_SLICES = "custom:ai-console:own-slices"

PLATFORM_ADMIN_ROLE = "ai-console-platform-admin"
COURSE_ADMIN_ROLE_PREFIX = "course-admin-"
JOBS_SERVICE_ROLE = "ai-console-jobs-service"

#: Scopes a course admin holds over the users of their project (filtered per project).
#: Not ``access:servers`` (opening a member's server runs code as that member) and not
#: ``groups`` (adding someone to the project's group would put them under these scopes):
#: membership comes from the admin's YAML or the authenticator, never from a course admin.
COURSE_ADMIN_SCOPES = (
    "admin:servers",
    "read:users",
    "list:users",
    SCOPE_JOBS_ADMIN,
    SCOPE_GPU_MAP,
)


def custom_scopes() -> dict[str, dict[str, Any]]:
    """``c.JupyterHub.custom_scopes``: the AI Console's own permissions."""
    return {
        SCOPE_JOBS: {
            "description": "Submit notebook jobs and pipelines, and list, read, cancel and "
            "delete them.",
        },
        SCOPE_JOBS_ADMIN: {
            "description": "See and manage other users' notebook jobs (limit with !group= or "
            "!user=).",
            "subscopes": [SCOPE_JOBS],
        },
        SCOPE_ALLOCATIONS: {
            "description": "Reserve and release GPU slices through the hub's allocation API "
            "(for the jobs service).",
        },
        SCOPE_GPU_MAP: {
            "description": "See the live map of GPUs and the slices placed on them "
            "(limit with !group= or !user= to those users' slices).",
        },
        SCOPE_CAPACITY: {
            "description": "See how many GPU slices of each size are free now.",
        },
        SCOPE_OWN_SLICES: {
            "description": "See one's own GPU slices: GPU type, share, whether idle and when "
            "an idle server will be stopped (the API only answers for the caller; grant it "
            "with !user).",
        },
        SCOPE_SPAWN_OPTIONS: {
            "description": "See one's own spawn form as it stands now: each profile, how many "
            "could start, why not, and the projects it may be charged to (the API only ever "
            "answers for the caller; grant it with !user).",
        },
    }


def jupyterhub_groups(config: AiConsoleConfig) -> dict[str, dict[str, Any]]:
    """``c.JupyterHub.load_groups``: one ``project-<slug>`` group per project."""
    return {
        project.group: {
            "users": sorted(project.member_users | project.admins),
            "properties": {
                "ai_console_project": project.slug,
                "display_name": project.display_name,
                "kind": project.kind,
            },
        }
        for project in config.projects.values()
    }


def course_admin_role(project: Project) -> dict[str, Any]:
    """The ``course-admin-<slug>`` role: a project's admins over its members only."""
    scopes = [f"{scope}!group={project.group}" for scope in COURSE_ADMIN_SCOPES]
    scopes.append(f"read:groups!group={project.group}")
    # The admin page lists only the users the filtered scopes above let them read.
    scopes.append("admin-ui")
    for group in sorted(project.member_groups):
        scopes.extend(f"{scope}!group={group}" for scope in COURSE_ADMIN_SCOPES)
        scopes.append(f"read:groups!group={group}")
    return {
        "name": f"{COURSE_ADMIN_ROLE_PREFIX}{project.slug}",
        "description": f"Course admins of {project.display_name}: members, servers and jobs "
        "of this project",
        "scopes": list(dict.fromkeys(scopes)),
        "users": sorted(project.admins),
    }


def user_role(jobs_service_name: str | None = JOBS_SERVICE) -> dict[str, Any]:
    """The built-in ``user`` role, extended so every user may use the jobs service.

    Overriding the role makes JupyterHub ignore ``c.JupyterHub.extra_user_scopes``; add any
    extra user scopes here instead. ``jobs_service_name=None``: no jobs service is defined.
    """
    scopes = [
        "self",
        f"{SCOPE_JOBS}!user",
        SCOPE_CAPACITY,
        f"{SCOPE_SPAWN_OPTIONS}!user",
        f"{SCOPE_OWN_SLICES}!user",
    ]
    if jobs_service_name:
        scopes.insert(1, f"access:services!service={jobs_service_name}")
    return {
        "name": "user",
        "description": "Standard user privileges, plus submitting one's own notebook jobs",
        "scopes": scopes,
    }


def load_roles(
    config: AiConsoleConfig, jobs_service_name: str | None = JOBS_SERVICE
) -> list[dict[str, Any]]:
    """``c.JupyterHub.load_roles`` for this config.

    Platform admins get JupyterHub's built-in ``admin`` role (its users only: JupyterHub
    refuses changes to its scopes) and the ``ai-console-platform-admin`` role with every custom
    scope. The ``admin`` role's users are listed only when ``platform_admins`` is not empty,
    since a listed role replaces its members: an empty list would strip every admin.
    """
    admins = sorted(config.platform_admins)
    roles: list[dict[str, Any]] = []
    if admins:
        roles.append({"name": "admin", "users": admins})
    roles.append(
        {
            "name": PLATFORM_ADMIN_ROLE,
            "description": "Platform admins: every AI Console permission",
            "scopes": list(custom_scopes()),
            "users": admins,
        }
    )
    roles.extend(course_admin_role(project) for project in config.projects.values())
    roles.append(user_role(jobs_service_name))
    if not jobs_service_name:
        # JupyterHub refuses a role naming a service that is not defined.
        return roles
    roles.append(
        {
            "name": JOBS_SERVICE_ROLE,
            "description": "The jobs service: reserves GPU slices and reads users and groups "
            "to check projects",
            "scopes": [SCOPE_ALLOCATIONS, "read:users", "read:groups"],
            "services": [jobs_service_name],
        }
    )
    return roles


def server_token_scopes(jobs_service_name: str | None = JOBS_SERVICE) -> list[str]:
    """``c.Spawner.server_token_scopes``: the single-user server's own token.

    JupyterHub's default (the ``server`` role) plus what the Run-as-Job extension needs: call
    the jobs service and submit jobs, for the server's own user only. JupyterHub intersects
    these with the user's own scopes, so nobody gets more than the ``user`` role gives.
    """
    # own-slices: the server tells its user in Lab that it is idle and when it will be stopped.
    scopes = [
        "users:activity!user",
        "access:servers!server",
        f"{SCOPE_JOBS}!user",
        f"{SCOPE_OWN_SLICES}!user",
    ]
    if jobs_service_name:
        scopes.append(f"access:services!service={jobs_service_name}")
    return scopes
