"""Who may use what: pure functions over :class:`~hub_config.model.AiConsoleConfig`, no I/O.

Membership rules (the same in the spawn form, at spawn time and in the jobs service):

- A user is a member of a project if named in ``members.users``, if one of their JupyterHub
  groups is in ``members.groups``, if they are in the hub group ``project-<slug>`` (so course
  admins can add members at run time through JupyterHub), or if they are one of its ``admins``.
- Platform admins are members of every project: they see every profile and may charge any
  project, which lets them try what students get.
- A profile without ``projects`` is offered to every logged-in user, member of a project or not.
  A spawn of it is charged to one of the user's projects whose images include the profile's
  image, when there is one; otherwise it is charged to no project, and no quota applies.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from html import escape
from typing import TYPE_CHECKING, Any

from . import spawn_texts as texts
from .model import AiConsoleConfig, Flavor, Image, Profile, Project

if TYPE_CHECKING:
    from .availability import ProfileAvailability


class SpawnRefused(Exception):
    """A spawn is not allowed; ``reason`` is a sentence the user can act on, ``code`` a word
    for metrics: ``quota`` (the project's GPU quota) or ``not_allowed`` (profile, project or
    image not the user's)."""

    def __init__(self, reason: str, code: str = "not_allowed") -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)


@dataclass(frozen=True)
class SpawnDecision:
    """What a spawn may run: the profile, and the project it is charged to (or none)."""

    profile: Profile
    project: Project | None


def is_platform_admin(config: AiConsoleConfig, user: str) -> bool:
    return user in config.platform_admins


def is_member(config: AiConsoleConfig, project: Project, user: str, groups: Iterable[str]) -> bool:
    """Membership of one project, by the rules in the module docstring."""
    groups = set(groups)
    return (
        user in config.platform_admins
        or user in project.member_users
        or user in project.admins
        or project.group in groups
        or not groups.isdisjoint(project.member_groups)
    )


def projects_of(config: AiConsoleConfig, user: str, groups: Iterable[str]) -> list[Project]:
    """The user's projects, in file order."""
    groups = set(groups)
    return [p for p in config.projects.values() if is_member(config, p, user, groups)]


def projects_administered_by(config: AiConsoleConfig, user: str) -> list[Project]:
    """Projects whose members' servers and jobs the user may see and manage."""
    if is_platform_admin(config, user):
        return list(config.projects.values())
    return [p for p in config.projects.values() if user in p.admins]


def may_use(config: AiConsoleConfig, profile: Profile, user: str, groups: Iterable[str]) -> bool:
    """Whether the profile is offered to the user at all."""
    if profile.projects is None or is_platform_admin(config, user):
        return True
    mine = {p.slug for p in projects_of(config, user, groups)}
    return not mine.isdisjoint(profile.projects)


def profiles_for(config: AiConsoleConfig, user: str, groups: Iterable[str]) -> list[Profile]:
    """The profiles the user's spawn form shows, in file order."""
    groups = set(groups)
    return [p for p in config.profiles if may_use(config, p, user, groups)]


def projects_for_profile(
    config: AiConsoleConfig, profile: Profile, user: str, groups: Iterable[str]
) -> list[Project]:
    """The user's projects a spawn of this profile may be charged to."""
    return [
        project
        for project in projects_of(config, user, groups)
        if (profile.projects is None or project.slug in profile.projects)
        and project.allows_image(profile.image.key)
    ]


def allows_reference(config: AiConsoleConfig, project: Project, reference: str) -> bool:
    """Whether ``project`` may run the container image ``reference`` (a profile's, a choice's,
    or one a user typed into an unlisted choice)."""
    if project.images is None:
        return True
    return any(config.images[key].image == reference for key in project.images)


def image_refusal(config: AiConsoleConfig, project: Project, reference: str) -> str:
    """Why a spawn may not run ``reference`` in ``project``, for the user who asked."""
    names = ", ".join(config.images[key].display_name for key in project.images or ())
    return (
        f"{project.display_name} does not allow the image {reference}; choose one of its "
        f"images: {names or 'none'}."
    )


def kubespawner_profile_list(
    profiles: Iterable[Profile],
    capacity: Mapping[str, Mapping[Fraction, int]] | None = None,
    html: bool = False,
    availability: Mapping[str, ProfileAvailability] | None = None,
) -> list[dict[str, Any]]:
    """KubeSpawner ``profile_list`` entries for these profiles.

    ``availability`` (by slug) says what the user could start now, their project's quota
    included; without it, ``capacity`` (GPU type -> slice size -> how many such slices could
    start now) gives the hardware alone. Either way each GPU profile's description ends with
    "· 3 free now" or "· none free now: <why>". Our own data sits under ``ai_console``
    (KubeSpawner ignores unknown keys), so the spawner can find the slice without parsing
    text. Every entry is a fresh deep copy: KubeSpawner merges into override dicts.

    ``html``: escape the texts shown to users (names, descriptions, option labels), for
    KubeSpawner's spawn form, whose template does not escape them: a YAML display name is text,
    never markup.
    """
    entries = []
    for profile in profiles:
        override: dict[str, Any] = {"image": profile.image.image}
        for setting in ("cpu_guarantee", "cpu_limit", "mem_guarantee", "mem_limit"):
            value = getattr(profile, setting)
            if value is not None:
                override[setting] = value
        override.update(copy.deepcopy(profile.kubespawner_override))
        ours: dict[str, Any] = {
            "image": profile.image.key,
            "projects": list(profile.projects) if profile.projects is not None else None,
            "gpu": profile.gpu.as_dict() if profile.gpu else None,
        }
        if profile.gpu_choices:
            ours["gpu_choices"] = {
                option: {choice: block.as_dict() for choice, block in blocks.items()}
                for option, blocks in profile.gpu_choices.items()
            }
        description = profile.description
        note = _free_now(profile, capacity, (availability or {}).get(profile.slug), ours)
        if note:
            description = f"{description} · {note}" if description else note
        options = _kubespawner_options(profile.profile_options)
        entries.append(
            {
                "display_name": escape(profile.display_name) if html else profile.display_name,
                "slug": profile.slug,
                "description": escape(description) if html and description else description,
                "default": profile.default,
                "kubespawner_override": override,
                "profile_options": _escaped_options(options) if html else options,
                "ai_console": ours,
            }
        )
    return entries


def _free_now(
    profile: Profile,
    capacity: Mapping[str, Mapping[Fraction, int]] | None,
    spot: ProfileAvailability | None,
    ours: dict[str, Any],
) -> str:
    """The "free now" note of a profile ("" for none), also recorded under ``ours``."""
    if spot is not None:
        ours["availability"] = spot.as_dict()
        if spot.free is not None:
            ours["free_now"] = spot.free
        return spot.note
    gpu = profile.gpu
    if capacity is None or gpu is None:
        return ""
    free, reason = gpu.free_on(capacity, None)
    ours["free_now"] = free
    return texts.free_note(free, reason)


def _kubespawner_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``profile_options`` in KubeSpawner's shape: a choice's ``gpu`` block is ours
    (it travels under ``ai_console.gpu_choices``)."""
    options = copy.deepcopy(dict(options))
    for option in options.values():
        for choice in ((option or {}).get("choices") or {}).values():
            if isinstance(choice, dict):
                choice.pop("gpu", None)
    return options


#: Texts of profile_options (KubeSpawner's shape) that its form shows.
_OPTION_TEXTS = ("display_name", "display_name_in_choices", "validation_message")


def _escaped_options(options: dict[str, Any]) -> dict[str, Any]:
    """``profile_options`` with every text KubeSpawner's form shows escaped, in place."""
    for option in options.values():
        if not isinstance(option, dict):
            continue
        parts = [option, option.get("unlisted_choice")]
        parts += list((option.get("choices") or {}).values())
        for part in parts:
            if isinstance(part, dict):
                for key in _OPTION_TEXTS:
                    if isinstance(part.get(key), str):
                        part[key] = escape(part[key])
    return options


def check_spawn(
    config: AiConsoleConfig,
    user: str,
    groups: Iterable[str],
    profile_slug: str | None,
    project_slug: str | None,
    in_use: Callable[[str], Fraction],
    options: Mapping[str, Any] | None = None,
) -> SpawnDecision:
    """The hub's check at spawn time, whatever ``user_options`` say.

    ``profile_slug`` of ``None`` means the user's default profile, as KubeSpawner picks it.
    ``in_use(project_slug)`` is the sum of slice sizes the project holds now, notebooks and
    jobs together. ``options``: the spawn's ``user_options``, whose choices may set the slice.
    Raises :class:`SpawnRefused` with a sentence the user can act on.
    """
    # user_options can arrive as any JSON through the REST API, so check the types too.
    for name, value in (("profile", profile_slug), ("project", project_slug)):
        if value is not None and not isinstance(value, str):
            raise SpawnRefused(texts.Text(texts.TYPE_REFUSED, name=name, value=value))
    groups = set(groups)
    visible = profiles_for(config, user, groups)
    profile = _pick_profile(config, visible, profile_slug, user)
    project = _pick_project(config, profile, user, groups, project_slug)
    gpu = profile.gpu_for(options)
    if project is not None and gpu is not None and project.gpu_quota is not None:
        used = in_use(project.slug)
        used = Fraction(used).limit_denominator(1000) if isinstance(used, float) else used
        audience = Audience(reader_of(config, user, project), config.source)
        what = texts.quoted(profile.display_name)
        _check_quota(project, gpu.fraction, what, "profile", Fraction(used), audience)
    return SpawnDecision(profile=profile, project=project)


@dataclass(frozen=True)
class Audience:
    """Who reads a refusal, and the admin file a platform admin would edit."""

    reader: texts.Reader = "member"
    source: str = "ai-console.yaml"


#: Words for a member: the default, as the jobs' checks do not tell who asks.
A_MEMBER = Audience()


def reader_of(config: AiConsoleConfig, user: str, project: Project | None) -> texts.Reader:
    """How a refusal about ``project`` is worded for ``user``."""
    if is_platform_admin(config, user):
        return "platform-admin"
    if project is not None and user in project.admins:
        return "project-admin"
    return "member"


def _names(projects: Iterable[Project]) -> str:
    return texts.either([p.display_name for p in projects])


def _pick_profile(
    config: AiConsoleConfig, visible: list[Profile], slug: str | None, user: str = ""
) -> Profile:
    if not slug:
        if not visible:
            reader = reader_of(config, user, None)
            raise SpawnRefused(texts.Text(texts.NO_PROFILE[reader], source=config.source))
        return next((p for p in visible if p.default), visible[0])
    profile = config.profile(slug)
    if profile is None:
        raise SpawnRefused(texts.Text(texts.UNKNOWN_PROFILE, slug=slug))
    if profile not in visible:
        owners = [config.projects[s] for s in profile.projects or () if s in config.projects]
        who: str = texts.Text(texts.ADMIN_OF_SEVERAL)
        if len(owners) == 1:
            kind = texts.Text(owners[0].kind)
            who = texts.Text(texts.ADMIN_OF_ONE, kind=kind, project=owners[0].display_name)
        raise SpawnRefused(
            texts.Text(
                texts.NOT_YOUR_PROFILE,
                profile=texts.quoted(profile.display_name),
                projects=_names(owners),
                who=who,
            )
        )
    return profile


def _pick_project(
    config: AiConsoleConfig, profile: Profile, user: str, groups: set[str], slug: str | None
) -> Project | None:
    fits = projects_for_profile(config, profile, user, groups)
    name = texts.quoted(profile.display_name)
    if slug:
        return _check_chosen_project(config, profile, user, groups, slug, fits)
    if len(fits) == 1:
        return fits[0]
    if not fits:
        if profile.projects is not None:  # defensive: the loader makes this unreachable
            raise SpawnRefused(texts.Text(texts.FITS_NONE, profile=name))
        return None
    default = config.settings.default_project
    chosen = next((p for p in fits if p.slug == default), None)
    if chosen is None:
        reason: str = texts.Text(texts.SEVERAL_FIT, profile=name, projects=_names(fits))
        if is_platform_admin(config, user):
            default_hint = texts.Text(texts.SEVERAL_FIT_DEFAULT, source=config.source)
            reason = texts.joined(reason, default_hint)
        raise SpawnRefused(reason)
    return chosen


def _check_chosen_project(
    config: AiConsoleConfig,
    profile: Profile,
    user: str,
    groups: set[str],
    slug: str,
    fits: list[Project],
) -> Project:
    """The project the spawn names, if the profile may be charged to it."""
    mine = projects_of(config, user, groups)
    project = config.project(slug)
    if project is None or project not in mine:
        choice = texts.Text(texts.NO_PROJECT_OF_YOURS)
        if mine:
            choice = texts.Text(texts.PICK_YOUR_PROJECT, projects=_names(mine))
        if project is None:
            raise SpawnRefused(texts.Text(texts.UNKNOWN_PROJECT, slug=slug, choice=choice))
        name = project.display_name
        raise SpawnRefused(texts.Text(texts.NOT_A_MEMBER, project=name, choice=choice))
    if project in fits:
        return project
    words = {"profile": texts.quoted(profile.display_name), "project": project.display_name}
    image_refused = profile.projects is None or slug in profile.projects
    if image_refused:
        parts = [texts.Text(texts.IMAGE_NOT_ALLOWED, image=profile.image.display_name, **words)]
    else:
        parts = [texts.Text(texts.NOT_OFFERED_TO, **words)]
    if fits:
        parts.append(texts.Text(texts.CHARGE_INSTEAD, projects=_names(fits)))
    else:
        parts.append(texts.Text(texts.PICK_ANOTHER_PROFILE))
    if image_refused and is_platform_admin(config, user):
        key = profile.image.key
        parts.append(texts.Text(texts.ALLOW_IMAGE, image_key=key, slug=slug, source=config.source))
    raise SpawnRefused(texts.joined(*parts))


def _check_quota(
    project: Project,
    need: Fraction,
    what: str,
    kind: str,
    used: Fraction,
    audience: Audience = A_MEMBER,
) -> None:
    """Refuse ``what`` (a ``kind``, profile or flavor) if ``need`` more GPUs exceed the quota,
    in words for ``audience``."""
    quota = project.gpu_quota
    assert quota is not None
    if used + need <= quota:
        return
    words = {"kind": texts.Text(project.kind), "slug": project.slug, "source": audience.source}
    what_kind = texts.Text(kind)
    if quota == 0:
        advice = texts.Text(texts.NO_QUOTA_ADVICE[audience.reader], **words)
        name = project.display_name
        situation = texts.Text(texts.NO_QUOTA_REFUSED, project=name, what_kind=what_kind)
        raise SpawnRefused(texts.joined(situation, advice), "quota")
    amounts = {"project": project.display_name, "used": texts.gpu_amount(used)}
    amounts["quota"] = texts.gpus(quota)
    if used >= quota:
        situation = texts.Text(texts.QUOTA_FULL, **amounts)
    else:
        need_text = texts.gpu_amount(need)
        situation = texts.Text(
            texts.QUOTA_PARTLY, what=what, need=need_text, what_kind=what_kind, **amounts
        )
    advice = texts.Text(texts.QUOTA_ADVICE[audience.reader], **words)
    raise SpawnRefused(texts.joined(situation, advice), "quota")


# --- notebook jobs --------------------------------------------------------------------------


class JobRefused(SpawnRefused):
    """A job is not allowed; ``field`` names the request field at fault (or ``None``)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


#: A GPU type's spelling (gpu_fraction.model.check_gpu_type), for a flavor of type: any.
_TYPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class JobDecision:
    """What a job may run with: flavor, GPU type, project, image. ``gpu_type`` is ``None`` for
    a CPU flavor, and for a GPU flavor the job leaves to the allocator: any of its types."""

    flavor: Flavor
    gpu_type: str | None
    project: Project | None
    image: Image | None


def flavors_for(
    config: AiConsoleConfig, user: str, groups: Iterable[str]
) -> list[tuple[Flavor, list[Project]]]:
    """The flavors the user may run jobs with, each with the user's projects allowing it.

    A user in no project may use no flavor: jobs are always charged to a project, so that
    every job counts against a quota someone set.
    """
    mine = projects_of(config, user, groups)
    found = []
    for flavor in config.flavors:
        projects = [p for p in mine if p.allows_flavor(flavor.name)]
        if projects:
            found.append((flavor, projects))
    return found


def images_for_project(config: AiConsoleConfig, project: Project) -> list[Image]:
    return [image for key, image in config.images.items() if project.allows_image(key)]


def check_job(
    config: AiConsoleConfig,
    user: str,
    groups: Iterable[str],
    request: Mapping[str, Any],
    in_use: Callable[[str], Fraction],
) -> JobDecision:
    """The check for a new job: flavor, project, GPU type, image and quota.

    ``request`` holds ``flavor``, and optionally ``project``, ``gpu_type`` and ``image`` (an
    image key). Raises :class:`JobRefused` naming the field at fault.
    """
    for name in ("flavor", "project", "gpu_type", "image"):
        value = request.get(name)
        if value is not None and not isinstance(value, str):
            raise JobRefused(f"{name} must be given by its name, not {value!r}.", name)
    allowed = flavors_for(config, user, groups)
    name = request.get("flavor") or ""
    flavor = config.flavor(name)
    if flavor is None:
        names = ", ".join(f.name for f, _ in allowed) or "none (ask your course admin)"
        raise JobRefused(f"There is no flavor {name!r}; your flavors: {names}.", "flavor")
    projects = next((ps for f, ps in allowed if f is flavor), [])
    if not projects:
        raise JobRefused(
            f"Flavor {flavor.name} is not offered to any of your projects; pick another flavor.",
            "flavor",
        )
    project = _pick_job_project(config, flavor, projects, request.get("project"))
    gpu_type = None
    if flavor.gpu is not None:
        # No type named: the flavor's one type, or any of its types (the allocator chooses).
        gpu_type = request.get("gpu_type") or flavor.gpu.gpu_type
        if gpu_type is not None and not flavor.accepts_type(gpu_type):
            raise JobRefused(
                f"Flavor {flavor.name} runs on {', '.join(flavor.gpu_types)}; pick one of them "
                "as the GPU type, or leave it empty for any of them.",
                "gpu_type",
            )
        if gpu_type is not None and not _TYPE_NAME.match(gpu_type):
            raise JobRefused(f"{gpu_type!r} is not a GPU type (like RTX3090).", "gpu_type")
    elif request.get("gpu_type"):
        raise JobRefused(f"Flavor {flavor.name} has no GPU; leave the GPU type empty.", "gpu_type")
    image = None
    image_key = request.get("image")
    if image_key:
        image = config.images.get(image_key)
        if image is None or not project.allows_image(image_key):
            keys = ", ".join(i.key for i in images_for_project(config, project))
            raise JobRefused(
                f"Project {project.slug} does not offer image {image_key!r}; its images: {keys}.",
                "image",
            )
    if flavor.gpu is not None and project.gpu_quota is not None:
        try:
            _check_quota(
                project, flavor.fraction, f"flavor {flavor.name}", "flavor", in_use(project.slug)
            )
        except SpawnRefused as err:
            raise JobRefused(err.reason, "flavor") from None
    return JobDecision(flavor=flavor, gpu_type=gpu_type, project=project, image=image)


def _pick_job_project(
    config: AiConsoleConfig, flavor: Flavor, projects: list[Project], slug: str | None
) -> Project:
    if slug:
        project = next((p for p in projects if p.slug == slug), None)
        if project is None:
            names = ", ".join(p.slug for p in projects)
            raise JobRefused(
                f"Flavor {flavor.name} cannot be charged to project {slug!r}; your projects "
                f"offering it: {names}.",
                "project",
            )
        return project
    if len(projects) == 1:
        return projects[0]
    default = next((p for p in projects if p.slug == config.settings.default_project), None)
    if default is None:
        names = ", ".join(p.slug for p in projects)
        raise JobRefused(f"Choose the project to charge this job to: {names}.", "project")
    return default
