"""What a user could start now: per profile, the slices that fit both the hardware and the
quota of the project the spawn would be charged to. Pure functions, no I/O.

The hub re-checks every spawn (:func:`hub_config.access.check_spawn`, then the allocator), so
these counts only guide the spawn form; they never admit anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from . import spawn_texts as texts
from .access import profiles_for, projects_for_profile
from .model import AiConsoleConfig, GpuBlock, Profile, Project

#: GPU type -> slice size -> how many such slices could start now (hardware only).
Capacity = Mapping[str, Mapping[Fraction, int]]


@dataclass(frozen=True)
class ProjectAvailability:
    """One project a profile may be charged to: how many could start on it now, and why not."""

    project: Project
    free: int | None  # None: CPU-only, no count
    reason: str = ""

    @property
    def note(self) -> texts.Text:
        return texts.free_note(self.free, self.reason)

    def label_in(self, translate: texts.Translate = texts.english) -> str:
        """The project's entry in the form's project choice."""
        if self.free is None:
            return self.project.display_name
        note = texts.say(self.note, translate)
        return texts.PROJECT_CHOICE.format(project=self.project.display_name, note=note)

    @property
    def label(self) -> str:
        return self.label_in()

    def as_dict(self, translate: texts.Translate = texts.english) -> dict[str, Any]:
        return {
            "slug": self.project.slug,
            "display_name": self.project.display_name,
            "free": self.free,
            "reason": texts.say(self.reason, translate),
            "note": texts.say(self.note, translate),
            "label": self.label_in(translate),
        }


@dataclass(frozen=True)
class ProfileAvailability:
    """One profile of the user's spawn form, as it stands now.

    ``free`` is the best of ``projects`` (or the hardware alone for a spawn charged to no
    project); ``project`` is the project the form preselects.
    """

    profile: Profile
    free: int | None  # None: CPU-only, no count
    reason: str = ""
    projects: tuple[ProjectAvailability, ...] = ()
    project: str | None = None
    #: The slice the form preselects (None: CPU-only).
    gpu: GpuBlock | None = None

    @property
    def disabled(self) -> bool:
        return self.free == 0

    @property
    def slice(self) -> str:
        """The slice in words where the allocator picks its GPU type ("1/4 of V100 or A10",
        "1/4 of any GPU (16 GiB or more)"); "" for one named type, which the profile's own
        name says, and for CPU-only."""
        return self.gpu.describe() if self.gpu is not None and self.gpu.flexible else ""

    @property
    def note(self) -> texts.Text:
        return texts.free_note(self.free, self.reason)

    def as_dict(self, translate: texts.Translate = texts.english) -> dict[str, Any]:
        """The JSON shape of the spawn-options API and of ``ai_console.availability``; the
        counts and reasons in the reader's language (``translate``)."""
        return {
            "slug": self.profile.slug,
            "display_name": self.profile.display_name,
            "free": self.free,
            "disabled": self.disabled,
            "reason": texts.say(self.reason, translate),
            "note": texts.say(self.note, translate),
            "project": self.project,
            "projects": [p.as_dict(translate) for p in self.projects],
            "slice": texts.say(self.slice, translate),
        }


def availability_for(
    config: AiConsoleConfig,
    user: str,
    groups: Iterable[str],
    capacity: Capacity,
    in_use: Callable[[str], Fraction],
    chosen: Mapping[str, Any] | None = None,
    memory: Mapping[str, int] | None = None,
) -> list[ProfileAvailability]:
    """Every profile the user's form shows, in file order. ``in_use(project_slug)`` as for
    :func:`~hub_config.access.check_spawn`; ``chosen``: the user's last ``user_options``;
    ``memory``: GPU type -> MiB of its smallest GPU, for slices with a ``min_memory``."""
    groups = set(groups)
    used = _memo(in_use)
    return [
        profile_availability(config, profile, user, groups, capacity, used, chosen, memory)
        for profile in profiles_for(config, user, groups)
    ]


def profile_availability(
    config: AiConsoleConfig,
    profile: Profile,
    user: str,
    groups: Iterable[str],
    capacity: Capacity,
    in_use: Callable[[str], Fraction],
    chosen: Mapping[str, Any] | None = None,
    memory: Mapping[str, int] | None = None,
) -> ProfileAvailability:
    fits = projects_for_profile(config, profile, user, groups)
    # The slice of the choices the form preselects: the user's last ones for this profile.
    same = chosen is not None and chosen.get("profile") == profile.slug
    gpu = profile.gpu_for(chosen if same else None)
    if gpu is None:
        options = tuple(ProjectAvailability(p, None) for p in fits)
        return ProfileAvailability(profile, None, "", options, _preselect(config, options, chosen))
    # Summed over the GPU types the slice accepts (types:, type: any, min_memory).
    hardware, reason = gpu.free_on(capacity, memory)
    if not fits:  # charged to no project: no quota applies
        return ProfileAvailability(profile, hardware, "" if hardware else reason, gpu=gpu)
    options = tuple(_on_project(p, gpu, hardware, reason, in_use) for p in fits)
    free = max(o.free or 0 for o in options)
    return ProfileAvailability(
        profile,
        free,
        "" if free else _why_none(options),
        options,
        _preselect(config, options, chosen),
        gpu,
    )


def _on_project(
    project: Project,
    gpu: GpuBlock,
    hardware: int,
    hardware_reason: str,
    in_use: Callable[[str], Fraction],
) -> ProjectAvailability:
    """How many slices of ``gpu`` the user could start now charged to ``project``."""
    quota = project.gpu_quota
    if quota is None:
        return ProjectAvailability(project, hardware, "" if hardware else hardware_reason)
    used = _exact(in_use(project.slug))
    room = max(0, (quota - used) // gpu.fraction)
    if not room:
        # The quota first: a slice freeing up elsewhere would not help.
        reason = texts.quota_reason(project.kind, quota, used, gpu.fraction)
        return ProjectAvailability(project, 0, reason)
    free = min(hardware, room)
    return ProjectAvailability(project, free, "" if free else hardware_reason)


def _why_none(options: tuple[ProjectAvailability, ...]) -> str:
    reasons = list(dict.fromkeys(o.reason for o in options))
    if len(reasons) == 1:
        return reasons[0]
    return texts.each_project([(o.project.display_name, o.reason) for o in options])


def _preselect(
    config: AiConsoleConfig,
    options: tuple[ProjectAvailability, ...],
    chosen: Mapping[str, Any] | None,
) -> str | None:
    """The user's last choice, else settings.default_project, else the one with most free;
    among the projects that have room when some have."""
    usable = [o for o in options if o.free != 0] or list(options)
    slugs = [o.project.slug for o in usable]
    for wanted in ((chosen or {}).get("project"), config.settings.default_project):
        if wanted in slugs:
            return wanted
    if not usable:
        return None
    best = max(usable, key=lambda o: -1 if o.free is None else o.free)  # first of equals
    return best.project.slug


def _exact(used: Fraction | float | int) -> Fraction:
    # Usage reported as a float is read as the fraction it stands for (as check_spawn does).
    return Fraction(used).limit_denominator(1000) if isinstance(used, float) else Fraction(used)


def _memo(in_use: Callable[[str], Fraction]) -> Callable[[str], Fraction]:
    """``in_use`` asked once per project: each call sums every allocation."""
    seen: dict[str, Fraction] = {}

    def used(slug: str) -> Fraction:
        if slug not in seen:
            seen[slug] = in_use(slug)
        return seen[slug]

    return used
