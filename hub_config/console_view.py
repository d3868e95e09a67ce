"""What the AI Console page shows a platform or course admin: every GPU as a bar of its slices,
free capacity per GPU type, and a table of projects with their quota use. Pure functions over
the allocator's snapshot (``GPUSliceManager.usage()``), no I/O.

A platform admin sees every slice with its owner. A course admin sees every GPU (so the free
capacity is true) but owners only of the slices charged to their own projects; any other slice
is drawn as "another project", with its size and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from gpu_fraction.model import GPU, Allocation, free_share
from spawner.agent_samples import AgentSamples
from spawner.usage_history import UsageRow, UtilizationRow, daily_totals, daily_utilization

from .access import is_platform_admin, projects_administered_by
from .model import AiConsoleConfig, Project
from .spawn_texts import gpu_amount

#: How many users the projects table names per project.
TOP_USERS = 3
#: Owner kinds, as the allocator records them.
KINDS = ("notebook", "job")


def share_on_gpu(allocation: Allocation) -> Fraction:
    """The part of each of its GPUs a slice holds: its fraction, or all of each GPU."""
    return min(Fraction(1), allocation.fraction)


def console_view(
    config: AiConsoleConfig,
    viewer: str,
    usage: Iterable[Mapping[str, Any]],
    capacity: Mapping[str, Mapping[Fraction, int]],
    samples: AgentSamples | None = None,
) -> dict[str, Any]:
    """The page's JSON for ``viewer``; ``usage`` and ``capacity`` as the allocator gives them,
    ``samples`` the node agents' live figures (None: no agent is read)."""
    projects = projects_administered_by(config, viewer)
    everything = is_platform_admin(config, viewer)
    shown = {p.slug for p in projects}
    rows = list(usage)
    nodes = _nodes(rows, everything, shown)
    if samples is not None:
        _add_live(nodes, rows, samples)
    return {
        "viewer": viewer,
        "sees": "everything" if everything else "own projects",
        "simulated": any(row["gpu"].simulated for row in rows),
        "nodes": nodes,
        "gpu_types": _gpu_types(rows, capacity),
        "projects": [_project_row(p, rows) for p in projects],
    }


def _nodes(rows: list[Mapping[str, Any]], everything: bool, shown: set[str]) -> list[dict]:
    nodes: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["gpu"].node, r["gpu"].index)):
        gpu: GPU = row["gpu"]
        slices = [
            _slice(a, row["committed"].get(a.id, False), everything or a.owner.project in shown)
            for a in row["allocations"]
        ]
        free = free_share(gpu, row["free_memory_mib"], row["free_compute"])
        nodes.setdefault(gpu.node, []).append(
            {
                "uuid": gpu.uuid,
                "index": gpu.index,
                "product": gpu.product,
                "gpu_type": gpu.gpu_type,
                "memory_mib": gpu.memory_mib,
                "simulated": gpu.simulated,
                "free": gpu_amount(free),
                "free_value": float(free),
                "slices": slices,
            }
        )
    return [{"node": node, "gpus": gpus} for node, gpus in nodes.items()]


def _add_live(nodes: list[dict], rows: list[Mapping[str, Any]], samples: AgentSamples) -> None:
    """The agents' figures per GPU, and per visible slice its memory in use and idle time."""
    by_id = {a.id: a for row in rows for a in row["allocations"]}
    for node in nodes:
        for gpu in node["gpus"]:
            live = samples.gpus.get(gpu["uuid"])
            gpu["utilization_percent"] = live.utilization_percent if live else None
            gpu["memory_used_mib"] = live.memory_used_mib if live else None
            for entry in gpu["slices"]:
                if not entry["visible"]:
                    continue
                allocation = by_id[entry["id"]]
                reported = live is not None
                held = samples.slice_memory_mib.get(allocation.id, 0.0)
                entry["memory_used_mib"] = held if reported else None
                idle = samples.idle_minutes_of(allocation.id)
                entry["idle_minutes"] = None if idle is None else round(idle)


def _slice(allocation: Allocation, committed: bool, visible: bool) -> dict[str, Any]:
    share = share_on_gpu(allocation)
    entry: dict[str, Any] = {
        "share": gpu_amount(share),
        "share_value": float(share),
        "memory_mib": allocation.memory_mib,
        "committed": committed,
        "visible": visible,
    }
    if visible:
        owner = allocation.owner
        entry.update(kind=owner.kind, user=owner.user, project=owner.project, name=owner.name)
        entry["id"] = allocation.id
        entry["fraction"] = gpu_amount(allocation.fraction)  # a 2-GPU job: "2" on each bar
    return entry


def _gpu_types(
    rows: list[Mapping[str, Any]], capacity: Mapping[str, Mapping[Fraction, int]]
) -> list[dict[str, Any]]:
    totals: dict[str, list[Fraction]] = {}
    for row in rows:
        gpu: GPU = row["gpu"]
        free = free_share(gpu, row["free_memory_mib"], row["free_compute"])
        count_free = totals.setdefault(gpu.gpu_type, [Fraction(0), Fraction(0)])
        count_free[0] += 1
        count_free[1] += free
    return [
        {
            "gpu_type": gpu_type,
            "gpus": int(count),
            "free": gpu_amount(free),
            "free_value": float(free),
            # A list, smallest first: a JSON object's keys like "1" would be reordered by JS.
            "startable": [
                {"size": gpu_amount(size), "count": n}
                for size, n in sorted(capacity.get(gpu_type, {}).items())
            ],
        }
        for gpu_type, (count, free) in sorted(totals.items())
    ]


def _project_row(project: Project, rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    held = _allocations_of(project.slug, rows)
    by_kind = {kind: Fraction(0) for kind in KINDS}
    by_user: dict[str, Fraction] = {}
    for allocation in held:
        by_kind[allocation.owner.kind] = by_kind.get(allocation.owner.kind, 0) + allocation.fraction
        user = allocation.owner.user
        by_user[user] = by_user.get(user, Fraction(0)) + allocation.fraction
    total = sum(by_kind.values(), Fraction(0))
    top = sorted(by_user.items(), key=lambda item: (-item[1], item[0]))[:TOP_USERS]
    return {
        "slug": project.slug,
        "display_name": project.display_name,
        "kind": project.kind,
        "quota": None if project.gpu_quota is None else gpu_amount(project.gpu_quota),
        "in_use": gpu_amount(total),
        "in_use_by_kind": {kind: gpu_amount(amount) for kind, amount in by_kind.items()},
        "top_users": [{"user": user, "in_use": gpu_amount(amount)} for user, amount in top],
    }


def _allocations_of(project: str, rows: list[Mapping[str, Any]]) -> list[Allocation]:
    """The project's slices, each once (a multi-GPU slice sits on several rows)."""
    seen: dict[str, Allocation] = {}
    for row in rows:
        for allocation in row["allocations"]:
            if allocation.owner.project == project:
                seen[allocation.id] = allocation
    return list(seen.values())


def visible_projects(config: AiConsoleConfig, viewer: str) -> set[str] | None:
    """The projects whose records ``viewer`` may read; None: all, slices of no project too."""
    if is_platform_admin(config, viewer):
        return None
    return {p.slug for p in projects_administered_by(config, viewer)}


def _in_use_percent(rows: list[UsageRow]) -> float | None:
    """The part of the measured GPU-hours that was in use, percent (None: none measured)."""
    measured = sum(row.measured_gpu_hours for row in rows)
    if measured <= 0:
        return None
    return round(100 * sum(row.in_use_gpu_hours for row in rows) / measured, 1)


def usage_view(
    config: AiConsoleConfig,
    rows: Iterable[UsageRow],
    days: list[str],
    utilization: Iterable[UtilizationRow] = (),
) -> dict[str, Any]:
    """GPU-hours per day (``days``: ``YYYY-MM-DD``, oldest first) per project and per user,
    the part of them in use, and the GPUs' utilisation per day and type, for the page's plots
    and tables; rows already filtered for the viewer."""
    rows = list(rows)
    per_day = {by: daily_totals(rows, by) for by in ("project", "user")}

    def name(slug: str) -> str:
        project = config.projects.get(slug)
        return project.display_name if project else (slug or "no project")

    def series(by: str, key: str) -> list[float]:
        return [round(per_day[by].get(day, {}).get(key, 0.0), 4) for day in days]

    def of(by: str, key: str) -> list[UsageRow]:
        return [row for row in rows if getattr(row, by) == key]

    users = {row.user for row in rows}
    totals = {user: sum(row.gpu_hours for row in of("user", user)) for user in users}
    return {
        "days": days,
        "projects": [
            {
                "slug": slug,
                "display_name": name(slug),
                "gpu_hours": series("project", slug),
                "in_use_percent": _in_use_percent(of("project", slug)),
            }
            for slug in sorted({row.project for row in rows})
        ],
        "users": [
            {
                "user": user,
                "gpu_hours": round(totals[user], 4),
                "gpu_hours_per_day": series("user", user),
                "in_use_percent": _in_use_percent(of("user", user)),
            }
            for user in sorted(users, key=lambda user: (-totals[user], user))
        ],
        "total_gpu_hours": round(sum(totals.values()), 4),
        "in_use_percent": _in_use_percent(rows),
        "utilization": [
            {"gpu_type": gpu_type, "percent": percents}
            for gpu_type, percents in daily_utilization(utilization, days).items()
        ],
    }
