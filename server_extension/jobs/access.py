"""Who may see and touch which job, from the caller's JupyterHub scopes.

The hub does not enforce custom scopes; it hands them to services in the token's model (already
expanded, with filters such as ``!user=alice`` or ``!group=project-cs101``), and this module
reads them. A user reaches their own jobs; ``jobs-admin`` reaches others' jobs: unfiltered all,
``!group=project-<slug>`` those charged to that project, ``!user=<name>`` that user's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .store import JobRecord

SCOPE_JOBS = "custom:ai-console:jobs"
SCOPE_JOBS_ADMIN = "custom:ai-console:jobs-admin"
#: Must match hub_config.model.PROJECT_GROUP_PREFIX (this package may not import hub_config).
PROJECT_GROUP_PREFIX = "project-"


@dataclass(frozen=True)
class Caller:
    """The authenticated user and what their scopes let them reach."""

    name: str
    own_jobs: bool
    all_jobs: bool = False
    projects: frozenset[str] = field(default_factory=frozenset)
    users: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_model(cls, model: dict[str, Any]) -> Caller:
        name = model.get("name") or ""
        scopes = list(model.get("scopes") or ())
        own = SCOPE_JOBS in scopes or f"{SCOPE_JOBS}!user={name}" in scopes
        all_jobs = SCOPE_JOBS_ADMIN in scopes
        projects, users = set(), set()
        for scope in scopes:
            base, _, where = scope.partition("!")
            if base != SCOPE_JOBS_ADMIN or not where:
                continue
            kind, _, value = where.partition("=")
            if kind == "group" and value.startswith(PROJECT_GROUP_PREFIX):
                projects.add(value[len(PROJECT_GROUP_PREFIX) :])
            elif kind == "user":
                users.add(value)
        return cls(name, own, all_jobs, frozenset(projects), frozenset(users))

    @property
    def manages_others(self) -> bool:
        return self.all_jobs or bool(self.projects) or bool(self.users)

    def may_see(self, job: JobRecord) -> bool:
        if job.owner == self.name:
            return self.own_jobs
        return (
            self.all_jobs
            or job.owner in self.users
            or (job.project is not None and job.project in self.projects)
        )
